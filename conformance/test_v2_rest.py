"""Open Inference Protocol (V2) over REST: metadata, readiness, inference envelope, errors.

Rules from the protocol's REST specification (inference_rest.md). Inference checks use the
target's numeric echo model (servegate/tasks/numeric_echo.py), which takes any tensor.
"""

from __future__ import annotations

import pytest

from servegate.checks import expect, expect_model, expect_status
from servegate.protocols.http import Reply
from servegate.protocols.v2_models import (
    DATATYPES,
    ErrorResponse,
    InferenceResponse,
    ModelMetadata,
    ServerMetadata,
    tensor,
)
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import ModelInfo, Target
from servegate.tasks import numeric_echo
from servegate.unsupported import unsupported

UNKNOWN_MODEL = "servegate-no-such-model"


def _request(**extra: object) -> dict:
    body: dict = {
        "inputs": [tensor("int32", "INT32", [2], [1, 2]), tensor("fp32", "FP32", [2], [0.5, 1.5])]
    }
    body.update(extra)
    return body


def expect_json_error(reply: Reply, rule: str) -> None:
    """A 4xx answer whose body is the protocol's error object {"error": "<message>"}."""
    expect(400 <= reply.status < 500, rule, f"status {reply.status}, expected a 4xx", reply)
    body = reply.json()
    expect_model(ErrorResponse, body, rule, reply)


def _infer_ok(v2: V2RestClient, model: str, body: dict, rule: str) -> InferenceResponse:
    reply = v2.infer(model, body)
    expect_status(reply, 200, rule)
    return expect_model(InferenceResponse, reply.json(), rule, reply)


@pytest.mark.features("v2-rest")
def test_server_metadata_names_server_version_extensions(v2: V2RestClient) -> None:
    """GET /v2 answers 200 with the server's name, version and its list of extensions."""
    rule = "GET /v2 returns {name, version, extensions}"
    reply = v2.server_metadata()
    expect_status(reply, 200, rule)
    meta = expect_model(ServerMetadata, reply.json(), rule, reply)
    expect(meta.name, rule, "empty name", reply)
    expect(
        all(isinstance(e, str) for e in meta.extensions), rule, "extensions must be strings", reply
    )


@pytest.mark.features("v2-rest")
def test_model_metadata_describes_every_model(target: Target, v2: V2RestClient) -> None:
    """GET /v2/models/{m} answers 200 with the model's own name, its platform and its input
    and output tensor metadata."""
    expect(target.models, "the server serves at least one model", "no model discovered")
    for model in target.models:
        rule = f"GET /v2/models/{model} returns {{name, platform, inputs, outputs}}"
        reply = v2.model_metadata(model)
        expect_status(reply, 200, rule)
        meta = expect_model(ModelMetadata, reply.json(), rule, reply)
        expect(meta.name == model, rule, f"metadata names {meta.name!r}", reply)


@pytest.mark.features("v2-rest")
def test_model_metadata_tensors_are_well_formed(target: Target, v2: V2RestClient) -> None:
    """Every tensor in model metadata has a name, a V2 datatype and a shape of integers
    (-1 for a variable dimension)."""
    for model in target.models:
        reply = v2.model_metadata(model)
        rule = f"the tensors of GET /v2/models/{model} have a V2 datatype and a valid shape"
        expect_status(reply, 200, rule)
        meta = expect_model(ModelMetadata, reply.json(), rule, reply)
        for t in [*meta.inputs, *meta.outputs]:
            expect(
                t.datatype in DATATYPES,
                rule,
                f"tensor {t.name!r}: datatype {t.datatype!r} is not a V2 datatype",
                reply,
            )
            expect(
                all(d >= -1 for d in t.shape), rule, f"tensor {t.name!r}: shape {t.shape}", reply
            )


@pytest.mark.features("v2-rest")
def test_unknown_model_metadata_is_a_4xx_json_error(v2: V2RestClient) -> None:
    """Metadata of a model the server does not have is an error: a 4xx status with the body
    {"error": "<message>"}."""
    expect_json_error(
        v2.model_metadata(UNKNOWN_MODEL), 'GET /v2/models/{unknown} returns 4xx {"error": ...}'
    )


@pytest.mark.features("v2-rest")
def test_unknown_model_is_not_ready(v2: V2RestClient) -> None:
    """GET /v2/models/{unknown}/ready is not 200: only a ready model answers 200."""
    reply = v2.model_ready(UNKNOWN_MODEL)
    expect(
        reply.status != 200 and reply.status < 500,
        "GET /v2/models/{unknown}/ready returns a 4xx",
        f"status {reply.status}",
        reply,
    )


@pytest.mark.features("v2-rest")
def test_unknown_model_infer_is_a_4xx_json_error(v2: V2RestClient) -> None:
    """Inference on a model the server does not have is a 4xx {"error": "<message>"}."""
    expect_json_error(
        v2.infer(UNKNOWN_MODEL, _request()),
        'POST /v2/models/{unknown}/infer returns 4xx {"error": ...}',
    )


def _versioned(target: Target, v2: V2RestClient) -> tuple[str, str]:
    """A model and one of the versions its metadata lists; unsupported when none lists one."""
    for model in sorted(target.models):
        reply = v2.model_metadata(model)
        if reply.status == 200:
            versions = reply.json().get("versions") or []
            if versions:
                return model, str(versions[0])
    unsupported(target, "v2-model-versions", "no model metadata lists a version")


