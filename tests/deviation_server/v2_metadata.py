"""Switches that break the rules the metadata-driven V2 checks (conformance/test_v2_metadata.py)
judge: outputs the metadata does not declare, transports that disagree, an id or an outputs
filter lost on one path, and unclean answers to requests that stray from the metadata.

The REST and gRPC route modules call the hooks below at a few points; each hook does nothing
while its switch is off.
"""

from __future__ import annotations

from typing import Any

from tests.deviation_server import models
from tests.deviation_server.models import Tensor
from tests.deviation_server.switches import BOARD, switch

AREA = "v2-metadata"
REFUSED = "test_metadata_derived_bad_request_is_refused_cleanly"
NOT_5XX = "test_metadata_derived_bad_request_is_not_a_5xx"
#: the extra output of OUTPUT_UNDECLARED
EXTRA_OUTPUT = "extra-output"

OUTPUT_UNDECLARED = switch(
    "metadata-output-undeclared",
    AREA,
    "answers carry an output the model's metadata does not declare",
    ["test_metadata_request_gets_the_declared_outputs"],
)
DECLARES_OTHER_DATATYPE = switch(
    "metadata-declares-other-datatype",
    AREA,
    "metadata declares INT32 outputs as INT64 (REST and gRPC)",
    [
        "test_metadata_request_gets_the_declared_outputs",
        "test_metadata_grpc_request_gets_the_declared_outputs",
    ],
)
DECLARES_FIXED_SHAPE = switch(
    "metadata-declares-fixed-shape",
    AREA,
    "metadata declares each variable output dimension as 3 (REST and gRPC)",
    [
        "test_metadata_request_gets_the_declared_outputs",
        "test_metadata_grpc_request_gets_the_declared_outputs",
    ],
)
BINARY_DIFFERS = switch(
    "metadata-binary-differs-from-json",
    AREA,
    "FP64 outputs sent as binary data are off by 0.25",
    ["test_metadata_binary_and_json_give_the_same_values"],
)
GRPC_DIFFERS = switch(
    "metadata-grpc-differs-from-json",
    AREA,
    "INT32 outputs over gRPC are off by one",
    ["test_metadata_grpc_and_json_give_the_same_values"],
)
ID_DROPPED_BINARY = switch(
    "metadata-id-dropped-with-binary-data",
    AREA,
    "a REST request that carries binary tensor data does not get its id back",
    ["test_metadata_request_id_is_echoed"],
)
FILTER_IGNORED_BINARY = switch(
    "metadata-filter-ignored-with-binary-data",
    AREA,
    "a REST request that carries binary tensor data gets every output, whatever it asks for",
    ["test_metadata_outputs_filter_is_honoured"],
)
GRPC_ID_DROPPED_RAW = switch(
    "metadata-grpc-id-dropped-with-raw-contents",
    AREA,
    "a gRPC request with raw contents does not get its id back",
    ["test_metadata_grpc_request_id_is_echoed"],
)
GRPC_FILTER_IGNORED_RAW = switch(
    "metadata-grpc-filter-ignored-with-raw-contents",
    AREA,
    "a gRPC request with raw contents gets every output, whatever it asks for",
    ["test_metadata_grpc_outputs_filter_is_honoured"],
)
UNDECLARED_INPUT_500 = switch(
    "metadata-undeclared-input-500",
    AREA,
    "an input the metadata does not declare gets 500 text/plain",
    [f"{REFUSED}[unknown-input]"],
)
MISSING_INPUT_500 = switch(
    "metadata-missing-input-500",
    AREA,
    'a request lacking a declared input gets 500 {"error": ...} (legal, not hardened)',
    [f"{NOT_5XX}[missing-input]"],
)
OTHER_DATATYPE_422 = switch(
    "metadata-other-datatype-422-detail",
    AREA,
    'an input of another datatype than declared gets 422 {"detail": [...]}',
    [f"{REFUSED}[wrong-datatype]"],
)
OTHER_RANK_UNREADY = switch(
    "metadata-other-rank-makes-model-unready",
    AREA,
    "after an input of another rank than declared, the model reports not ready once",
    [f"{REFUSED}[wrong-rank]"],
)
SHORT_DATA_PADDED = switch(
    "metadata-short-data-padded",
    AREA,
    "data short of its shape is padded with zeros and answered 200",
    [f"{REFUSED}[data-short-of-shape]"],
)

