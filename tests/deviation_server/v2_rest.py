"""V2 REST routes of the deviation server, with the switches that break them."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from servegate.protocols import binary_tensor
from tests.deviation_server import models, v2_metadata
from tests.deviation_server.models import InvalidInput, NotFound, Tensor
from tests.deviation_server.switches import BOARD, switch

SERVER_NAME = "servegate-deviation-server"
SERVER_VERSION = "1.0"
#: bodies above this are refused with 413, as a proxy or the server's own limit would
MAX_BODY = 16 * 1024 * 1024

BAD = "test_bad_rest_request_is_a_4xx_json_error"
#: the core check of the same cases (BAD is its hardening twin)
CORE = "test_bad_rest_request_fails_with_an_error_status_and_object"

LIVE_500 = switch(
    "live-500", "v2-rest", "GET /v2/health/live answers 500", ["test_server_live_returns_200"]
)
READY_503 = switch(
    "ready-503",
    "v2-rest",
    "GET /v2/health/ready answers 503 while ready",
    ["test_server_ready_returns_200"],
)
MODEL_READY_404 = switch(
    "model-ready-404",
    "v2-rest",
    "GET /v2/models/{m}/ready answers 404",
    ["test_every_model_is_ready"],
)
UNKNOWN_MODEL_READY = switch(
    "unknown-model-ready-200",
    "v2-rest",
    "an unknown model is reported ready",
    ["test_unknown_model_is_not_ready"],
)
UNLOADED_READY = switch(
    "ready-while-unloaded",
    "v2-repository",
    "an unloaded model is still reported ready",
    ["test_unloaded_model_is_not_ready"],
)
INDEX_STATE_MISSING = switch(
    "index-state-missing",
    "v2-repository",
    "the repository index lists models without state",
    ["test_repository_index_lists_every_model"],
)
SERVER_META_NO_EXTENSIONS = switch(
    "server-metadata-no-extensions",
    "v2-rest",
    "GET /v2 lacks 'extensions'",
    ["test_server_metadata_names_server_version_extensions"],
)
MODEL_META_NO_PLATFORM = switch(
    "model-metadata-no-platform",
    "v2-rest",
    "model metadata lacks 'platform'",
    ["test_model_metadata_describes_every_model"],
)
MODEL_META_WRONG_NAME = switch(
    "model-metadata-wrong-name",
    "v2-rest",
    "model metadata names another model",
    ["test_model_metadata_describes_every_model"],
)
MODEL_META_BAD_DATATYPE = switch(
    "model-metadata-bad-datatype",
    "v2-rest",
    "model metadata tensors use 'float32'",
    ["test_model_metadata_tensors_are_well_formed"],
)
VERSIONED_META_404 = switch(
    "versioned-metadata-404",
    "v2-model-versions",
    "GET /v2/models/{m}/versions/{v} answers 404 for a listed version",
    ["test_versioned_model_metadata_matches"],
)
VERSIONED_READY_404 = switch(
    "versioned-ready-404",
    "v2-model-versions",
    "versioned ready answers 404",
    ["test_versioned_model_is_ready"],
)
VERSIONED_INFER_404 = switch(
    "versioned-infer-404",
    "v2-model-versions",
    "versioned infer answers 404",
    ["test_versioned_model_infers"],
)
ID_NOT_ECHOED = switch(
    "id-not-echoed", "v2-rest", "the request id is not returned", ["test_infer_echoes_request_id"]
)
ID_ALTERED = switch(
    "id-altered", "v2-rest", "the request id comes back changed", ["test_infer_echoes_request_id"]
)
NO_MODEL_NAME = switch(
    "infer-no-model-name",
    "v2-rest",
    "responses lack model_name",
    ["test_infer_returns_an_inference_response"],
)
WRONG_MODEL_NAME = switch(
    "infer-wrong-model-name",
    "v2-rest",
    "responses name another model",
    ["test_infer_response_names_the_model"],
)
OUTPUTS_IGNORED = switch(
    "outputs-ignored",
    "v2-rest",
    "the request's outputs list is ignored",
    ["test_infer_outputs_limit_what_comes_back"],
)
REQUEST_PARAMS_REJECTED = switch(
    "request-parameters-rejected",
    "v2-rest",
    "request parameters give 400",
    ["test_infer_accepts_request_and_tensor_parameters"],
)
TENSOR_PARAMS_REJECTED = switch(
    "tensor-parameters-rejected",
    "v2-rest",
    "input tensor parameters give 400",
    ["test_infer_accepts_request_and_tensor_parameters"],
)
OUTPUT_PARAMS_REJECTED = switch(
    "output-parameters-rejected",
    "v2-rest",
    "requested-output parameters give 400",
    ["test_infer_accepts_requested_output_parameters"],
)
INFER_TEXT_PLAIN = switch(
    "infer-content-type-text",
    "v2-rest",
    "infer answers JSON labelled text/plain",
    ["test_infer_response_is_json"],
)
OUTPUTS_AS_OBJECT = switch(
    "outputs-as-object",
    "v2-rest",
    "outputs are a JSON object keyed by name, not a list",
    ["test_infer_returns_an_inference_response", "test_tritonclient_http_round_trip"],
)

UNKNOWN_MODEL_500 = switch(
    "unknown-model-500",
    "v2-rest",
    "an unknown model gives 500",
    [
        "test_unknown_model_metadata_is_an_error_object",
        "test_unknown_model_infer_is_an_error_object",
        f"{BAD}[unknown-model*]",
        f"{CORE}[unknown-model*]",
    ],
)
UNKNOWN_MODEL_200 = switch(
    "unknown-model-200",
    "v2-rest",
    "an unknown model's metadata answers 200 {}",
    ["test_unknown_model_metadata_is_an_error_object"],
)
ERROR_PLAIN_TEXT = switch(
    "error-body-plain-text",
    "v2-rest",
    "error bodies are plain text",
    ["test_unknown_model_infer_is_an_error_object", BAD, CORE],
)
ERROR_DETAIL = switch(
    "error-body-detail",
    "v2-rest",
    'schema errors answer 422 {"detail": [...]}',
    [
        f"{BAD}[malformed-json*]",
        f"{BAD}[missing-inputs*]",
        f"{CORE}[malformed-json*]",
        f"{CORE}[missing-inputs*]",
    ],
)
ERROR_NOT_STRING = switch(
    "error-not-a-string", "v2-rest", 'error bodies are {"error": {"message": ...}}', [BAD, CORE]
)
SHAPE_MISMATCH_500 = switch(
    "shape-mismatch-500",
    "v2-bad-input",
    "data that does not fill the shape gives 500",
    [
        f"{BAD}[data-short-of-shape*]",
        f"{BAD}[data-beyond-shape*]",
        f"{CORE}[data-short-of-shape*]",
        f"{CORE}[data-beyond-shape*]",
    ],
)
WRONG_TYPE_ACCEPTED = switch(
    "wrong-type-accepted",
    "v2-bad-input",
    "strings in numeric tensors are accepted (200) and read as 0",
    [
        f"{BAD}[string-in-fp32*]",
        f"{BAD}[string-in-int64*]",
        f"{CORE}[string-in-fp32*]",
        f"{CORE}[string-in-int64*]",
    ],
)
RANGE_UNCHECKED = switch(
    "range-unchecked",
    "v2-bad-input",
    "integers outside the datatype's range are wrapped (a coercion the protocol allows)",
    [f"{BAD}[uint8-overflow*]", f"{BAD}[int8-underflow*]"],
    passes=[f"{CORE}[uint8-overflow*]", f"{CORE}[int8-underflow*]"],
)
VALUE_COERCION = switch(
    "value-coercion",
    "v2-bad-input",
    "element values of another type are coerced and answered 200: numeric strings to numbers, "
    "'true'/'false' to booleans, floats truncated to integers, numbers to BYTES strings, "
    "integers wrapped into range",
    [
        f"{BAD}[string-in-int64*]",
        f"{BAD}[float-in-int32*]",
        f"{BAD}[string-in-bool*]",
        f"{BAD}[number-in-bytes*]",
    ],
    passes=[
        f"{CORE}[string-in-int64*]",
        f"{CORE}[float-in-int32*]",
        f"{CORE}[string-in-bool*]",
        f"{CORE}[number-in-bytes*]",
        f"{CORE}[uint8-overflow*]",
        f"{CORE}[int8-underflow*]",
        f"{CORE}[negative-uint32*]",
        f"{CORE}[string-in-fp32*]",
        f"{CORE}[null-in-int32*]",
    ],
)
BAD_INPUT_500_JSON = switch(
    "bad-input-500-json",
    "v2-bad-input",
    'refused requests answer 500 with the error object {"error": ...} (an error status the '
    "protocol allows)",
    [BAD],
    passes=[
        CORE,
        "test_unknown_model_metadata_is_an_error_object",
        "test_unknown_model_infer_is_an_error_object",
    ],
)
NEGATIVE_DIM_ACCEPTED = switch(
    "negative-dim-accepted",
    "v2-bad-input",
    "negative dimensions are accepted",
    [f"{BAD}[negative-dimension*]", f"{CORE}[negative-dimension*]"],
)
UNKNOWN_DATATYPE_500 = switch(
    "unknown-datatype-500",
    "v2-bad-input",
    "an unknown datatype gives 500",
    [f"{BAD}[unknown-datatype*]", f"{CORE}[unknown-datatype*]"],
)
DEEP_NESTING_500 = switch(
    "deep-nesting-500",
    "v2-bad-input",
    "very deep JSON nesting gives 500",
    [f"{BAD}[deep-nesting*]", f"{CORE}[deep-nesting*]"],
)
NON_UTF8_500 = switch(
    "non-utf8-500",
    "v2-bad-input",
    "a body that is not UTF-8 gives 500",
    [f"{BAD}[non-utf8*]", f"{CORE}[non-utf8*]"],
)
NO_BODY_LIMIT = switch(
    "no-body-limit-500",
    "v2-bad-input",
    "a body over the limit gives 500",
    [f"{BAD}[body-over-limit*]", f"{CORE}[body-over-limit*]"],
)
EMPTY_INPUTS_ACCEPTED = switch(
    "empty-inputs-accepted",
    "v2-bad-input",
    "a request with no inputs answers 200 (the protocol does not make it an error)",
    [f"{BAD}[empty-inputs*]"],
    passes=[f"{CORE}[empty-inputs*]"],
)
CONTENT_TYPE_IGNORED_500 = switch(
    "wrong-content-type-500",
    "v2-bad-input",
    "a non-JSON content type gives 500",
    [f"{BAD}[wrong-content-type*]", f"{CORE}[wrong-content-type*]"],
)
BAD_INPUT_UNREADY = switch(
    "bad-input-breaks-readiness",
    "v2-bad-input",
    "after a refused request the server reports not ready once",
    [BAD, "test_bad_grpc_request_gets_the_right_status"],
)

BINARY_OUTPUT_IGNORED = switch(
    "binary-output-ignored",
    "v2-binary-tensor",
    "binary_data_output is ignored",
    ["test_binary_data_output_returns_every_output_binary"],
)
BINARY_PER_OUTPUT_IGNORED = switch(
    "binary-per-output-ignored",
    "v2-binary-tensor",
    "an output's binary_data is ignored",
    ["test_binary_data_on_one_output_returns_only_it_binary"],
)
BINARY_INPUT_BIG_ENDIAN = switch(
    "binary-input-big-endian",
    "v2-binary-tensor",
    "binary inputs are read big-endian",
    ["test_binary_inputs_are_read"],
)
BINARY_HEADER_LENGTH_WRONG = switch(
    "binary-header-length-wrong",
    "v2-binary-tensor",
    "the response's Inference-Header-Content-Length is off by one",
    ["test_binary_response_declares_its_header_length"],
)
BINARY_BYTES_NO_PREFIX = switch(
    "binary-bytes-no-prefix",
    "v2-binary-tensor",
    "binary BYTES outputs lack length prefixes",
    ["test_binary_bytes_tensor_round_trips"],
)

#: models unloaded through the repository extension
UNLOADED: set[str] = set()
#: one not-ready answer owed after a refused request (BAD_INPUT_UNREADY)
_unready_once: list[bool] = [False]


def _error(status: int, message: str) -> Response:
    _unready_once[0] = BOARD.on(BAD_INPUT_UNREADY)
    if BOARD.on(BAD_INPUT_500_JSON) and 400 <= status < 500:
        status = 500
    if BOARD.on(ERROR_PLAIN_TEXT):
        return PlainTextResponse(message, status_code=status)
    if BOARD.on(ERROR_NOT_STRING):
        return JSONResponse({"error": {"message": message}}, status_code=status)
    return JSONResponse({"error": message}, status_code=status)


async def live(request: Request) -> Response:
    return JSONResponse({"live": True}, status_code=500 if BOARD.on(LIVE_500) else 200)


async def ready(request: Request) -> Response:
    if BOARD.on(READY_503) or _unready_once[0]:
        _unready_once[0] = False
        return JSONResponse({"ready": False}, status_code=503)
    return JSONResponse({"ready": True})


async def server_metadata(request: Request) -> Response:
    body: dict[str, Any] = {
        "name": SERVER_NAME,
        "version": SERVER_VERSION,
        "extensions": [binary_tensor.EXTENSION, "model_repository"],
    }
    if BOARD.on(SERVER_META_NO_EXTENSIONS):
        del body["extensions"]
    return JSONResponse(body)


def _model(request: Request) -> models.Model:
    name = request.path_params["model"]
    version = request.path_params.get("version", "")
    if BOARD.on(UNKNOWN_MODEL_500) and name not in models.MODELS:
        raise _Fail(500, "internal error")
    model = models.find_model(name, version)
    if version and _versioned_switch(request):
        raise NotFound("versions are not served")
    return model


def _versioned_switch(request: Request) -> bool:
    path = request.url.path
    if path.endswith("/ready"):
        return BOARD.on(VERSIONED_READY_404)
    if path.endswith("/infer"):
        return BOARD.on(VERSIONED_INFER_404)
    return BOARD.on(VERSIONED_META_404)


class _Fail(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _guard(handler):
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except NotFound as exc:
            return _error(404, str(exc))
        except InvalidInput as exc:
            return _error(400, str(exc))
        except _Fail as exc:
            if exc.status == 500:
                return PlainTextResponse("Internal Server Error", status_code=500)
            return _error(exc.status, str(exc))

    return wrapped


async def model_metadata(request: Request) -> Response:
    name = request.path_params["model"]
    if BOARD.on(UNKNOWN_MODEL_200) and name not in models.MODELS:
        return JSONResponse({})
    model = _model(request)
    ins, outs = model.metadata_tensors()
    outs = v2_metadata.declared(outs)
    if BOARD.on(MODEL_META_BAD_DATATYPE):
        ins = [{**t, "datatype": t["datatype"].lower()} for t in ins]
    body: dict[str, Any] = {
        "name": model.name,
        "versions": list(model.versions),
        "platform": model.platform,
        "inputs": ins,
        "outputs": outs,
    }
    if BOARD.on(MODEL_META_WRONG_NAME):
        body["name"] = model.name + "-other"
    if BOARD.on(MODEL_META_NO_PLATFORM):
        del body["platform"]
    return JSONResponse(body)


async def model_ready(request: Request) -> Response:
    name = request.path_params["model"]
    if BOARD.on(UNKNOWN_MODEL_READY) and name not in models.MODELS:
        return JSONResponse({"name": name, "ready": True})
    model = _model(request)
    if BOARD.on(MODEL_READY_404):
        return _error(404, "not ready")
    if model.name in UNLOADED and not BOARD.on(UNLOADED_READY):
        return _error(400, f"model {model.name!r} is not loaded")
    if v2_metadata.owes_unready(model.name):
        return JSONResponse({"name": model.name, "ready": False}, status_code=503)
    return JSONResponse({"name": model.name, "ready": True})


async def repository_index(request: Request) -> Response:
    entries = []
    for name in models.MODELS:
        entry: dict[str, Any] = {
            "name": name,
            "state": "UNAVAILABLE" if name in UNLOADED else "READY",
        }
        if BOARD.on(INDEX_STATE_MISSING):
            del entry["state"]
        entries.append(entry)
    return JSONResponse(entries)


async def repository_load(request: Request) -> Response:
    model = models.find_model(request.path_params["model"])
    UNLOADED.discard(model.name)
    return JSONResponse({})


async def repository_unload(request: Request) -> Response:
    model = models.find_model(request.path_params["model"])
    UNLOADED.add(model.name)
    return JSONResponse({})


def _parse_body(body: bytes, header_length: str | None) -> Any:
    if header_length is not None:
        try:
            return binary_tensor.split_body(body, header_length, "inputs")
        except binary_tensor.BinaryFormatError as exc:
            raise InvalidInput(f"binary body: {exc}") from None
    try:
        return json.loads(body)
    except RecursionError:
        if BOARD.on(DEEP_NESTING_500):
            raise _Fail(500, "recursion") from None
        raise InvalidInput("the body nests too deeply") from None
    except UnicodeDecodeError:
        if BOARD.on(NON_UTF8_500):
            raise _Fail(500, "decode") from None
        raise InvalidInput("the body is not UTF-8") from None
    except ValueError as exc:
        if BOARD.on(ERROR_DETAIL):
            raise _Detail() from None
        raise InvalidInput(f"the body is not JSON: {exc}") from None


class _Detail(Exception):
    """FastAPI's answer to schema errors, for the switch that imitates it."""


