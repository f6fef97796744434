"""Payloads of the Open Inference Protocol (V2), as pydantic models.

Models are lenient about extra fields (servers may add their own) and strict about the fields
the specification requires.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: tensor datatypes defined by the protocol, with their element size in bytes (BYTES: variable).
#: BF16 is one of them: grpc_predict_v2.proto says "the FP16 and BF16 data types must be
#: represented as raw content", and Tensor Data that "fp16 and bf16 are problematic to
#: communicate explicitly" as JSON numbers.
DATATYPES: dict[str, int | None] = {
    "BOOL": 1,
    "UINT8": 1,
    "UINT16": 2,
    "UINT32": 4,
    "UINT64": 8,
    "INT8": 1,
    "INT16": 2,
    "INT32": 4,
    "INT64": 8,
    "FP16": 2,
    "FP32": 4,
    "FP64": 8,
    "BF16": 2,
    "BYTES": None,
}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class ServerMetadata(_Open):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(_Open):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(_Open):
    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[TensorMetadata] = Field(default_factory=list)
    outputs: list[TensorMetadata] = Field(default_factory=list)


class RequestInput(_Open):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any


class RequestOutput(_Open):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(_Open):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Open):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    #: absent when the tensor travels as binary data
    data: Any = None


class InferenceResponse(_Open):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class ErrorResponse(BaseModel):
    """The protocol's error body: exactly ``{"error": "<message>"}``."""

    model_config = ConfigDict(extra="forbid")
    error: str


def tensor(name: str, datatype: str, shape: list[int], data: Any, **parameters: Any) -> dict:
    """A request input as JSON (the common way tests and payloads build one)."""
    out: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape, "data": data}
    if parameters:
        out["parameters"] = parameters
    return out


def flatten(data: Any) -> list[Any]:
    """Row-major flattening of nested JSON tensor data."""
    if isinstance(data, list):
        out: list[Any] = []
        for item in data:
            out.extend(flatten(item))
        return out
    return [data]


def element_count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


#: the range of each integer datatype
INT_RANGES: dict[str, tuple[int, int]] = {
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
}
#: the largest finite magnitude of each float datatype
FLOAT_MAX = {
    "FP16": 65504.0,
    "BF16": 3.3895313892515355e38,
    "FP32": 3.4028234663852886e38,
    "FP64": 1.7976931348623157e308,
}


def value_fits(datatype: str, value: Any) -> bool:
    """Whether one element (as JSON or raw decoding gives it) is a value of ``datatype``."""
    if datatype == "BYTES":
        return isinstance(value, str | bytes)
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if datatype in INT_RANGES:
        lo, hi = INT_RANGES[datatype]
        return isinstance(value, int) and lo <= value <= hi
    if datatype in FLOAT_MAX:
        # inf and NaN are values of every float type (raw contents carry them)
        return isinstance(value, int | float) and (
            value != value or abs(value) == float("inf") or abs(value) <= FLOAT_MAX[datatype]
        )
    return False


def tensor_problems(name: str, datatype: str, shape: Any, data: Any) -> list[str]:
    """What is wrong with one response tensor: an unknown datatype, a bad shape, an element
    count that is not the product of the shape, or values outside the datatype.

    ``data`` may be nested or flat; None when it travelled elsewhere (binary parts).
    """
    problems = []
    if datatype not in DATATYPES:
        problems.append(f"{name}: datatype {datatype!r} is not a V2 datatype")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        problems.append(f"{name}: shape {shape!r} is not a list of non-negative integers")
        return problems
    if data is None:
        return problems
    flat = flatten(data)
    if len(flat) != element_count(shape):
        problems.append(
            f"{name}: shape {shape} holds {element_count(shape)} elements but data has {len(flat)}"
        )
    if datatype in DATATYPES:
        bad = [v for v in flat if not value_fits(datatype, v)]
        if bad:
            problems.append(f"{name}: {len(bad)} value(s) are not {datatype}, e.g. {bad[0]!r}")
    return problems
