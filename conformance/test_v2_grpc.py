"""Open Inference Protocol (V2) over gRPC (inference.GRPCInferenceService): the RPCs, typed and
raw tensor contents, status codes, and agreement with REST.

Rules from grpc_predict_v2.proto and the GRPC section of required_api.md ("The GRPC API closely
follows the concepts defined in the HTTP/REST API").
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb

from conformance.test_v2_tensors import HYPOTHESIS, tensors
from servegate.checks import expect, expect_model, expect_status
from servegate.protocols.v2_grpc import GrpcReply, V2GrpcClient, build_request, output_values
from servegate.protocols.v2_models import (
    DATATYPES,
    InferenceResponse,
    flatten,
    tensor,
    tensor_problems,
)
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import ModelInfo, Target
from servegate.tasks import numeric_echo

UNKNOWN_MODEL = "servegate-no-such-model"


def _ok(reply: GrpcReply, rule: str) -> Any:
    expect(reply.ok, rule, f"status {reply.code.name}: {reply.details}", reply)
    return reply.message


def _outputs(message: pb.ModelInferResponse) -> dict[str, tuple[Any, list[Any]]]:
    return {o.name: (o, output_values(message, i)) for i, o in enumerate(message.outputs)}


def _echo(
    client: V2GrpcClient,
    model: str,
    datatype: str,
    shape: list[int],
    data: list[Any],
    raw: bool,
    rule: str,
) -> None:
    name = numeric_echo.input_name(datatype)
    reply = client.infer(build_request(model, [(name, datatype, shape, data)], raw=raw))
    outputs = _outputs(_ok(reply, rule))
    expect(name in outputs, rule, f"no output {name!r} (got {sorted(outputs)})", reply)
    out, got = outputs[name]
    expect(
        out.datatype == datatype and list(out.shape) == shape,
        rule,
        f"output {name}: {out.datatype} {list(out.shape)}, sent {datatype} {shape}",
        reply,
    )
    expect(
        numeric_echo.same_values(datatype, data, got),
        rule,
        f"sent {data!r}, got back {got!r}",
        reply,
    )


@pytest.mark.features("v2-grpc")
def test_grpc_server_metadata_names_server_version(v2_grpc: V2GrpcClient) -> None:
    """ServerMetadataResponse: "The server name", "The server version", "The extensions
    supported by the server" (grpc_predict_v2.proto): a name and a version."""
    rule = "ServerMetadata returns a name and a version"
    reply = v2_grpc.server_metadata()
    meta = _ok(reply, rule)
    expect(meta.name and meta.version, rule, f"name {meta.name!r}, version {meta.version!r}", reply)


@pytest.mark.features("v2-grpc")
def test_grpc_every_model_is_ready(target: Target, v2_grpc: V2GrpcClient) -> None:
    """ModelReadyResponse.ready: "True if the model is ready, false if not ready"
    (grpc_predict_v2.proto): every model the server serves answers ready=true."""
    expect(target.models, "the server serves at least one model", "no model discovered")
    for model in target.models:
        rule = f"ModelReady({model}) returns ready=true"
        reply = v2_grpc.model_ready(model)
        expect(_ok(reply, rule).ready, rule, "ready=false", reply)


@pytest.mark.features("v2-grpc")
def test_grpc_model_metadata_describes_every_model(target: Target, v2_grpc: V2GrpcClient) -> None:
    """ModelMetadataResponse: "The model name", and TensorMetadata whose "shape" has "A
    variable-size dimension ... represented by a -1 value" (grpc_predict_v2.proto); datatypes
    "as defined in Tensor Data Types" (required_api.md), BF16 among them."""
    for model in target.models:
        rule = f"ModelMetadata({model}) returns the model's name and valid tensor metadata"
        reply = v2_grpc.model_metadata(model)
        meta = _ok(reply, rule)
        expect(meta.name == model, rule, f"name {meta.name!r}", reply)
        for t in [*meta.inputs, *meta.outputs]:
            expect(
                t.datatype in DATATYPES,
                rule,
                f"tensor {t.name!r}: datatype {t.datatype!r} is not a V2 datatype",
                reply,
            )
            expect(
                all(d >= -1 for d in t.shape),
                rule,
                f"tensor {t.name!r}: shape {list(t.shape)}",
                reply,
            )