def _tensor(raw: Any, big_endian_binary: bool) -> Tensor:
    if not isinstance(raw, dict):
        raise InvalidInput(f"an input is not an object: {raw!r}"[:200])
    for key in ("name", "datatype", "shape"):
        if key not in raw:
            raise InvalidInput(f"an input lacks {key!r}")
    name, datatype, shape = raw["name"], raw["datatype"], raw["shape"]
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise InvalidInput("an input's name and datatype must be strings")
    if datatype not in models.DATATYPES and BOARD.on(UNKNOWN_DATATYPE_500):
        raise _Fail(500, "unknown datatype")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise InvalidInput(f"input {name!r}: shape must be a list of integers")
    if BOARD.on(NEGATIVE_DIM_ACCEPTED):
        shape = [abs(d) for d in shape]
    params = raw.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"input {name!r}: parameters must be an object")
    if params and BOARD.on(TENSOR_PARAMS_REJECTED):
        raise InvalidInput(f"input {name!r}: parameters are not supported")
    if "data" not in raw:
        raise InvalidInput(f"input {name!r} lacks 'data'")
    data = raw["data"]
    flat = _flatten(data)
    if big_endian_binary and "binary_data_size" in params and datatype in ("INT32", "FP32"):
        # the switch reads the binary part with the wrong byte order
        import numpy as np

        arr = np.asarray(flat, dtype=datatype.lower().replace("fp", "float"))
        flat = arr.byteswap().tolist()
    if datatype == "BYTES":
        flat = [v.encode() if isinstance(v, str) else v for v in flat]
    elif BOARD.on(WRONG_TYPE_ACCEPTED) and datatype in ("FP32", "INT64"):
        flat = [0 if isinstance(v, str) else v for v in flat]
    if BOARD.on(VALUE_COERCION):
        flat = [_coerce(datatype, v) for v in flat]
    if BOARD.on(RANGE_UNCHECKED) and datatype in ("UINT8", "INT8"):
        flat = [
            v % 256 if datatype == "UINT8" else ((v + 128) % 256) - 128 if isinstance(v, int) else v
            for v in flat
        ]
    count = models.element_count(shape) if all(d >= 0 for d in shape) else -1
    if count != len(flat) and count >= 0 and BOARD.on(SHAPE_MISMATCH_500):
        raise _Fail(500, "cannot reshape")
    return Tensor(name, datatype, shape, flat, params)


