"""``numeric-echo``: a custom ``kserve.Model`` that echoes every V2 tensor it is sent.

It stands in for a user's own model written the way KServe's custom-model docs show (subclass
``kserve.Model``, take an ``InferRequest`` in ``predict``, return an ``InferResponse``), so that
the conformance suite exercises the SDK's own V2 REST and gRPC layers for every datatype (BOOL,
UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES), typed, raw and binary.

Contract (the same as the MLServer reference's ``numeric-echo``): for every input, an output of
the same name, datatype, shape and values (cast to the datatype); for every numeric input also
``<name>_sum``, FP64 [1], the correctly rounded sum of its values (``math.fsum``; BOOL counts
the true elements). A request ``outputs`` list limits the outputs to those, in that order; a
name the request would not produce, or a tensor whose values do not fit its datatype and shape,
is ``InvalidInput`` (HTTP 400).

Standalone: imports kserve and numpy only.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput
from kserve.utils.utils import generate_uuid

MODEL_NAME = "numeric-echo"
SUM_SUFFIX = "_sum"

NUMPY_DTYPES: dict[str, Any] = {
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
    "BYTES": np.object_,
}
DATATYPES = tuple(NUMPY_DTYPES)


class NumericEcho(Model):
    """Returns each V2 input unchanged, plus an FP64 sum of each numeric input."""

    def __init__(self, name: str = MODEL_NAME):
        super().__init__(name)
        self.ready = False

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict[str, Any]]:
        # Any input name is taken; the metadata names one per datatype so that a client can
        # build a request from it alone.
        return [{"name": dt.lower(), "datatype": dt, "shape": [-1]} for dt in DATATYPES]

    def get_output_types(self) -> list[dict[str, Any]]:
        sums = [
            {"name": dt.lower() + SUM_SUFFIX, "datatype": "FP64", "shape": [1]}
            for dt in DATATYPES
            if dt != "BYTES"
        ]
        return self.get_input_types() + sums

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise InvalidInput(f"{self.name} takes V2 inference requests only")
        if not payload.inputs:
            raise InvalidInput("the request has no inputs")
        produced: dict[str, InferOutput] = {}
        for infer_input in payload.inputs:
            if infer_input.name in produced:
                raise InvalidInput(f"input {infer_input.name!r} is given more than once")
            array = _as_array(infer_input)
            # Flat lists, not arrays: to_grpc tests `infer_output.data` for truth when it returns
            # raw contents, which raises for an array of more than one element (kserve 0.14.1).
            produced[infer_input.name] = InferOutput(
                name=infer_input.name,
                shape=list(array.shape),
                datatype=infer_input.datatype,
                data=array.ravel().tolist(),
            )
            if infer_input.datatype != "BYTES":
                name = infer_input.name + SUM_SUFFIX
                produced[name] = InferOutput(
                    name=name, shape=[1], datatype="FP64", data=[_sum(array)]
                )

        outputs = list(produced.values())
        if payload.request_outputs:
            outputs = []
            for requested in payload.request_outputs:
                if requested.name not in produced:
                    raise InvalidInput(
                        f"output {requested.name!r} is not produced by this request; "
                        f"it can produce {sorted(produced)}"
                    )
                outputs.append(produced[requested.name])

        return InferResponse(
            # the SDK's REST response model requires an id; the docs' models generate one
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def _shape(infer_input: Any) -> list[int]:
    shape = list(infer_input.shape)
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise InvalidInput(f"input {infer_input.name!r}: shape {shape} is not a tensor shape")
    return shape


def _flatten(data: Any) -> list[Any]:
    """Row-major flat list of V2 tensor data, which may be flat or nested."""
    flat: list[Any] = []
    for item in data:
        if isinstance(item, (list, tuple)):
            flat.extend(_flatten(item))
        else:
            flat.append(item)
    return flat


def _as_array(infer_input: Any) -> np.ndarray:
    """The input as a numpy array of its datatype; InvalidInput where it does not fit."""
    datatype = infer_input.datatype
    name = infer_input.name
    if datatype not in NUMPY_DTYPES:
        raise InvalidInput(f"input {name!r}: unknown datatype {datatype!r}")
    shape = _shape(infer_input)
    count = math.prod(shape)
    data = infer_input.data
    if isinstance(data, (list, tuple)) and (data or count == 0):
        # JSON data or typed gRPC contents: numpy would coerce ("1" -> 1, 256 -> 0 in UINT8),
        # so every value is checked against the datatype first.
        flat = _flatten(data)
        if len(flat) != count:
            raise InvalidInput(
                f"input {name!r}: shape {shape} needs {count} elements, got {len(flat)}"
            )
        _check_values(name, datatype, flat)
    try:
        # as_numpy decodes raw contents (gRPC raw_input_contents) as well as data lists
        array = infer_input.as_numpy()
    except (ValueError, TypeError, struct.error) as exc:
        raise InvalidInput(
            f"input {name!r}: not a {datatype} tensor of shape {shape}: {exc}"
        ) from None
    if array.size != count or list(array.shape) != shape:
        raise InvalidInput(f"input {name!r}: {array.size} elements do not fill shape {shape}")
    return array


def _check_values(name: str, datatype: str, flat: list[Any]) -> None:
    if datatype == "BYTES":
        for value in flat:
            if not isinstance(value, (str, bytes)):
                raise InvalidInput(f"input {name!r}: BYTES element {value!r} is not a string")
        return
    if datatype == "BOOL":
        for value in flat:
            if not isinstance(value, (bool, np.bool_)):
                raise InvalidInput(f"input {name!r}: BOOL element {value!r} is not a boolean")
        return
    dtype = np.dtype(NUMPY_DTYPES[datatype])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        for value in flat:
            # bool is an int in Python; an integer tensor takes numbers only
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InvalidInput(
                    f"input {name!r}: {datatype} element {value!r} is not an integer"
                )
            if not info.min <= int(value) <= info.max:
                raise InvalidInput(f"input {name!r}: {value} is out of range for {datatype}")
        return
    for value in flat:
        # None stands for NaN: the SDK writes NaN as JSON null
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float, np.number))
        ):
            raise InvalidInput(f"input {name!r}: {datatype} element {value!r} is not a number")


def _sum(array: np.ndarray) -> float:
    values = [float(v) for v in array.ravel().tolist()]
    try:
        return math.fsum(values)
    except (ValueError, OverflowError):
        # fsum refuses inf + -inf and overflowing partial sums; IEEE addition gives these
        return float(np.sum(np.asarray(values, dtype=np.float64)))