@pytest.mark.features("v2-grpc")
@pytest.mark.parametrize("datatype", [dt for dt in numeric_echo.DATATYPES if dt != "FP16"])
def test_grpc_typed_contents_round_trip(
    v2_grpc: V2GrpcClient, numeric: ModelInfo, datatype: str
) -> None:
    """InferTensorContents holds each datatype in "the repeated type that matches the tensor's
    data type" (grpc_predict_v2.proto): each datatype sent so comes back exactly (FP16 has no
    typed field)."""
    _echo(
        v2_grpc,
        numeric.name,
        datatype,
        [2, 2],
        numeric_echo.SAMPLES[datatype],
        False,
        f"{datatype} in typed contents round-trips exactly",
    )


@pytest.mark.features("v2-grpc")
@pytest.mark.parametrize("datatype", numeric_echo.DATATYPES)
def test_grpc_raw_contents_round_trip(
    v2_grpc: V2GrpcClient, numeric: ModelInfo, datatype: str
) -> None:
    """raw_input_contents: "the flattened, one-dimensional, row-major order of the tensor
    elements"; "the FP16 and BF16 data types must be represented as raw content"
    (grpc_predict_v2.proto): each datatype sent raw (little-endian, BYTES length-prefixed)
    comes back exactly."""
    _echo(
        v2_grpc,
        numeric.name,
        datatype,
        [2, 2],
        numeric_echo.SAMPLES[datatype],
        True,
        f"{datatype} in raw_input_contents round-trips exactly",
    )


def _probe(model: str, **kw: Any) -> pb.ModelInferRequest:
    return build_request(
        model, [("int32", "INT32", [2], [1, 2]), ("fp32", "FP32", [2], [0.5, 1.5])], **kw
    )


@pytest.mark.features("v2-grpc")
def test_grpc_infer_echoes_request_id(v2_grpc: V2GrpcClient, numeric: ModelInfo) -> None:
    """ModelInferRequest.id: "Optional identifier for the request. If specified will be
    returned in the response" (grpc_predict_v2.proto)."""
    rule = "ModelInfer returns the request id"
    reply = v2_grpc.infer(_probe(numeric.name, request_id="servegate-req-42"))
    expect(_ok(reply, rule).id == "servegate-req-42", rule, f"id {reply.message.id!r}", reply)


@pytest.mark.features("v2-grpc")
def test_grpc_infer_names_the_model(v2_grpc: V2GrpcClient, numeric: ModelInfo) -> None:
    """ModelInferResponse.model_name: "The name of the model used for inference"
    (grpc_predict_v2.proto)."""
    rule = "ModelInfer names the model that answered"
    reply = v2_grpc.infer(_probe(numeric.name))
    expect(
        _ok(reply, rule).model_name == numeric.name,
        rule,
        f"model_name {reply.message.model_name!r}",
        reply,
    )


@pytest.mark.features("v2-grpc")
def test_grpc_outputs_limit_what_comes_back(v2_grpc: V2GrpcClient, numeric: ModelInfo) -> None:
    """ModelInferRequest.outputs: "The requested output tensors for the inference. Optional,
    if not specified all outputs produced by the model will be returned"
    (grpc_predict_v2.proto): the outputs named are the ones returned."""
    wanted = "int32" + numeric_echo.SUM_SUFFIX
    rule = "ModelInfer's outputs list limits the response's outputs"
    reply = v2_grpc.infer(_probe(numeric.name, outputs=[wanted]))
    names = [o.name for o in _ok(reply, rule).outputs]
    expect(names == [wanted], rule, f"asked for [{wanted!r}], got {names}", reply)


@pytest.mark.features("v2-grpc")
def test_grpc_accepts_request_and_tensor_parameters(
    v2_grpc: V2GrpcClient, numeric: ModelInfo
) -> None:
    """ModelInferRequest and InferInputTensor carry "Optional inference parameters"
    (grpc_predict_v2.proto): parameters the model does not use do not make a request fail."""
    request = _probe(numeric.name)
    request.parameters["servegate_probe"].string_param = "x"
    request.inputs[0].parameters["servegate_tensor_probe"].bool_param = True
    _ok(v2_grpc.infer(request), "ModelInfer accepts request and tensor parameters")


@pytest.mark.features("v2-grpc")
def test_grpc_response_tensors_are_well_formed(v2_grpc: V2GrpcClient, numeric: ModelInfo) -> None:
    """InferOutputTensor: "The tensor data type", "The tensor shape"; "The size must match
    what is expected by the tensor's shape" (grpc_predict_v2.proto): every output has a V2
    datatype, its element count is the product of its shape, its values belong to the type."""
    inputs = [
        (numeric_echo.input_name(dt), dt, [4], numeric_echo.SAMPLES[dt])
        for dt in numeric_echo.DATATYPES
        if dt != "FP16"
    ]
    rule = "ModelInfer's output tensors are well formed"
    reply = v2_grpc.infer(build_request(numeric.name, inputs))
    problems = [
        p
        for name, (out, values) in _outputs(_ok(reply, rule)).items()
        for p in tensor_problems(name, out.datatype, list(out.shape), values)
    ]
    expect(not problems, rule, "; ".join(problems), reply)


