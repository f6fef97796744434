"""Bad input over V2 REST and gRPC: what the protocol requires, and what good practice adds.

Core (the protocol): "A failed inference request must be indicated by an HTTP error status
(typically 400). The HTTP body must contain the $inference_error_response object"
{"error": "<message>"} (required_api.md, Inference Response JSON Error Object; model metadata
alike). Any error status passes, a 500 included. Over gRPC "Errors are indicated by the
google.rpc.Status returned for the request. The OK code indicates success and other codes
indicate failure" (grpc_predict_v2.proto): any status but OK passes. Where the protocol leaves
the server a choice, every allowed answer passes:

- element values of the wrong type or range: "The server can decide to coerce each element to
  the required type or return an error if an unexpected value is received" (Tensor Data), so a
  200 whose tensors are well formed and whose values are a coercion of those sent passes;
- a request with no inputs, a body or message above a size limit, bytes that are not UTF-8:
  the protocol makes none of them an error, so a well-formed 200 passes too.

Hardening (good practice, the ``hardening`` profile): every one of these requests is refused
with a 4xx and the error object, never a 5xx; over gRPC with the code that names the fault
(NOT_FOUND for an unknown model or version, INVALID_ARGUMENT for a bad request,
RESOURCE_EXHAUSTED for a message over the limit), never INTERNAL or UNKNOWN; and the server is
still ready afterwards.

The requests go to the target's numeric echo model when it has one, else to its first model:
every case is invalid whatever the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from tritonclient.grpc import service_pb2 as pb

from servegate.checks import expect, expect_model
from servegate.protocols.http import NotJSON, Reply
from servegate.protocols.v2_grpc import (
    GrpcReply,
    V2GrpcClient,
    build_request,
    encode_raw,
    output_values,
)
from servegate.protocols.v2_models import ErrorResponse, InferenceResponse, flatten, tensor_problems
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

#: the protocol calls it an error: only a failure answers it
REFUSE = "refuse"
#: the protocol lets the server coerce the elements: a 200 with coerced values answers it too
COERCE = "coerce"
#: the protocol does not make it an error: a well-formed 200 answers it too
OPEN = "open"

#: the versioned routes are optional: "The versions portion of the URL is shown as optional to
#: allow implementations that don't support versioning" (required_api.md)
VERSIONED = pytest.mark.features("v2-model-versions")
VERSIONED_CASES = {"unknown-version", "unknown-version-metadata"}


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
    #: REFUSE, COERCE or OPEN: what the protocol lets the server answer
    allows: str = REFUSE
    #: for COERCE: the values of input "x" a coercion may give (any one of them)
    coerced: tuple[tuple[Any, ...], ...] = ()
    #: the spec's words that make the request bad, or leave it open
    why: str = ""
    #: probes a parser's or allocator's limits (nesting depth, a shape of 2^62 elements, a
    #: 20 MiB body): robustness the protocol does not speak of, so hardening only. Run in
    #: the core, one crash would turn every later check into "unreachable" and hide what the
    #: server does conform to (Triton 2.51 dies on two of them).
    stress: bool = False

    def __str__(self) -> str:
        # reports name a parameter by its str(); the body may be megabytes
        return self.id


_BODY = "the body must be the $inference_request JSON object"
_FIELD = "$request_input requires name, shape, datatype and data"
_DATATYPE = (
    'the datatype is one of the Tensor Data Types; "All strings in all contexts are case-sensitive"'
)
_SHAPE = "the shape and data must represent the full shape and contents of the entire batch"
_DIM = "each dimension must be an integer representable as an unsigned 64-bit integer value"
_ELEMENT = '"The server can decide to coerce each element to the required type or return an error"'

REST_CASES = [
    RestCase(
        "malformed-json",
        content=b'{"inputs": [{"name": "x", "datatype": "FP32",',
        why=_BODY,
    ),
    RestCase("body-not-json", content=b"inputs=x&datatype=FP32", why=_BODY),
    RestCase("body-is-a-json-array", json=[_tensor()], why=_BODY),
    RestCase("body-is-a-json-string", json="infer", why=_BODY),
    RestCase("empty-body", content=b"", why=_BODY),
    RestCase(
        "wrong-content-type",
        content=b"<inputs><x>1</x></inputs>",
        content_type="application/xml",
        why=_BODY,
    ),
    RestCase("missing-inputs", json={"id": "no-inputs"}, why='"inputs" is not #optional'),
    RestCase("inputs-null", json={"inputs": None}, why='"inputs" is a list of $request_input'),
    RestCase("inputs-not-a-list", json={"inputs": {"name": "x"}}, why='"inputs" is a list'),
    RestCase(
        "empty-inputs",
        json={"inputs": []},
        allows=OPEN,
        why="the protocol does not make a request without inputs an error",
    ),
    RestCase("input-not-an-object", json={"inputs": [42]}, why="an input is a JSON object"),
    RestCase("input-without-name", json=_without("name"), why=_FIELD),
    RestCase("input-without-datatype", json=_without("datatype"), why=_FIELD),
    RestCase("input-without-shape", json=_without("shape"), why=_FIELD),
    RestCase("input-without-data", json=_without("data"), why=_FIELD),
    RestCase("unknown-datatype", json=_body(_tensor("FLOAT32")), why=_DATATYPE),
    RestCase("lowercase-datatype", json=_body(_tensor("fp32")), why=_DATATYPE),
    RestCase("data-short-of-shape", json=_body(_tensor(shape=(3,))), why=_SHAPE),
    RestCase("data-beyond-shape", json=_body(_tensor(shape=(1,))), why=_SHAPE),
    RestCase(
        "ragged-nested-data",
        json=_body(_tensor(shape=(2, 2), data=[[1.0, 2.0], [3.0]])),
        why=_SHAPE,
    ),
    RestCase(
        "string-in-fp32",
        json=_body(_tensor(data=("one", "two"))),
        why='"one" and "two" coerce to no FP32 value, so only the error is left',
    ),
    RestCase(
        "string-in-int64",
        json=_body(_tensor("INT64", data=("1", "2"))),
        allows=COERCE,
        coerced=((1, 2),),
        why=_ELEMENT,
    ),
    RestCase(
        "float-in-int32",
        json=_body(_tensor("INT32", data=(1.5, 2.5))),
        allows=COERCE,
        # truncation, rounding half to even, rounding half up
        coerced=((1, 2), (2, 2), (2, 3)),
        why=_ELEMENT,
    ),
    RestCase(
        "null-in-int32",
        json=_body(_tensor("INT32", data=(1, None))),
        why='"Each element of the array may be an integer, floating-point number, string or '
        'boolean value": null is none of them',
    ),
    RestCase(
        "string-in-bool",
        json=_body(_tensor("BOOL", data=("true", "false"))),
        allows=COERCE,
        coerced=((True, False),),
        why=_ELEMENT,
    ),
    RestCase(
        "number-in-bytes",
        json=_body(_tensor("BYTES", data=(1, 2))),
        allows=COERCE,
        coerced=(("1", "2"),),
        why=_ELEMENT,
    ),
    RestCase(
        "uint8-overflow",
        json=_body(_tensor("UINT8", data=(255, 256))),
        allows=COERCE,
        # wrapped or saturated
        coerced=((255, 0), (255, 255)),
        why=_ELEMENT,
    ),
    RestCase(
        "int8-underflow",
        json=_body(_tensor("INT8", data=(-129, 0))),
        allows=COERCE,
        coerced=((127, 0), (-128, 0)),
        why=_ELEMENT,
    ),
    RestCase(
        "negative-uint32",
        json=_body(_tensor("UINT32", data=(-1, 0))),
        allows=COERCE,
        coerced=((4294967295, 0), (0, 0)),
        why=_ELEMENT,
    ),
    RestCase("negative-dimension", json=_body(_tensor(shape=(-2,))), why=_DIM),
    RestCase("overflowing-dimension", json=_body(_tensor(shape=(2**64, 1))), why=_DIM),
    RestCase(
        "huge-dimension-product",
        json=_body(_tensor(shape=(2**31, 2**31))),
        why=_SHAPE,
        stress=True,
    ),
    RestCase("shape-not-a-list", json=_body(_tensor(shape="2")), why=_DIM),
    RestCase("fractional-dimension", json=_body(_tensor(shape=(2.5,))), why=_DIM),
    RestCase("id-not-a-string", json=_body(id=42), why='"id" : $string'),
    RestCase(
        "parameters-not-an-object",
        json=_body(parameters=[1, 2]),
        why="$parameters is an object of name/value pairs",
    ),
    RestCase(
        "unknown-requested-output",
        json=_body(outputs=[{"name": "servegate-no-such"}]),
        why="the server must return the output tensors requested, and the model has no such one",
    ),
    RestCase(
        "non-utf8",
        content=b'{"inputs": [{"name": "x", "datatype": "BYTES", '
        b'"shape": [1], "data": ["\xff\xfe\xfd"]}]}',
        allows=OPEN,
        why="the protocol does not say how a server reads bytes that are not UTF-8",
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
        why=_SHAPE,
        stress=True,
    ),
    RestCase(
        "body-over-limit",
        content=(
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["'
            + b"9" * OVERSIZE
            + b'"]}]}'
        ),
        allows=OPEN,
        why="the protocol sets no size limit",
        stress=True,
    ),
    RestCase("unknown-model", json=_body(), model=UNKNOWN, why="the model does not exist"),
    RestCase(
        "unknown-model-metadata",
        model=UNKNOWN,
        metadata=True,
        why="the model does not exist",
    ),
    RestCase(
        "unknown-version",
        json=_body(),
        version=UNKNOWN_VERSION,
        why="the model has no such version",
    ),
    RestCase(
        "unknown-version-metadata",
        version=UNKNOWN_VERSION,
        metadata=True,
        why="the model has no such version",
    ),
]


def _params(cases: Iterable[Any]) -> list[Any]:
    """The cases as pytest parameters; those on versioned routes need v2-model-versions."""
    return [
        pytest.param(c, id=c.id, marks=[VERSIONED] if c.id in VERSIONED_CASES else [])
        for c in cases
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


def _expect_error_object(reply: Reply, rule: str) -> None:
    try:
        body = reply.json()
    except NotJSON:
        expect(False, rule, f"status {reply.status} with a body that is not JSON", reply)
    expect_model(ErrorResponse, body, rule, reply)


def _is_echo(model: ModelInfo, target: Target) -> bool:
    echo = numeric_echo.numeric_model(target)
    return echo is not None and echo.name == model.name


def _coerced_values_match(
    datatype: str, got: list[Any], options: tuple[tuple[Any, ...], ...]
) -> bool:
    return any(numeric_echo.same_values(datatype, list(option), got) for option in options)


def _check_rest_answer(reply: Reply, case: RestCase, echo: bool, rule: str) -> None:
    """A 200 where the protocol allows one: a well-formed response; for a coercion, the echo
    model returns values that are a coercion of those sent."""
    expect(
        case.allows != REFUSE,
        rule,
        f"status 200 for a request the protocol makes an error ({case.why})",
        reply,
    )
    try:
        body = reply.json()
    except NotJSON:
        expect(False, rule, "status 200 with a body that is not JSON", reply)
    response = expect_model(InferenceResponse, body, rule, reply)
    problems = [
        p for o in response.outputs for p in tensor_problems(o.name, o.datatype, o.shape, o.data)
    ]
    expect(not problems, rule, "the 200 answer is malformed: " + "; ".join(problems), reply)
    if case.allows != COERCE or not echo or case.json is None:
        return
    sent = case.json["inputs"][0]
    out = next((o for o in response.outputs if o.name == sent["name"]), None)
    if out is None:
        return
    got = flatten(out.data)
    expect(
        out.datatype == sent["datatype"]
        and _coerced_values_match(sent["datatype"], got, case.coerced),
        rule,
        f"sent {sent['datatype']} {sent['data']!r}; the model saw {out.datatype} {got!r}, "
        "which is no coercion of them" + ("" if case.coerced else " (these values coerce to none)"),
        reply,
    )


@pytest.mark.features("v2-rest")
@pytest.mark.parametrize("case", _params(c for c in REST_CASES if not c.stress))
def test_bad_rest_request_fails_with_an_error_status_and_object(
    target: Target, v2: V2RestClient, probe_model: ModelInfo, case: RestCase
) -> None:
    """ "A failed inference request must be indicated by an HTTP error status (typically 400).
    The HTTP body must contain the $inference_error_response object" (required_api.md; the
    same for model metadata): any 4xx or 5xx with {"error": "<message>"}. Where "The server can
    decide to coerce each element to the required type or return an error" (Tensor Data), a
    200 with well-formed tensors of coerced values passes too; so does a well-formed 200 for
    what the protocol does not make an error (no inputs, a size, non-UTF-8 bytes)."""
    reply = _send_rest(v2, case, probe_model.name)
    rule = (
        f"a bad request ({case.id}: {case.why}) fails with an HTTP error status and the error "
        "object"
    )
    if reply.status == 200:
        _check_rest_answer(reply, case, _is_echo(probe_model, target), rule)
        return
    expect(reply.status >= 400, rule, f"status {reply.status} is not an HTTP error status", reply)
    _expect_error_object(reply, rule)


@pytest.mark.features("v2-rest", "hardening")
@pytest.mark.parametrize("case", _params(REST_CASES))
def test_bad_rest_request_is_a_4xx_json_error(
    v2: V2RestClient, probe_model: ModelInfo, case: RestCase
) -> None:
    """Hardening: every bad request is refused, the coercible and the size-limited ones too,
    with a 4xx (the protocol says "typically 400") and the body {"error": "<message>"}, never
    a 5xx, and the server is still ready afterwards. The protocol itself accepts any error
    status and allows coercion (see test_bad_rest_request_fails_with_an_error_status_and_object)."""
    reply = _send_rest(v2, case, probe_model.name)
    rule = f"a bad request ({case.id}) gets a 4xx with a JSON error body"
    expect(reply.status < 500, rule, f"status {reply.status}: a server error, not a 4xx", reply)
    expect(400 <= reply.status < 500, rule, f"status {reply.status}", reply)
    _expect_error_object(reply, rule)
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
    #: the code hardening wants
    codes: tuple[grpc.StatusCode, ...] = GRPC_REFUSED
    rpc: str = "ModelInfer"
    allows: str = REFUSE
    coerced: tuple[tuple[Any, ...], ...] = ()
    why: str = ""

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


_RAW_SIZE = (
    '"the size of this content must match what is expected by the tensor\'s shape and data type"'
)
_TYPED_SIZE = '"The size must match what is expected by the tensor\'s shape"'

GRPC_CASES = [
    GrpcCase("unknown-model", lambda m: _req(UNKNOWN), GRPC_NOT_FOUND, why="no such model"),
    GrpcCase(
        "unknown-model-metadata",
        lambda m: pb.ModelMetadataRequest(name=UNKNOWN),
        GRPC_NOT_FOUND,
        rpc="ModelMetadata",
        why="no such model",
    ),
    GrpcCase(
        "unknown-version",
        lambda m: _req(m, version=UNKNOWN_VERSION),
        GRPC_NOT_FOUND,
        why="no such version",
    ),
    GrpcCase(
        "unknown-version-metadata",
        lambda m: pb.ModelMetadataRequest(name=m, version=UNKNOWN_VERSION),
        GRPC_NOT_FOUND,
        rpc="ModelMetadata",
        why="no such version",
    ),
    GrpcCase(
        "empty-model-name",
        lambda m: _req(""),
        (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT),
        why="no model is named ''",
    ),
    GrpcCase(
        "no-inputs",
        lambda m: pb.ModelInferRequest(model_name=m),
        allows=OPEN,
        why="the protocol does not make a request without inputs an error",
    ),
    GrpcCase(
        "unknown-datatype",
        lambda m: _typed(m, "FLOAT32", [2], "fp32_contents", [1.0, 2.0]),
        why="the datatype is one of the Tensor Data Types",
    ),
    GrpcCase(
        "empty-datatype",
        lambda m: _typed(m, "", [2], "fp32_contents", [1.0, 2.0]),
        why="the datatype is one of the Tensor Data Types",
    ),
    GrpcCase(
        "typed-short-of-shape",
        lambda m: _typed(m, "FP32", [3], "fp32_contents", [1.0, 2.0]),
        why=_TYPED_SIZE,
    ),
    GrpcCase(
        "typed-beyond-shape",
        lambda m: _typed(m, "INT64", [1], "int64_contents", [1, 2]),
        why=_TYPED_SIZE,
    ),
    GrpcCase(
        "contents-in-wrong-field",
        lambda m: _typed(m, "FP32", [2], "int_contents", [1, 2]),
        allows=COERCE,
        coerced=((1.0, 2.0),),
        why="FP32 values belong in fp32_contents; reading them from int_contents is a coercion",
    ),
    GrpcCase(
        "uint8-overflow",
        lambda m: _typed(m, "UINT8", [2], "uint_contents", [255, 300]),
        allows=COERCE,
        coerced=((255, 44), (255, 255)),
        why="300 is no UINT8 value; the server may coerce it or refuse the request",
    ),
    GrpcCase(
        "negative-dimension",
        lambda m: _typed(m, "FP32", [-2], "fp32_contents", [1.0, 2.0]),
        why=_TYPED_SIZE,
    ),
    GrpcCase(
        "raw-short-of-shape",
        lambda m: _raw(m, "FP32", [4], encode_raw("FP32", [1.0])),
        why=_RAW_SIZE,
    ),
    GrpcCase(
        "raw-partial-element",
        lambda m: _raw(m, "INT32", [1], b"\x01\x00\x00"),
        why=_RAW_SIZE,
    ),
    GrpcCase(
        "raw-bytes-bad-length-prefix",
        lambda m: _raw(m, "BYTES", [1], (100).to_bytes(4, "little") + b"abc"),
        why=_RAW_SIZE,
    ),
    GrpcCase(
        "raw-count-mismatch",
        _raw_count_mismatch,
        why='raw_input_contents "must be initialized with data for each tensor"',
    ),
    GrpcCase(
        "raw-and-typed",
        _raw_and_typed,
        why='with raw_input_contents "InferInputTensor::contents must not be specified"',
    ),
    GrpcCase(
        "message-over-limit",
        lambda m: _raw(m, "BYTES", [1], encode_raw("BYTES", [b"9" * (8 * 1024 * 1024)])),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT),
        allows=OPEN,
        why="the protocol sets no message size limit",
    ),
]


def _check_grpc_answer(reply: GrpcReply, case: GrpcCase, echo: bool, rule: str) -> None:
    """An OK where the protocol allows one: well-formed outputs; for a coercion, the echo
    model returns values that are a coercion of those sent."""
    expect(
        case.allows != REFUSE,
        rule,
        f"status OK for a request the protocol makes an error ({case.why})",
        reply,
    )
    if case.rpc != "ModelInfer":
        return
    message = reply.message
    problems = []
    values_of: dict[str, tuple[str, list[Any]]] = {}
    for index, out in enumerate(message.outputs):
        try:
            values = output_values(message, index)
        except (IndexError, ValueError) as exc:
            problems.append(f"{out.name}: contents unreadable ({exc})")
            continue
        problems += tensor_problems(out.name, out.datatype, list(out.shape), values)
        values_of[out.name] = (out.datatype, values)
    expect(not problems, rule, "the OK answer is malformed: " + "; ".join(problems), reply)
    if case.allows == COERCE and echo and "x" in values_of:
        datatype, got = values_of["x"]
        expect(
            _coerced_values_match(datatype, got, case.coerced),
            rule,
            f"the model saw {datatype} {got!r}, which is no coercion of the values sent",
            reply,
        )


@pytest.mark.features("v2-grpc")
@pytest.mark.parametrize("case", _params(GRPC_CASES))
def test_bad_grpc_request_fails_with_a_non_ok_status(
    target: Target, v2_grpc: V2GrpcClient, probe_model: ModelInfo, case: GrpcCase
) -> None:
    """ "Errors are indicated by the google.rpc.Status returned for the request. The OK code
    indicates success and other codes indicate failure" (grpc_predict_v2.proto): a bad request
    ends with any status but OK. Where the protocol leaves a choice (values to coerce, no
    inputs, a message size), an OK with well-formed outputs passes too."""
    reply = v2_grpc.call(case.rpc, case.build(probe_model.name))
    rule = f"a bad gRPC request ({case.id}: {case.why}) ends with a status other than OK"
    if reply.ok:
        _check_grpc_answer(reply, case, _is_echo(probe_model, target), rule)


@pytest.mark.features("v2-grpc", "hardening")
@pytest.mark.parametrize("case", _params(GRPC_CASES))
def test_bad_grpc_request_gets_the_right_status(
    v2_grpc: V2GrpcClient, probe_model: ModelInfo, case: GrpcCase
) -> None:
    """Hardening: a bad gRPC request ends with the status code naming the fault (NOT_FOUND,
    INVALID_ARGUMENT, RESOURCE_EXHAUSTED), never INTERNAL or UNKNOWN, and the server is still
    ready afterwards. The protocol itself asks only for a status other than OK."""
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
