"""Payloads of the Open Inference Protocol (V2), as pydantic models.

Models are lenient about extra fields (servers may add their own) and strict about the fields
the specification requires.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: tensor datatypes defined by the protocol, with their element size in bytes (BYTES: variable)
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
