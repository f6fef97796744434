"""The numeric echo model: a custom V2 model that returns every input unchanged plus a sum.

Its contract (the MLServer reference's ``numeric-echo`` and the deviation server's both keep
it): for each input it returns an output of the same name, datatype, shape and values (cast to
the datatype); for each numeric input also ``<name>_sum``, FP64 [1], the correctly rounded sum
(``math.fsum``; BOOL counts the true elements). A request ``outputs`` list limits the outputs.

A target serves one when a model's task is ``custom-numeric`` (``--model NAME=custom-numeric``)
or a model is named ``numeric-echo``, as the reference servers name it.
"""

from __future__ import annotations

import math
from typing import Any

from servegate.targets import ModelInfo, Target

TASK = "custom-numeric"
MODEL_NAME = "numeric-echo"
SUM_SUFFIX = "_sum"

#: per datatype: values that probe its edges (extremes, signs, precision), exact in JSON
SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 128, 255],
    "UINT16": [0, 1, 40000, 65535],
    "UINT32": [0, 1, 3000000000, 4294967295],
    "UINT64": [0, 1, 2**53 + 1, 2**64 - 1],
    "INT8": [-128, -1, 0, 127],
    "INT16": [-32768, -1, 0, 32767],
    "INT32": [-2147483648, -1, 0, 2147483647],
    "INT64": [-(2**63), -(2**53) - 1, 0, 2**63 - 1],
    "FP16": [-65504.0, -0.5, 0.0009765625, 65504.0],
    "FP32": [-3.4028234663852886e38, -1.5, 1.1754943508222875e-38, 0.10000000149011612],
    "FP64": [-1.7976931348623157e308, 0.1, 5e-324, 1.0000000000000002],
    "BYTES": ["", "hello", "caf\u00e9 \u2615", "a" * 40],
}
DATATYPES = tuple(SAMPLES)
NUMERIC = tuple(dt for dt in DATATYPES if dt != "BYTES")


def numeric_model(target: Target) -> ModelInfo | None:
    """The target's numeric echo model, if it serves one."""
    for model in target.models.values():
        if model.task == TASK:
            return model
    return target.models.get(MODEL_NAME)


def input_name(datatype: str) -> str:
    return datatype.lower()


def expected_sum(datatype: str, values: list[Any]) -> float:
    """What ``<name>_sum`` must be for these (already datatype-exact) values."""
    return math.fsum(float(v) for v in values)


def same_values(datatype: str, sent: list[Any], got: list[Any]) -> bool:
    """Exact equality of flat values, BYTES compared as bytes, floats bit for bit (NaN = NaN)."""
    if len(sent) != len(got):
        return False
    for a, b in zip(sent, got, strict=True):
        if datatype == "BYTES":
            a = a.encode() if isinstance(a, str) else a
            b = b.encode() if isinstance(b, str) else b
            if a != b:
                return False
        elif datatype.startswith("FP"):
            if isinstance(b, bool) or not isinstance(b, int | float):
                return False
            if not (a == b or (a != a and b != b)):
                return False
            if a == 0 and math.copysign(1, a) != math.copysign(1, b):
                return False
        elif type(a) is not type(b) or a != b:
            return False
    return True
