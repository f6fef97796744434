"""V2 gRPC service of the deviation server (inference.GRPCInferenceService), with its switches."""

from __future__ import annotations

from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from servegate.protocols import binary_tensor
from tests.deviation_server import models, v2_metadata
from tests.deviation_server.models import InvalidInput, NotFound, Tensor
from tests.deviation_server.switches import BOARD, switch
from tests.deviation_server.v2_rest import SERVER_NAME, SERVER_VERSION, UNLOADED

BAD = "test_bad_grpc_request_gets_the_right_status"
#: the core check of the same cases (BAD is its hardening twin)
CORE = "test_bad_grpc_request_fails_with_a_non_ok_status"

#: datatype -> typed contents field (FP16 has none: raw only)
FIELDS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
ALL_FIELDS = sorted(set(FIELDS.values()))

NOT_READY = switch(
    "grpc-not-ready",
    "v2-grpc",
    "ServerReady answers ready=false",
    ["test_grpc_server_live_and_ready"],
)
NOT_LIVE = switch(
    "grpc-not-live", "v2-grpc", "ServerLive answers live=false", ["test_grpc_server_live_and_ready"]
)
META_NO_VERSION = switch(
    "grpc-server-metadata-no-version",
    "v2-grpc",
    "ServerMetadata has an empty version",
    ["test_grpc_server_metadata_names_server_version"],
)
MODEL_NOT_READY = switch(
    "grpc-model-not-ready",
    "v2-grpc",
    "ModelReady answers ready=false",
    ["test_grpc_every_model_is_ready"],
)
MODEL_META_WRONG_NAME = switch(
    "grpc-model-metadata-wrong-name",
    "v2-grpc",
    "ModelMetadata names another model",
    ["test_grpc_model_metadata_describes_every_model"],
)
MODEL_META_BAD_DATATYPE = switch(
    "grpc-model-metadata-bad-datatype",
    "v2-grpc",
    "ModelMetadata tensors use 'float32'",
    ["test_grpc_model_metadata_describes_every_model"],
)
TYPED_WRONG_FIELD = switch(
    "grpc-typed-wrong-field",
    "v2-grpc",
    "INT8/INT16 outputs are put in int64_contents",
    ["test_grpc_typed_contents_round_trip[INT8*]", "test_grpc_typed_contents_round_trip[INT16*]"],
)
RAW_BIG_ENDIAN = switch(
    "grpc-raw-big-endian",
    "v2-grpc",
    "raw INT32/FP32 inputs are read big-endian",
    [
        "test_grpc_raw_contents_round_trip[INT32*]",
        "test_grpc_raw_contents_round_trip[FP32*]",
        "test_grpc_hypothesis_round_trip_is_exact",
    ],
)
RAW_BYTES_NO_PREFIX = switch(
    "grpc-raw-bytes-no-prefix",
    "v2-grpc",
    "raw BYTES outputs lack length prefixes",
    ["test_grpc_raw_contents_round_trip[BYTES*]"],
)
ID_NOT_ECHOED = switch(
    "grpc-id-not-echoed",
    "v2-grpc",
    "ModelInfer does not return the id",
    ["test_grpc_infer_echoes_request_id"],
)
WRONG_MODEL_NAME = switch(
    "grpc-wrong-model-name",
    "v2-grpc",
    "ModelInfer responses name another model",
    ["test_grpc_infer_names_the_model"],
)
OUTPUTS_IGNORED = switch(
    "grpc-outputs-ignored",
    "v2-grpc",
    "requested outputs are ignored",
    ["test_grpc_outputs_limit_what_comes_back"],
)
PARAMS_REJECTED = switch(
    "grpc-parameters-rejected",
    "v2-grpc",
    "request parameters give INVALID_ARGUMENT",
    ["test_grpc_accepts_request_and_tensor_parameters"],
)
DIFFERS_FROM_REST = switch(
    "grpc-differs-from-rest",
    "v2-grpc",
    "the numeric model's sums differ over gRPC",
    ["test_rest_and_grpc_give_the_same_outputs"],
)
UNKNOWN_MODEL_INTERNAL = switch(
    "grpc-unknown-model-internal",
    "v2-grpc",
    "an unknown model gives INTERNAL (a failure status the protocol allows)",
    ["test_grpc_unknown_model_is_not_found", f"{BAD}[unknown-model*]"],
    passes=["test_grpc_unknown_model_fails", f"{CORE}[unknown-model*]"],
)
UNKNOWN_MODEL_INVALID = switch(
    "grpc-unknown-model-invalid",
    "v2-grpc",
    "an unknown model gives INVALID_ARGUMENT (a failure status the protocol allows)",
    ["test_grpc_unknown_model_is_not_found"],
    passes=["test_grpc_unknown_model_fails"],
)
UNKNOWN_MODEL_OK = switch(
    "grpc-unknown-model-ok",
    "v2-grpc",
    "ModelMetadata of an unknown model answers OK with empty metadata",
    ["test_grpc_unknown_model_fails", f"{CORE}[unknown-model-metadata*]"],
)
INVALID_AS_INTERNAL = switch(
    "grpc-invalid-as-internal",
    "v2-grpc",
    "every refused request gives INTERNAL (a failure status the protocol allows)",
    [BAD],
    passes=[CORE],
)
RAW_SHORT_INTERNAL = switch(
    "grpc-raw-short-internal",
    "v2-grpc",
    "raw contents short of the shape give INTERNAL",
    [f"{BAD}[raw-short-of-shape*]"],
    passes=[f"{CORE}[raw-short-of-shape*]"],
)
MIXED_ACCEPTED = switch(
    "grpc-mixed-contents-accepted",
    "v2-grpc",
    "raw and typed contents together are accepted",
    [f"{BAD}[raw-and-typed*]", f"{CORE}[raw-and-typed*]"],
)
WRONG_FIELD_ACCEPTED = switch(
    "grpc-wrong-field-accepted",
    "v2-grpc",
    "values in another datatype's contents field are read as the datatype (a coercion)",
    [f"{BAD}[contents-in-wrong-field*]"],
    passes=[f"{CORE}[contents-in-wrong-field*]"],
)
SHAPE_UNCHECKED = switch(
    "grpc-shape-unchecked",
    "v2-grpc",
    "typed contents that do not fill the shape are accepted, the shape taken from them",
    [f"{CORE}[typed-short-of-shape*]", f"{CORE}[typed-beyond-shape*]"],
)
NO_INPUTS_ACCEPTED = switch(
    "grpc-no-inputs-accepted",
    "v2-grpc",
    "a request with no inputs answers OK with no outputs (the protocol does not make it an error)",
    [f"{BAD}[no-inputs*]"],
    passes=[f"{CORE}[no-inputs*]"],
)


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code = code