def _coerce(datatype: str, value: Any) -> Any:
    """What a lenient server makes of an element of another type (VALUE_COERCION); a value
    with no reading of the datatype is left for validation to refuse."""
    if datatype == "BYTES" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value).encode()
    if datatype == "BOOL" and value in ("true", "false"):
        return value == "true"
    if datatype in models.INT_RANGES and not isinstance(value, bool):
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                return value
        if isinstance(value, float) and math.isfinite(value):
            value = int(value)
        if isinstance(value, int):
            lo, hi = models.INT_RANGES[datatype]
            value = (value - lo) % (hi - lo + 1) + lo
    return value


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        out: list[Any] = []
        for item in data:
            out.extend(_flatten(item))
        return out
    return [data]


def _is_nested(data: Any) -> bool:
    return isinstance(data, list) and any(isinstance(item, list) for item in data)


def _json_value(datatype: str, value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value.decode("latin-1")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


async def infer(request: Request) -> Response:
    model = _model(request)
    if model.name in UNLOADED:
        return _error(400, f"model {model.name!r} is not loaded")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    header_length = request.headers.get(binary_tensor.HEADER)
    body = await request.body()
    if len(body) > MAX_BODY:
        if BOARD.on(NO_BODY_LIMIT):
            raise _Fail(500, "out of memory")
        return _error(413, f"the body is {len(body)} bytes; the limit is {MAX_BODY}")
    if header_length is None and ctype not in ("", "application/json"):
        if BOARD.on(CONTENT_TYPE_IGNORED_500):
            raise _Fail(500, "cannot parse")
        return _error(415, f"content type {ctype!r}: send application/json")
    try:
        payload = _parse_body(body, header_length)
    except _Detail:
        return JSONResponse({"detail": [{"msg": "invalid JSON"}]}, status_code=422)
    if not isinstance(payload, dict):
        raise InvalidInput("the body is not a JSON object")
    if "inputs" not in payload and BOARD.on(ERROR_DETAIL):
        return JSONResponse(
            {"detail": [{"loc": ["body", "inputs"], "msg": "Field required"}]}, status_code=422
        )
    raw_inputs = payload.get("inputs")
    if not isinstance(raw_inputs, list):
        raise InvalidInput("'inputs' must be a list")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    params = payload.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise InvalidInput("'parameters' must be an object")
    if params and BOARD.on(REQUEST_PARAMS_REJECTED):
        raise InvalidInput("request parameters are not supported")
    if not raw_inputs and BOARD.on(EMPTY_INPUTS_ACCEPTED):
        return JSONResponse({"model_name": model.name, "outputs": []})
    if any(isinstance(t, dict) and _is_nested(t.get("data")) for t in raw_inputs) and BOARD.on(
        models.NESTED_REJECTED
    ):
        raise InvalidInput("nested data is not supported")
    tensors = [_tensor(t, BOARD.on(BINARY_INPUT_BIG_ENDIAN)) for t in raw_inputs]
    # the metadata-driven switches (v2_metadata.py)
    binary_request = header_length is not None
    strayed = v2_metadata.stray_from_metadata(model, tensors)
    if strayed is not None:
        status, content = strayed
        if isinstance(content, str):
            return PlainTextResponse(content, status_code=status)
        return JSONResponse(content, status_code=status)
    tensors = v2_metadata.pad_short(tensors)

    requested = payload.get("outputs")
    binary_all = bool((params or {}).get("binary_data_output")) and not BOARD.on(
        BINARY_OUTPUT_IGNORED
    )
    binary_names: set[str] = set()
    names: list[str] | None = None
    if requested is not None:
        if not isinstance(requested, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
        ):
            raise InvalidInput("'outputs' must be a list of {name} objects")
        for out in requested:
            oparams = out.get("parameters") or {}
            if oparams and BOARD.on(OUTPUT_PARAMS_REJECTED):
                raise InvalidInput("output parameters are not supported")
            if oparams.get("binary_data") and not BOARD.on(BINARY_PER_OUTPUT_IGNORED):
                binary_names.add(out["name"])
        names = None if BOARD.on(OUTPUTS_IGNORED) else [o["name"] for o in requested]
    if v2_metadata.filter_ignored(binary_request):
        names = None
    outputs = models.infer(model, tensors, names)
    outputs = v2_metadata.rest_outputs(outputs, names is not None, binary_request)

    response: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.versions[0] if model.versions else None,
    }
    if response["model_version"] is None:
        del response["model_version"]
    if BOARD.on(WRONG_MODEL_NAME):
        response["model_name"] = "some-other-model"
    if BOARD.on(NO_MODEL_NAME):
        del response["model_name"]
    if request_id is not None and not BOARD.on(ID_NOT_ECHOED):
        response["id"] = request_id + "-x" if BOARD.on(ID_ALTERED) else request_id
    if v2_metadata.id_dropped(binary_request):
        response.pop("id", None)
    parts: list[bytes] = []
    out_json = []
    for out in outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": out.shape}
        oparams = dict(out.parameters)
        if binary_all or out.name in binary_names:
            if out.datatype == "BYTES" and BOARD.on(BINARY_BYTES_NO_PREFIX):
                raw = b"".join(out.data)
            else:
                raw = binary_tensor.encode_tensor(
                    out.datatype, v2_metadata.binary_value(out.datatype, out.data)
                )
            oparams["binary_data_size"] = len(raw)
            parts.append(raw)
        else:
            entry["data"] = [_json_value(out.datatype, v) for v in out.data]
        if oparams:
            entry["parameters"] = oparams
        out_json.append(entry)
    response["outputs"] = (
        {o["name"]: o for o in out_json} if BOARD.on(OUTPUTS_AS_OBJECT) else out_json
    )
    head = json.dumps(response).encode()
    if parts:
        length = len(head) + (1 if BOARD.on(BINARY_HEADER_LENGTH_WRONG) else 0)
        return Response(
            head + b"".join(parts),
            media_type="application/octet-stream",
            headers={binary_tensor.HEADER: str(length)},
        )
    media = "text/plain" if BOARD.on(INFER_TEXT_PLAIN) else "application/json"
    return Response(head, media_type=media)


def routes() -> list[Route]:
    """The V2 REST routes (the /versions/{v} forms included)."""
    m = "/v2/models/{model}"
    mv = "/v2/models/{model}/versions/{version}"
    return [
        Route("/v2/health/live", _guard(live)),
        Route("/v2/health/ready", _guard(ready)),
        Route("/v2", _guard(server_metadata)),
        Route(m, _guard(model_metadata)),
        Route(mv, _guard(model_metadata)),
        Route(m + "/ready", _guard(model_ready)),
        Route(mv + "/ready", _guard(model_ready)),
        Route(m + "/infer", _guard(infer), methods=["POST"]),
        Route(mv + "/infer", _guard(infer), methods=["POST"]),
        Route("/v2/repository/index", _guard(repository_index), methods=["POST"]),
        Route("/v2/repository/models/{model}/load", _guard(repository_load), methods=["POST"]),
        Route("/v2/repository/models/{model}/unload", _guard(repository_unload), methods=["POST"]),
    ]


def reset() -> None:
    """Forget unloaded models and owed not-ready answers (called when switches are set)."""
    UNLOADED.clear()
    _unready_once[0] = False
    v2_metadata.reset()