#: models owed one not-ready answer (OTHER_RANK_UNREADY)
_unready: set[str] = set()


def reset() -> None:
    _unready.clear()


def declared(outs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The output metadata as a model declares it, with the metadata switches applied."""
    if BOARD.on(DECLARES_OTHER_DATATYPE):
        outs = [{**t, "datatype": "INT64"} if t["datatype"] == "INT32" else t for t in outs]
    if BOARD.on(DECLARES_FIXED_SHAPE):
        outs = [{**t, "shape": [3 if d == -1 else d for d in t["shape"]]} for t in outs]
    return outs


def stray_from_metadata(model: models.Model, tensors: list[Tensor]) -> tuple[int, Any] | None:
    """The unclean answer a switch gives to inputs that stray from the metadata, as
    (status, JSON body or text); None to answer as usual."""
    ins = {t["name"]: t for t in model.metadata_tensors()[0]}
    names = {t.name for t in tensors}
    if BOARD.on(UNDECLARED_INPUT_500) and names - ins.keys():
        return 500, "Internal Server Error"
    if BOARD.on(MISSING_INPUT_500) and ins.keys() - names:
        return 500, {"error": f"missing input(s) {sorted(ins.keys() - names)}"}
    for t in tensors:
        spec = ins.get(t.name)
        if spec is None:
            continue
        if BOARD.on(OTHER_DATATYPE_422) and t.datatype != spec["datatype"]:
            return 422, {"detail": [{"loc": ["body", "inputs"], "msg": "wrong datatype"}]}
        if BOARD.on(OTHER_RANK_UNREADY) and len(t.shape) != len(spec["shape"]):
            _unready.add(model.name)
    return None


def pad_short(tensors: list[Tensor]) -> list[Tensor]:
    """SHORT_DATA_PADDED: fill data short of its shape with zeros."""
    if not BOARD.on(SHORT_DATA_PADDED):
        return tensors
    for t in tensors:
        missing = models.element_count(t.shape) - len(t.data)
        if missing > 0 and all(d >= 0 for d in t.shape):
            zero: Any = b"" if t.datatype == "BYTES" else False if t.datatype == "BOOL" else 0
            t.data = [*t.data, *([zero] * missing)]
    return tensors


def owes_unready(model: str) -> bool:
    """Whether the model answers one readiness probe with not ready (OTHER_RANK_UNREADY)."""
    if model in _unready:
        _unready.discard(model)
        return True
    return False


def rest_outputs(outputs: list[Tensor], filtered: bool, binary_request: bool) -> list[Tensor]:
    """The REST answer's outputs with the output switches applied."""
    if BOARD.on(OUTPUT_UNDECLARED) and not filtered:
        outputs = [*outputs, Tensor(EXTRA_OUTPUT, "FP32", [1], [0.0])]
    return outputs


def filter_ignored(binary_request: bool) -> bool:
    return binary_request and BOARD.on(FILTER_IGNORED_BINARY)


def id_dropped(binary_request: bool) -> bool:
    return binary_request and BOARD.on(ID_DROPPED_BINARY)


def binary_value(datatype: str, values: list[Any]) -> list[Any]:
    """BINARY_DIFFERS: FP64 values as they go into binary parts."""
    if BOARD.on(BINARY_DIFFERS) and datatype == "FP64":
        return [v + 0.25 for v in values]
    return values


def grpc_outputs(outputs: list[Tensor]) -> list[Tensor]:
    """GRPC_DIFFERS: INT32 outputs off by one over gRPC."""
    if BOARD.on(GRPC_DIFFERS):
        for out in outputs:
            if out.datatype == "INT32":
                out.data = [v + 1 for v in out.data]
    return outputs


def grpc_id_dropped(raw_request: bool) -> bool:
    return raw_request and BOARD.on(GRPC_ID_DROPPED_RAW)


def grpc_filter_ignored(raw_request: bool) -> bool:
    return raw_request and BOARD.on(GRPC_FILTER_IGNORED_RAW)
