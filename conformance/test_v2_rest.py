"""Open Inference Protocol (V2) over REST: metadata, readiness, inference envelope, errors.

Rules from the protocol's REST specification (kserve's required_api.md, the open inference
protocol's inference_rest.md). Inference checks use the target's numeric echo model
(servegate/tasks/numeric_echo.py), which takes any tensor.
"""

from __future__ import annotations

import pytest

from servegate.checks import expect, expect_model, expect_status
from servegate.protocols.http import NotJSON, Reply
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
    """An HTTP error status (4xx or 5xx: "typically 400") whose body is the protocol's error
    object {"error": "<message>"}."""
    expect(reply.status >= 400, rule, f"status {reply.status}, expected an error status", reply)
    try:
        body = reply.json()
    except NotJSON:
        expect(False, rule, f"status {reply.status} with a body that is not JSON", reply)
    expect_model(ErrorResponse, body, rule, reply)


def _infer_ok(v2: V2RestClient, model: str, body: dict, rule: str) -> InferenceResponse:
    reply = v2.infer(model, body)
    expect_status(reply, 200, rule)
    return expect_model(InferenceResponse, reply.json(), rule, reply)


@pytest.mark.features("v2-rest")
def test_server_metadata_names_server_version_extensions(v2: V2RestClient) -> None:
    """ "A successful server metadata request is indicated by a 200 HTTP status code" with
    {"name" : $string, "version" : $string, "extensions" : [ $string, ... ]}, "name" being "A
    descriptive name for the server" (required_api.md, Server Metadata)."""
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
    """ "A successful model metadata request is indicated by a 200 HTTP status code" with
    {name, versions #optional, platform, inputs, outputs}, "name" being "The name of the
    model" (required_api.md, Model Metadata)."""
    expect(target.models, "the server serves at least one model", "no model discovered")
    for model in target.models:
        rule = f"GET /v2/models/{model} returns {{name, platform, inputs, outputs}}"
        reply = v2.model_metadata(model)
        expect_status(reply, 200, rule)
        meta = expect_model(ModelMetadata, reply.json(), rule, reply)
        expect(meta.name == model, rule, f"metadata names {meta.name!r}", reply)


@pytest.mark.features("v2-rest")
def test_model_metadata_tensors_are_well_formed(target: Target, v2: V2RestClient) -> None:
    """$metadata_tensor: "datatype" is "as defined in Tensor Data Types" and "shape" has
    "Variable-size dimensions ... specified as -1" (required_api.md, Model Metadata); BF16 is
    one of the datatypes (grpc_predict_v2.proto)."""
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
def test_unknown_model_metadata_is_an_error_object(v2: V2RestClient) -> None:
    """ "A failed model metadata request must be indicated by an HTTP error status (typically
    400). The HTTP body must contain the $metadata_model_error_response object" {"error":
    $string} (required_api.md). Any error status passes; a 4xx is hardening's wish."""
    expect_json_error(
        v2.model_metadata(UNKNOWN_MODEL),
        'GET /v2/models/{unknown} fails with an error status and {"error": ...}',
    )


@pytest.mark.features("v2-rest")
def test_unknown_model_is_not_ready(v2: V2RestClient) -> None:
    """ "The HTTP response status code indicates a boolean result for the health request. A
    200 status code indicates true and a 4xx status code indicates false" (required_api.md,
    Health): a model the server does not have is not ready, a 4xx."""
    reply = v2.model_ready(UNKNOWN_MODEL)
    expect(
        400 <= reply.status < 500,
        "GET /v2/models/{unknown}/ready returns a 4xx (false)",
        f"status {reply.status}",
        reply,
    )