def _model(name: str, version: str) -> models.Model:
    try:
        return models.find_model(name, version)
    except NotFound as exc:
        if BOARD.on(UNKNOWN_MODEL_OK):
            raise _Empty() from None
        if BOARD.on(UNKNOWN_MODEL_INTERNAL):
            raise _Abort(grpc.StatusCode.INTERNAL, "internal error") from None
        if BOARD.on(UNKNOWN_MODEL_INVALID):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        raise _Abort(grpc.StatusCode.NOT_FOUND, str(exc)) from None


class _Empty(Exception):
    """Answer the RPC with an empty message (UNKNOWN_MODEL_OK)."""


_EMPTY_RESPONSES = {
    "ModelMetadata": pb.ModelMetadataResponse,
    "ModelReady": pb.ModelReadyResponse,
    "ModelInfer": pb.ModelInferResponse,
}


def _handled(method):
    def wrapped(self: Servicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except _Empty:
            return _EMPTY_RESPONSES[method.__name__]()
        except _Abort as exc:
            context.abort(exc.code, str(exc))
        except InvalidInput as exc:
            code = (
                grpc.StatusCode.INTERNAL
                if BOARD.on(INVALID_AS_INTERNAL)
                else grpc.StatusCode.INVALID_ARGUMENT
            )
            context.abort(code, str(exc))

    return wrapped


def _param_value(p: pb.InferParameter) -> Any:
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def _input_tensors(request: pb.ModelInferRequest) -> list[Tensor]:
    raw = list(request.raw_input_contents)
    typed_used = any(len(getattr(t.contents, f)) for t in request.inputs for f in ALL_FIELDS)
    if raw and typed_used and not BOARD.on(MIXED_ACCEPTED):
        raise InvalidInput("raw_input_contents and typed contents cannot be mixed")
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    tensors = []
    for i, t in enumerate(request.inputs):
        shape = list(t.shape)
        if t.datatype not in models.DATATYPES:
            raise InvalidInput(f"input {t.name!r}: unknown datatype {t.datatype!r}")
        if raw:
            data_raw = raw[i]
            if BOARD.on(RAW_BIG_ENDIAN) and t.datatype in ("INT32", "FP32"):
                data_raw = _swap(data_raw, 4)
            count = models.element_count(shape) if all(d >= 0 for d in shape) else -1
            size = binary_tensor.NUMPY_DTYPES.get(t.datatype)
            if (
                BOARD.on(RAW_SHORT_INTERNAL)
                and size
                and count >= 0
                and len(data_raw) < count * _itemsize(t.datatype)
            ):
                raise _Abort(grpc.StatusCode.INTERNAL, "unpack requires a buffer of more bytes")
            try:
                data = binary_tensor.decode_tensor(t.datatype, data_raw)
            except binary_tensor.BinaryFormatError as exc:
                raise InvalidInput(f"input {t.name!r}: {exc}") from None
        else:
            field = FIELDS.get(t.datatype)
            if field is None:
                raise InvalidInput(f"input {t.name!r}: {t.datatype} travels only as raw contents")
            others = [f for f in ALL_FIELDS if f != field and len(getattr(t.contents, f))]
            if others and not BOARD.on(WRONG_FIELD_ACCEPTED):
                raise InvalidInput(
                    f"input {t.name!r}: {t.datatype} values belong in {field}, not {others}"
                )
            data = list(getattr(t.contents, field))
            if BOARD.on(WRONG_FIELD_ACCEPTED) and others:
                data = list(getattr(t.contents, others[0]))
            if BOARD.on(SHAPE_UNCHECKED) and models.element_count(shape) != len(data):
                shape = [len(data)]
            if t.datatype in models.INT_RANGES:
                lo, hi = models.INT_RANGES[t.datatype]
                if any(not lo <= v <= hi for v in data):
                    raise InvalidInput(f"input {t.name!r}: values outside {t.datatype}")
        params = {k: _param_value(v) for k, v in t.parameters.items()}
        tensors.append(Tensor(t.name, t.datatype, shape, data, params))
    return tensors


def _itemsize(datatype: str) -> int:
    import numpy as np

    return int(np.dtype(binary_tensor.NUMPY_DTYPES[datatype]).itemsize)


def _swap(raw: bytes, width: int) -> bytes:
    return b"".join(raw[i : i + width][::-1] for i in range(0, len(raw), width))


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    """The protocol's RPCs; the others stay UNIMPLEMENTED (the base class's answer)."""

    @_handled
    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=not BOARD.on(NOT_LIVE))

    @_handled
    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=not BOARD.on(NOT_READY))

    @_handled
    def ModelReady(self, request, context):
        model = _model(request.name, request.version)
        ready = model.name not in UNLOADED and not BOARD.on(MODEL_NOT_READY)
        return pb.ModelReadyResponse(ready=ready)

    @_handled
    def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(
            name=SERVER_NAME,
            version="" if BOARD.on(META_NO_VERSION) else SERVER_VERSION,
            extensions=[binary_tensor.EXTENSION, "model_repository"],
        )

    @_handled
    def ModelMetadata(self, request, context):
        model = _model(request.name, request.version)
        ins, outs = model.metadata_tensors()
        outs = v2_metadata.declared(outs)
        lower = BOARD.on(MODEL_META_BAD_DATATYPE)

        def meta(t: dict) -> pb.ModelMetadataResponse.TensorMetadata:
            return pb.ModelMetadataResponse.TensorMetadata(
                name=t["name"],
                datatype=t["datatype"].lower() if lower else t["datatype"],
                shape=t["shape"],
            )

        name = model.name + "-other" if BOARD.on(MODEL_META_WRONG_NAME) else model.name
        return pb.ModelMetadataResponse(
            name=name,
            versions=list(model.versions),
            platform=model.platform,
            inputs=[meta(t) for t in ins],
            outputs=[meta(t) for t in outs],
        )

    @_handled
    def ModelInfer(self, request, context):
        model = _model(request.model_name, request.model_version)
        if model.name in UNLOADED:
            raise InvalidInput(f"model {model.name!r} is not loaded")
        if request.parameters and BOARD.on(PARAMS_REJECTED):
            raise InvalidInput("request parameters are not supported")
        if not request.inputs and BOARD.on(NO_INPUTS_ACCEPTED):
            return pb.ModelInferResponse(model_name=model.name, id=request.id)
        tensors = _input_tensors(request)
        requested = [o.name for o in request.outputs] or None
        if BOARD.on(OUTPUTS_IGNORED):
            requested = None
        # the metadata-driven switches (v2_metadata.py)
        raw_request = bool(request.raw_input_contents)
        if v2_metadata.grpc_filter_ignored(raw_request):
            requested = None
        outputs = v2_metadata.grpc_outputs(models.infer(model, tensors, requested))
        if BOARD.on(DIFFERS_FROM_REST):
            for out in outputs:
                if out.name.endswith(models.SUM_SUFFIX):
                    out.data = [v + 0.5 for v in out.data]
        response = pb.ModelInferResponse(
            model_name="some-other-model" if BOARD.on(WRONG_MODEL_NAME) else model.name,
            model_version=model.versions[0] if model.versions else "",
            id=""
            if BOARD.on(ID_NOT_ECHOED) or v2_metadata.grpc_id_dropped(raw_request)
            else request.id,
        )
        raw = bool(request.raw_input_contents) or any(o.datatype == "FP16" for o in outputs)
        for out in outputs:
            tensor = response.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
            if raw:
                if out.datatype == "BYTES" and BOARD.on(RAW_BYTES_NO_PREFIX):
                    response.raw_output_contents.append(b"".join(out.data))
                elif out.datatype in models.DATATYPES:
                    response.raw_output_contents.append(
                        binary_tensor.encode_tensor(out.datatype, out.data)
                    )
                else:
                    response.raw_output_contents.append(b"")
                continue
            field = FIELDS.get(out.datatype, "int_contents")
            if BOARD.on(TYPED_WRONG_FIELD) and out.datatype in ("INT8", "INT16"):
                field = "int64_contents"
            values = out.data
            if out.datatype == "BOOL":
                values = [bool(v) for v in values]
            elif out.datatype in models.INT_RANGES or out.datatype not in models.DATATYPES:
                values = [int(v) for v in values]
            getattr(tensor.contents, field).extend(values)
        return response


def add_to_server(server: grpc.Server) -> None:
    """Register the V2 service on ``server``."""
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