@pytest.mark.features("v2-grpc")
def test_grpc_unknown_model_fails(v2_grpc: V2GrpcClient) -> None:
    """ "Errors are indicated by the google.rpc.Status returned for the request. The OK code
    indicates success and other codes indicate failure" (grpc_predict_v2.proto, ModelMetadata
    and ModelInfer): a model the server does not have ends with a status other than OK."""
    rule = "ModelMetadata and ModelInfer of an unknown model end with a status other than OK"
    for reply in (v2_grpc.model_metadata(UNKNOWN_MODEL), v2_grpc.infer(_probe(UNKNOWN_MODEL))):
        expect(not reply.ok, rule, "status OK for a model the server does not have", reply)


@pytest.mark.features("v2-grpc", "hardening")
def test_grpc_unknown_model_is_not_found(v2_grpc: V2GrpcClient) -> None:
    """Hardening: ModelMetadata and ModelInfer for a model the server does not have end with
    NOT_FOUND, the code that names the fault. The protocol asks only for a status other than
    OK (test_grpc_unknown_model_fails)."""
    rule = "an unknown model gives gRPC status NOT_FOUND"
    for reply in (v2_grpc.model_metadata(UNKNOWN_MODEL), v2_grpc.infer(_probe(UNKNOWN_MODEL))):
        expect(reply.code == grpc.StatusCode.NOT_FOUND, rule, f"status {reply.code.name}", reply)


@pytest.mark.features("v2-rest", "v2-grpc")
def test_rest_and_grpc_give_the_same_outputs(
    v2: V2RestClient, v2_grpc: V2GrpcClient, numeric: ModelInfo
) -> None:
    """ "The GRPC API closely follows the concepts defined in the HTTP/REST API"
    (required_api.md): the same request over REST and over gRPC gives the same outputs (names,
    datatypes, shapes, values)."""
    rows = [
        (numeric_echo.input_name(dt), dt, [4], numeric_echo.SAMPLES[dt])
        for dt in numeric_echo.DATATYPES
        if dt != "FP16"
    ]
    rule = "REST and gRPC give the same outputs for the same request"
    rest = v2.infer(numeric.name, {"inputs": [tensor(*row) for row in rows]})
    expect_status(rest, 200, rule)
    rest_out = {o.name: o for o in expect_model(InferenceResponse, rest.json(), rule, rest).outputs}
    reply = v2_grpc.infer(build_request(numeric.name, rows))
    grpc_out = _outputs(_ok(reply, rule))
    expect(
        sorted(rest_out) == sorted(grpc_out),
        rule,
        f"REST outputs {sorted(rest_out)}, gRPC outputs {sorted(grpc_out)}",
        reply,
    )
    for name, (out, values) in grpc_out.items():
        r = rest_out[name]
        same = (
            r.datatype == out.datatype
            and list(r.shape) == list(out.shape)
            and numeric_echo.same_values(out.datatype, flatten(r.data), values)
        )
        expect(
            same,
            rule,
            f"{name}: REST {r.datatype} {r.shape} {flatten(r.data)!r}; gRPC "
            f"{out.datatype} {list(out.shape)} {values!r}",
            reply,
        )


@pytest.mark.features("v2-grpc")
def test_grpc_hypothesis_round_trip_is_exact(v2_grpc: V2GrpcClient, numeric: ModelInfo) -> None:
    """Raw contents and typed contents both hold "the flattened, one-dimensional, row-major
    order of the tensor elements" (grpc_predict_v2.proto): generated tensors of any datatype
    and shape round-trip exactly over gRPC either way (FP16 raw only)."""

    @HYPOTHESIS
    @given(tensors(), st.booleans())
    def round_trip(generated: tuple[str, list[int], list[Any]], raw: bool) -> None:
        datatype, shape, data = generated
        raw = raw or datatype == "FP16"
        _echo(
            v2_grpc,
            numeric.name,
            datatype,
            shape,
            data,
            raw,
            f"a generated {datatype} {shape} tensor round-trips exactly over gRPC "
            f"({'raw' if raw else 'typed'} contents)",
        )

    round_trip()