@pytest.mark.features("v2-rest")
def test_unknown_model_infer_is_an_error_object(v2: V2RestClient) -> None:
    """ "A failed inference request must be indicated by an HTTP error status (typically
    400). The HTTP body must contain the $inference_error_response object" (required_api.md):
    inference on a model the server does not have fails so."""
    expect_json_error(
        v2.infer(UNKNOWN_MODEL, _request()),
        'POST /v2/models/{unknown}/infer fails with an error status and {"error": ...}',
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
    """ "versions": "The model versions that may be explicitly requested via the appropriate
    endpoint" (required_api.md, Model Metadata): GET /v2/models/{m}/versions/{v} answers the
    model's metadata for a listed version. Versions are optional: feature v2-model-versions."""
    model, version = _versioned(target, v2)
    rule = "GET /v2/models/{m}/versions/{v} returns the model's metadata"
    reply = v2.model_metadata(model, version)
    expect_status(reply, 200, rule)
    meta = expect_model(ModelMetadata, reply.json(), rule, reply)
    expect(meta.name == model, rule, f"metadata names {meta.name!r}", reply)


@pytest.mark.features("v2-rest", "v2-model-versions")
def test_versioned_model_is_ready(target: Target, v2: V2RestClient) -> None:
    """GET v2/models/${MODEL_NAME}[/versions/${MODEL_VERSION}]/ready: "A 200 status code
    indicates true" (required_api.md, Health) for a listed, loaded version."""
    model, version = _versioned(target, v2)
    expect_status(
        v2.model_ready(model, version), 200, "GET /v2/models/{m}/versions/{v}/ready returns 200"
    )


@pytest.mark.features("v2-rest", "v2-model-versions")
def test_versioned_model_infers(target: Target, v2: V2RestClient, numeric: ModelInfo) -> None:
    """POST v2/models/${MODEL_NAME}[/versions/${MODEL_VERSION}]/infer (required_api.md):
    inference on a listed version answers like the unversioned route."""
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
    """ "A successful inference request is indicated by a 200 HTTP status code. The inference
    response object" {model_name, model_version #optional, id, parameters #optional,
    outputs: [$response_output]} "is returned in the HTTP body" (required_api.md)."""
    response = _infer_ok(v2, numeric.name, _request(), "infer returns 200 and an InferenceResponse")
    expect(response.outputs, "infer returns outputs", "no outputs")


@pytest.mark.features("v2-rest")
def test_infer_response_names_the_model(v2: V2RestClient, numeric: ModelInfo) -> None:
    """ "model_name" : "The name of the model used for inference" (required_api.md,
    Inference Response JSON Object): the model the request was sent to."""
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
    """ "id" : "An identifier for this request. Optional, but if specified this identifier
    must be returned in the response" (required_api.md, Inference Request JSON Object)."""
    reply = v2.infer(numeric.name, _request(id="servegate-req-42"))
    rule = "a request id is returned in the response"
    expect_status(reply, 200, rule)
    expect(
        reply.json().get("id") == "servegate-req-42", rule, f"id {reply.json().get('id')!r}", reply
    )


@pytest.mark.features("v2-rest")
def test_infer_outputs_limit_what_comes_back(v2: V2RestClient, numeric: ModelInfo) -> None:
    """ "outputs" : "The output tensors requested for this inference ... Optional, if not
    specified all outputs produced by the model will be returned" (required_api.md): with
    `outputs` in the request, the outputs named there are the ones returned."""
    wanted = "int32" + numeric_echo.SUM_SUFFIX
    reply = v2.infer(numeric.name, _request(outputs=[{"name": wanted}]))
    rule = "the request's outputs list limits the response's outputs"
    expect_status(reply, 200, rule)
    response = expect_model(InferenceResponse, reply.json(), rule, reply)
    names = [o.name for o in response.outputs]
    expect(names == [wanted], rule, f"asked for [{wanted!r}], got {names}", reply)


@pytest.mark.features("v2-rest")
def test_infer_accepts_request_and_tensor_parameters(v2: V2RestClient, numeric: ModelInfo) -> None:
    """$inference_request and $request_input carry "parameters" : $parameters #optional, "zero
    or more parameters" where "A server can implement server-specific parameters"
    (required_api.md): a request carrying parameters the model does not use still succeeds."""
    body = _request(parameters={"servegate_probe": "x", "priority": 1})
    body["inputs"][0]["parameters"] = {"servegate_tensor_probe": True}
    _infer_ok(v2, numeric.name, body, "infer accepts request and tensor parameters")


@pytest.mark.features("v2-rest")
def test_infer_accepts_requested_output_parameters(v2: V2RestClient, numeric: ModelInfo) -> None:
    """$request_output is {"name" : $string, "parameters" : $parameters #optional}
    (required_api.md): a requested output carrying parameters still succeeds."""
    body = _request(outputs=[{"name": "int32", "parameters": {"servegate_probe": 1}}])
    _infer_ok(v2, numeric.name, body, "infer accepts requested-output parameters")


@pytest.mark.features("v2-rest", "hardening")
def test_infer_response_is_json(v2: V2RestClient, numeric: ModelInfo) -> None:
    """Hardening: without the binary extension in play, the inference response is labelled
    application/json. The protocol "uses JSON" and shows "Content-Type: application/json" in
    its example (required_api.md, Inference Request Examples) but states no rule on it."""
    reply = v2.infer(numeric.name, _request())
    rule = "the inference response has content type application/json"
    expect_status(reply, 200, rule)
    expect(
        reply.content_type == "application/json",
        rule,
        f"content type {reply.content_type!r}",
        reply,
    )
