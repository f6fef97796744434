"""Bad input over V2 REST and gRPC: every malformed or invalid request is refused cleanly.

REST: a 4xx status with the protocol's error body {"error": "<message>"}, never a 5xx.
gRPC: the status code that names the fault (NOT_FOUND for an unknown model or version,
INVALID_ARGUMENT for a bad request, RESOURCE_EXHAUSTED for a message over the limit), never
INTERNAL or UNKNOWN. After each one the server must still be ready.

The requests go to the target's numeric echo model when it has one, else to its first model:
every case is invalid whatever the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from tritonclient.grpc import service_pb2 as pb

from servegate.checks import expect, expect_model
from servegate.protocols.http import Reply
from servegate.protocols.v2_grpc import V2GrpcClient, build_request, encode_raw
from servegate.protocols.v2_models import ErrorResponse
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import ModelInfo, Target
from servegate.tasks import numeric_echo
from servegate.unsupported import unsupported

UNKNOWN = "servegate-no-such-model"
UNKNOWN_VERSION = "servegate-no-such-version"
#: a body no server should take whole (16 MiB is a common limit; a tensor this size is not
#: a valid FP32 tensor either, so a server without a limit must still refuse it)
OVERSIZE = 20 * 1024 * 1024
#: nesting deeper than any JSON parser's recursion limit
DEPTH = 100_000


def _tensor(
    datatype: str = "FP32", shape: Any = (2,), data: Any = (1.0, 2.0), **extra: Any
) -> dict[str, Any]:
    return {
        "name": "x",
        "datatype": datatype,
        "shape": list(shape) if isinstance(shape, tuple) else shape,
        "data": list(data) if isinstance(data, tuple) else data,
        **extra,
    }


def _body(*tensors: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"inputs": list(tensors) or [_tensor()], **extra}


def _without(key: str) -> dict[str, Any]:
    t = _tensor()
    del t[key]
    return _body(t)


@dataclass
class RestCase:
    id: str
    #: a JSON body, or raw bytes
    json: Any = None
    content: bytes | None = None
    content_type: str = "application/json"
    model: str | None = None
    version: str | None = None
    #: GET the model's metadata instead of inferring
    metadata: bool = False

    def __str__(self) -> str:
        # reports name a parameter by its str(); the body may be megabytes
        return self.id


REST_CASES = [
    RestCase("malformed-json", content=b'{"inputs": [{"name": "x", "datatype": "FP32",'),
    RestCase("body-not-json", content=b"inputs=x&datatype=FP32"),
    RestCase("body-is-a-json-array", json=[_tensor()]),
    RestCase("body-is-a-json-string", json="infer"),
    RestCase("empty-body", content=b""),
    RestCase(
        "wrong-content-type", content=b"<inputs><x>1</x></inputs>", content_type="application/xml"
    ),
    RestCase("missing-inputs", json={"id": "no-inputs"}),
    RestCase("inputs-null", json={"inputs": None}),
    RestCase("inputs-not-a-list", json={"inputs": {"name": "x"}}),
    RestCase("empty-inputs", json={"inputs": []}),
    RestCase("input-not-an-object", json={"inputs": [42]}),
    RestCase("input-without-name", json=_without("name")),
    RestCase("input-without-datatype", json=_without("datatype")),
    RestCase("input-without-shape", json=_without("shape")),
    RestCase("input-without-data", json=_without("data")),
    RestCase("unknown-datatype", json=_body(_tensor("FLOAT32"))),
    RestCase("lowercase-datatype", json=_body(_tensor("fp32"))),
    RestCase("data-short-of-shape", json=_body(_tensor(shape=(3,)))),
    RestCase("data-beyond-shape", json=_body(_tensor(shape=(1,)))),
    RestCase("ragged-nested-data", json=_body(_tensor(shape=(2, 2), data=[[1.0, 2.0], [3.0]]))),
    RestCase("string-in-fp32", json=_body(_tensor(data=("one", "two")))),
    RestCase("string-in-int64", json=_body(_tensor("INT64", data=("1", "2")))),
    RestCase("float-in-int32", json=_body(_tensor("INT32", data=(1.5, 2.5)))),
    RestCase("null-in-int32", json=_body(_tensor("INT32", data=(1, None)))),
    RestCase("string-in-bool", json=_body(_tensor("BOOL", data=("true", "false")))),
    RestCase("number-in-bytes", json=_body(_tensor("BYTES", data=(1, 2)))),
    RestCase("uint8-overflow", json=_body(_tensor("UINT8", data=(255, 256)))),
    RestCase("int8-underflow", json=_body(_tensor("INT8", data=(-129, 0)))),
    RestCase("negative-uint32", json=_body(_tensor("UINT32", data=(-1, 0)))),
    RestCase("negative-dimension", json=_body(_tensor(shape=(-2,)))),
    RestCase("overflowing-dimension", json=_body(_tensor(shape=(2**64, 1)))),
    RestCase("huge-dimension-product", json=_body(_tensor(shape=(2**31, 2**31)))),
    RestCase("shape-not-a-list", json=_body(_tensor(shape="2"))),
    RestCase("fractional-dimension", json=_body(_tensor(shape=(2.5,)))),
    RestCase("id-not-a-string", json=_body(id=42)),
    RestCase("parameters-not-an-object", json=_body(parameters=[1, 2])),
    RestCase("unknown-requested-output", json=_body(outputs=[{"name": "servegate-no-such"}])),
    RestCase(
        "non-utf8",
        content=b'{"inputs": [{"name": "x", "datatype": "BYTES", '
        b'"shape": [1], "data": ["\xff\xfe\xfd"]}]}',
    ),
    RestCase(
        "deep-nesting",
        content=(
            b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": '
            + b"[" * DEPTH
            + b"1"
            + b"]" * DEPTH
            + b"}]}"
        ),
    ),
    RestCase(
        "body-over-limit",
        content=(
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["'
            + b"9" * OVERSIZE
            + b'"]}]}'
        ),
    ),
    RestCase("unknown-model", json=_body(), model=UNKNOWN),
    RestCase("unknown-model-metadata", model=UNKNOWN, metadata=True),
    RestCase("unknown-version", json=_body(), version=UNKNOWN_VERSION),
    RestCase("unknown-version-metadata", version=UNKNOWN_VERSION, metadata=True),
]


@pytest.fixture
def probe_model(target: Target) -> ModelInfo:
    """The model the bad requests go to."""
    model = numeric_echo.numeric_model(target)
    if model is None and target.models:
        model = target.models[sorted(target.models)[0]]
    if model is None:
        unsupported(target, [], "serves no model")
    return model


def _send_rest(v2: V2RestClient, case: RestCase, model: str) -> Reply:
    name = case.model or model
    if case.metadata:
        return v2.model_metadata(name, case.version)
    if case.content is not None:
        return v2.infer(
            name,
            content=case.content,
            version=case.version,
            headers={"content-type": case.content_type},
        )
    return v2.infer(name, case.json, version=case.version)


@pytest.mark.features("v2-rest")
@pytest.mark.parametrize("case", REST_CASES, ids=[c.id for c in REST_CASES])
def test_bad_rest_request_is_a_4xx_json_error(
    v2: V2RestClient, probe_model: ModelInfo, case: RestCase
) -> None:
    """A bad request gets a 4xx status and the body {"error": "<message>"} (no 5xx), and the
    server is still ready afterwards."""
    reply = _send_rest(v2, case, probe_model.name)
    rule = f"a bad request ({case.id}) gets a 4xx with a JSON error body"
    expect(reply.status < 500, rule, f"status {reply.status}: a server error, not a 4xx", reply)
    expect(400 <= reply.status < 500, rule, f"status {reply.status}", reply)
    expect_model(ErrorResponse, reply.json(), rule, reply)
    ready = v2.ready()
    expect(
        ready.status == 200,
        f"the server is still ready after a bad request ({case.id})",
        f"GET /v2/health/ready answers {ready.status}",
        ready,
    )


GRPC_REFUSED = (grpc.StatusCode.INVALID_ARGUMENT,)
GRPC_NOT_FOUND = (grpc.StatusCode.NOT_FOUND,)


@dataclass
class GrpcCase:
    id: str
    build: Callable[[str], Any]
    codes: tuple[grpc.StatusCode, ...] = GRPC_REFUSED
    rpc: str = "ModelInfer"

    def __str__(self) -> str:
        return self.id


def _req(
    model: str, *rows: tuple[str, str, list[int], list[Any]], raw: bool = False, version: str = ""
) -> pb.ModelInferRequest:
    return build_request(
        model, list(rows) or [("x", "FP32", [2], [1.0, 2.0])], raw=raw, version=version
    )


def _typed(
    model: str, datatype: str, shape: list[int], field_name: str, values: list[Any]
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
    getattr(tensor.contents, field_name).extend(values)
    return request


def _raw(model: str, datatype: str, shape: list[int], raw: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


def _raw_and_typed(model: str) -> pb.ModelInferRequest:
    request = _typed(model, "FP32", [2], "fp32_contents", [1.0, 2.0])
    request.raw_input_contents.append(encode_raw("FP32", [1.0, 2.0]))
    return request


def _raw_count_mismatch(model: str) -> pb.ModelInferRequest:
    request = _req(model, ("x", "FP32", [2], [1.0, 2.0]), ("y", "FP32", [1], [3.0]), raw=True)
    del request.raw_input_contents[1]
    return request


GRPC_CASES = [
    GrpcCase("unknown-model", lambda m: _req(UNKNOWN), GRPC_NOT_FOUND),
    GrpcCase(
        "unknown-model-metadata",
        lambda m: pb.ModelMetadataRequest(name=UNKNOWN),
        GRPC_NOT_FOUND,
        rpc="ModelMetadata",
    ),
    GrpcCase("unknown-version", lambda m: _req(m, version=UNKNOWN_VERSION), GRPC_NOT_FOUND),
    GrpcCase(
        "unknown-version-metadata",
        lambda m: pb.ModelMetadataRequest(name=m, version=UNKNOWN_VERSION),
        GRPC_NOT_FOUND,
        rpc="ModelMetadata",
    ),
    GrpcCase(
        "empty-model-name",
        lambda m: _req(""),
        (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT),
    ),
    GrpcCase("no-inputs", lambda m: pb.ModelInferRequest(model_name=m)),
    GrpcCase("unknown-datatype", lambda m: _typed(m, "FLOAT32", [2], "fp32_contents", [1.0, 2.0])),
    GrpcCase("empty-datatype", lambda m: _typed(m, "", [2], "fp32_contents", [1.0, 2.0])),
    GrpcCase("typed-short-of-shape", lambda m: _typed(m, "FP32", [3], "fp32_contents", [1.0, 2.0])),
    GrpcCase("typed-beyond-shape", lambda m: _typed(m, "INT64", [1], "int64_contents", [1, 2])),
    GrpcCase("contents-in-wrong-field", lambda m: _typed(m, "FP32", [2], "int_contents", [1, 2])),
    GrpcCase("uint8-overflow", lambda m: _typed(m, "UINT8", [2], "uint_contents", [255, 300])),
    GrpcCase("negative-dimension", lambda m: _typed(m, "FP32", [-2], "fp32_contents", [1.0, 2.0])),
    GrpcCase("raw-short-of-shape", lambda m: _raw(m, "FP32", [4], encode_raw("FP32", [1.0]))),
    GrpcCase("raw-partial-element", lambda m: _raw(m, "INT32", [1], b"\x01\x00\x00")),
    GrpcCase(
        "raw-bytes-bad-length-prefix",
        lambda m: _raw(m, "BYTES", [1], (100).to_bytes(4, "little") + b"abc"),
    ),
    GrpcCase("raw-count-mismatch", _raw_count_mismatch),
    GrpcCase("raw-and-typed", _raw_and_typed),
    GrpcCase(
        "message-over-limit",
        lambda m: _raw(m, "BYTES", [1], encode_raw("BYTES", [b"9" * (8 * 1024 * 1024)])),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT),
    ),
]


@pytest.mark.features("v2-grpc")
@pytest.mark.parametrize("case", GRPC_CASES, ids=[c.id for c in GRPC_CASES])
def test_bad_grpc_request_gets_the_right_status(
    v2_grpc: V2GrpcClient, probe_model: ModelInfo, case: GrpcCase
) -> None:
    """A bad gRPC request ends with the status code naming the fault (NOT_FOUND,
    INVALID_ARGUMENT, RESOURCE_EXHAUSTED), never INTERNAL or UNKNOWN, and the server is still
    ready afterwards."""
    reply = v2_grpc.call(case.rpc, case.build(probe_model.name))
    wanted = " or ".join(c.name for c in case.codes)
    expect(
        reply.code in case.codes,
        f"a bad gRPC request ({case.id}) ends with {wanted}",
        f"status {reply.code.name}: {reply.details[:300]}",
        reply,
    )
    ready = v2_grpc.ready()
    expect(
        ready.ok and ready.message.ready,
        f"the server is still ready after a bad gRPC request ({case.id})",
        f"ServerReady: {ready.code.name} {ready.details}",
        ready,
    )


def test_bad_input_catalogue_is_large_enough() -> None:
    """At least 40 distinct bad inputs are checked across REST and gRPC."""
    ids = [c.id for c in REST_CASES] + [f"grpc-{c.id}" for c in GRPC_CASES]
    assert len(set(ids)) == len(ids) >= 40, json.dumps(ids)
