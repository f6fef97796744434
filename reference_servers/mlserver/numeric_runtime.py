"""A small custom MLServer runtime that echoes every V2 tensor it is sent.

It stands in for a user's own ``mlserver.MLModel`` so that the conformance suite can check each
V2 datatype (BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES) end to end, over REST and
gRPC, with and without ``raw_input_contents``.

For every input it returns an output of the same name, datatype, shape and values (values cast
to the declared datatype, so an FP32 input comes back as float32 numbers). For every numeric
input it also returns ``<name>_sum``: FP64, shape [1], the correctly rounded sum of the values
as float64 (``math.fsum``), NaN when the values hold NaN or both infinities. BOOL sums count the
true elements.

The request ``outputs`` list is honoured the way MLServer's own runtimes do (its scikit-learn
runtime, for one): when present, only those outputs are returned, in the order requested, and a
name the model would not produce is an inference error (HTTP 400).

This file runs inside MLServer's own environment: it imports mlserver and numpy only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.errors import InferenceError
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestInput,
    ResponseOutput,
)

NUMPY_DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPES = (*NUMPY_DTYPES, "BYTES")
SUM_SUFFIX = "_sum"


class NumericEcho(MLModel):
    """Returns each input unchanged, plus an FP64 sum of each numeric input."""

    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        produced: dict[str, ResponseOutput] = {}
        for request_input in payload.inputs:
            if request_input.name in produced:
                raise InferenceError(f"input {request_input.name!r} is given more than once")
            values = _flat_values(request_input)
            produced[request_input.name] = _echo(request_input, values)
            if request_input.datatype != "BYTES":
                total = _sum(values)
                produced[request_input.name + SUM_SUFFIX] = ResponseOutput(
                    name=request_input.name + SUM_SUFFIX,
                    datatype="FP64",
                    shape=[1],
                    data=[total],
                )

        outputs = list(produced.values())
        if payload.outputs is not None:
            outputs = []
            for requested in payload.outputs:
                if requested.name not in produced:
                    raise InferenceError(
                        f"output {requested.name!r} is not produced by this request; "
                        f"it can produce {sorted(produced)}"
                    )
                outputs.append(produced[requested.name])

        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            model_version=self.version,
            outputs=outputs,
        )


def _flatten(data: Any) -> list[Any]:
    """Row-major flat list of a V2 ``data`` field, which may be flat or nested."""
    data = getattr(data, "root", data)
    if not isinstance(data, (list, tuple)):
        return [data]
    flat: list[Any] = []
    for item in data:
        if isinstance(item, (list, tuple)):
            flat.extend(_flatten(item))
        else:
            flat.append(item)
    return flat


def _element_count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        if dim < 0:
            raise InferenceError(f"shape {shape} has a negative dimension")
        count *= dim
    return count


def _flat_values(request_input: RequestInput) -> list[Any]:
    """The input's values, checked against its datatype and shape, as Python scalars."""
    datatype = request_input.datatype
    name = request_input.name
    if datatype not in DATATYPES:
        raise InferenceError(f"input {name!r}: unknown datatype {datatype!r}")
    flat = _flatten(request_input.data)
    expected = _element_count(list(request_input.shape))
    if len(flat) != expected:
        raise InferenceError(
            f"input {name!r}: shape {list(request_input.shape)} needs {expected} elements, "
            f"got {len(flat)}"
        )
    if datatype == "BYTES":
        for value in flat:
            if not isinstance(value, (str, bytes)):
                raise InferenceError(f"input {name!r}: BYTES element {value!r} is not a string")
        return flat
    if datatype == "BOOL":
        for value in flat:
            if not isinstance(value, (bool, np.bool_)):
                raise InferenceError(f"input {name!r}: BOOL element {value!r} is not a boolean")
        return [bool(value) for value in flat]

    dtype = np.dtype(NUMPY_DTYPES[datatype])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        for value in flat:
            # bool is an int in Python; a V2 integer tensor takes numbers only
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InferenceError(
                    f"input {name!r}: {datatype} element {value!r} is not an integer"
                )
            if not info.min <= int(value) <= info.max:
                raise InferenceError(f"input {name!r}: {value} is out of range for {datatype}")
        return [int(value) for value in flat]

    for value in flat:
        if value is None:
            # MLServer writes NaN as JSON null; accept it back the same way
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise InferenceError(f"input {name!r}: {datatype} element {value!r} is not a number")
    as_float = [math.nan if value is None else value for value in flat]
    # Cast to the declared precision, as a real model would see the tensor.
    with np.errstate(over="ignore"):
        typed = np.asarray(as_float, dtype=np.float64).astype(dtype)
    return typed.tolist()


def _echo(request_input: RequestInput, values: list[Any]) -> ResponseOutput:
    parameters = None
    if request_input.parameters is not None and request_input.parameters.content_type:
        # Keep the caller's content type so that its own codec decodes the echo as it encoded it.
        parameters = Parameters(content_type=request_input.parameters.content_type)
    return ResponseOutput(
        name=request_input.name,
        datatype=request_input.datatype,
        shape=list(request_input.shape),
        data=values,
        parameters=parameters,
    )


def _sum(values: list[Any]) -> float:
    try:
        return math.fsum(float(value) for value in values)
    except (ValueError, OverflowError):
        # fsum refuses inf + -inf and overflowing partial sums; IEEE addition gives these
        return float(np.sum(np.asarray(values, dtype=np.float64)))