@pytest.mark.features("v2-rest", "v2-model-versions")
def test_versioned_model_metadata_matches(target: Target, v2: V2RestClient) -> None:
    """GET /v2/models/{m}/versions/{v} answers the metadata of that model for a listed
    version."""
    model, version = _versioned(target, v2)
    rule = "GET /v2/models/{m}/versions/{v} returns the model's metadata"
    reply = v2.model_metadata(model, version)
    expect_status(reply, 200, rule)
    meta = expect_model(ModelMetadata, reply.json(), rule, reply)
    expect(meta.name == model, rule, f"metadata names {meta.name!r}", reply)


@pytest.mark.features("v2-rest", "v2-model-versions")
def test_versioned_model_is_ready(target: Target, v2: V2RestClient) -> None:
    """GET /v2/models/{m}/versions/{v}/ready answers 200 for a listed, loaded version."""
    model, version = _versioned(target, v2)
    expect_status(
        v2.model_ready(model, version), 200, "GET /v2/models/{m}/versions/{v}/ready returns 200"
    )


@pytest.mark.features("v2-rest", "v2-model-versions")
def test_versioned_model_infers(target: Target, v2: V2RestClient, numeric: ModelInfo) -> None:
    """POST /v2/models/{m}/versions/{v}/infer answers like the unversioned route."""
    rule = "POST /v2/models/{m}/versions/{v}/infer returns 200"
    reply = v2.model_metadata(numeric.name)
    versions = (reply.json().get("versions") or []) if reply.status == 200 else []
    if not versions:
        unsupported(target, "v2-model-versions", f"{numeric.name} lists no version")
    response = v2.infer(numeric.name, _request(), version=str(versions[0]))
    expect_status(response, 200, rule)
    expect_model(InferenceResponse, response.json(), rule, response)


@pytest.mark.features("v2-rest")
def test_infer_returns_an_inference_response(v2: V2RestClient, numeric: ModelInfo) -> None:
    """A valid inference answers 200 with {model_name, outputs: [{name, shape, datatype,
    data}]}."""
    response = _infer_ok(v2, numeric.name, _request(), "infer returns 200 and an InferenceResponse")
    expect(response.outputs, "infer returns outputs", "no outputs")


@pytest.mark.features("v2-rest")
def test_infer_response_names_the_model(v2: V2RestClient, numeric: ModelInfo) -> None:
    """The response's model_name is the model the request was sent to."""
    reply = v2.infer(numeric.name, _request())
    rule = "the inference response names the model that answered"
    expect_status(reply, 200, rule)
    body = reply.json()
    expect(
        body.get("model_name") == numeric.name,
        rule,
        f"model_name {body.get('model_name')!r}",
        reply,
    )


@pytest.mark.features("v2-rest")
def test_infer_echoes_request_id(v2: V2RestClient, numeric: ModelInfo) -> None:
    """ "id: An identifier for the inference request. If specified will be returned in the
    response."""
    reply = v2.infer(numeric.name, _request(id="servegate-req-42"))
    rule = "a request id is returned in the response"
    expect_status(reply, 200, rule)
    expect(
        reply.json().get("id") == "servegate-req-42", rule, f"id {reply.json().get('id')!r}", reply
    )


@pytest.mark.features("v2-rest")
def test_infer_outputs_limit_what_comes_back(v2: V2RestClient, numeric: ModelInfo) -> None:
    """With `outputs` in the request, only the outputs named there are returned."""
    wanted = "int32" + numeric_echo.SUM_SUFFIX
    reply = v2.infer(numeric.name, _request(outputs=[{"name": wanted}]))
    rule = "the request's outputs list limits the response's outputs"
    expect_status(reply, 200, rule)
    response = expect_model(InferenceResponse, reply.json(), rule, reply)
    names = [o.name for o in response.outputs]
    expect(names == [wanted], rule, f"asked for [{wanted!r}], got {names}", reply)


@pytest.mark.features("v2-rest")
def test_infer_accepts_request_and_tensor_parameters(v2: V2RestClient, numeric: ModelInfo) -> None:
    """Request `parameters` and input tensor `parameters` are part of the protocol: a request
    carrying parameters the model does not use still succeeds."""
    body = _request(parameters={"servegate_probe": "x", "priority": 1})
    body["inputs"][0]["parameters"] = {"servegate_tensor_probe": True}
    _infer_ok(v2, numeric.name, body, "infer accepts request and tensor parameters")


@pytest.mark.features("v2-rest")
def test_infer_accepts_requested_output_parameters(v2: V2RestClient, numeric: ModelInfo) -> None:
    """A requested output may carry `parameters`; the request still succeeds."""
    body = _request(outputs=[{"name": "int32", "parameters": {"servegate_probe": 1}}])
    _infer_ok(v2, numeric.name, body, "infer accepts requested-output parameters")


@pytest.mark.features("v2-rest")
def test_infer_response_is_json(v2: V2RestClient, numeric: ModelInfo) -> None:
    """Without the binary extension in play, the inference response is application/json."""
    reply = v2.infer(numeric.name, _request())
    rule = "the inference response has content type application/json"
    expect_status(reply, 200, rule)
    expect(
        reply.content_type == "application/json",
        rule,
        f"content type {reply.content_type!r}",
        reply,
    )
