"""V2 tensors over REST: every datatype, flat and nested, exactly round-tripped by the target's
numeric echo model; every response tensor well formed; Hypothesis-generated tensors.

FP16 as JSON numbers is not required: "Note that fp16 and bf16 are problematic to communicate
explicitly since there is not a standard fp16/bf16 representation across backends"
(inference_rest.md, Tensor Data). Those cases need the declared feature v2-json-fp16; FP16
travels as binary data (test_v2_binary.py) or gRPC raw contents (test_v2_grpc.py).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servegate.checks import expect, expect_model, expect_status
from servegate.protocols.v2_models import (
    FLOAT_MAX,
    INT_RANGES,
    InferenceResponse,
    flatten,
    tensor,
    tensor_problems,
)
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import ModelInfo
from servegate.tasks import numeric_echo

#: the datatypes every server must carry as JSON numbers, strings or booleans
JSON_DATATYPES = tuple(dt for dt in numeric_echo.DATATYPES if dt != "FP16")
JSON_NUMERIC = tuple(dt for dt in numeric_echo.NUMERIC if dt != "FP16")
#: FP16 in JSON: an extended feature, declared by a server that promises it
FP16_JSON = pytest.param("FP16", marks=pytest.mark.features("v2-json-fp16"), id="FP16")


def _nest(flat: list[Any], shape: list[int]) -> Any:
    """Row-major nesting of flat data into ``shape``."""
    if len(shape) <= 1:
        return list(flat)
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _echo(v2: V2RestClient, model: str, inputs: list[dict], rule: str):
    reply = v2.infer(model, {"inputs": inputs})
    expect_status(reply, 200, rule)
    response = expect_model(InferenceResponse, reply.json(), rule, reply)
    return reply, {o.name: o for o in response.outputs}


def _check_echo(
    reply, outputs, name: str, datatype: str, shape: list[int], sent: list[Any], rule: str
) -> None:
    expect(name in outputs, rule, f"no output {name!r} (got {sorted(outputs)})", reply)
    out = outputs[name]
    expect(
        out.datatype == datatype and list(out.shape) == shape,
        rule,
        f"output {name}: {out.datatype} {out.shape}, sent {datatype} {shape}",
        reply,
    )
    got = flatten(out.data)
    expect(
        numeric_echo.same_values(datatype, sent, got),
        rule,
        f"sent {sent!r}, got back {got!r}",
        reply,
    )


@pytest.mark.features("v2-rest")
@pytest.mark.parametrize("datatype", [*JSON_DATATYPES, FP16_JSON])
def test_datatype_round_trips_flat(v2: V2RestClient, numeric: ModelInfo, datatype: str) -> None:
    """ "Tensor data must be presented in row-major order ... or as a flattened
    one-dimensional representation" (required_api.md, Tensor Data): a tensor of each V2
    datatype, its data flat, reaches the model and comes back exactly (same datatype, shape
    and values, extremes of the type included), as the numeric echo model promises."""
    sent = numeric_echo.SAMPLES[datatype]
    name = numeric_echo.input_name(datatype)
    rule = f"{datatype} data sent flat round-trips exactly"
    reply, outputs = _echo(v2, numeric.name, [tensor(name, datatype, [2, 2], sent)], rule)
    _check_echo(reply, outputs, name, datatype, [2, 2], sent, rule)


@pytest.mark.features("v2-rest")
@pytest.mark.parametrize("datatype", [*JSON_DATATYPES, FP16_JSON])
def test_datatype_round_trips_nested(v2: V2RestClient, numeric: ModelInfo, datatype: str) -> None:
    """ "Tensor elements may be presented in their nature multi-dimensional representation"
    (required_api.md, Tensor Data): nested [2, 2] data of each datatype is read in row-major
    order."""
    sent = numeric_echo.SAMPLES[datatype]
    name = numeric_echo.input_name(datatype)
    rule = f"{datatype} data sent nested is read row-major"
    reply, outputs = _echo(
        v2, numeric.name, [tensor(name, datatype, [2, 2], _nest(sent, [2, 2]))], rule
    )
    _check_echo(reply, outputs, name, datatype, [2, 2], sent, rule)


@pytest.mark.features("v2-rest")
@pytest.mark.parametrize("datatype", [*JSON_NUMERIC, FP16_JSON])
def test_numeric_sum_output_is_the_sum(v2: V2RestClient, numeric: ModelInfo, datatype: str) -> None:
    """ "data": "The contents of the tensor" (required_api.md, Request Input): the model saw
    the values sent, so its `<name>_sum` output is their exact sum."""
    sent = numeric_echo.SAMPLES[datatype]
    name = numeric_echo.input_name(datatype)
    rule = f"the model receives the {datatype} values sent (their sum)"
    reply, outputs = _echo(v2, numeric.name, [tensor(name, datatype, [4], sent)], rule)
    out = outputs.get(name + numeric_echo.SUM_SUFFIX)
    expect(out is not None, rule, f"no output {name}{numeric_echo.SUM_SUFFIX}", reply)
    got = flatten(out.data)
    want = numeric_echo.expected_sum(datatype, sent)
    expect(
        len(got) == 1
        and isinstance(got[0], int | float)
        and (got[0] == want or (math.isinf(want) and got[0] == want)),
        rule,
        f"sum {got!r}, expected {want!r}",
        reply,
    )


@pytest.mark.features("v2-rest")
def test_response_tensors_are_well_formed(v2: V2RestClient, numeric: ModelInfo) -> None:
    """$response_output: "datatype" as "defined in Tensor Data Types", "shape" of integers
    "representable as an unsigned 64-bit integer value", "data" the tensor's contents in
    "row-major order" (required_api.md, Response Output): the shape's product is the element
    count and every value is a value of its datatype."""
    inputs = [
        tensor(numeric_echo.input_name(dt), dt, [4], numeric_echo.SAMPLES[dt])
        for dt in JSON_DATATYPES
    ]
    rule = "response tensors are well formed (datatype, shape, values)"
    reply, outputs = _echo(v2, numeric.name, inputs, rule)
    problems = [
        p for o in outputs.values() for p in tensor_problems(o.name, o.datatype, o.shape, o.data)
    ]
    expect(not problems, rule, "; ".join(problems), reply)


def _values(datatype: str) -> st.SearchStrategy:
    if datatype == "BOOL":
        return st.booleans()
    if datatype in INT_RANGES:
        lo, hi = INT_RANGES[datatype]
        return st.integers(lo, hi)
    if datatype == "BYTES":
        return st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
    width = {"FP16": 16, "FP32": 32, "FP64": 64}[datatype]
    return st.floats(
        width=width,
        allow_nan=False,
        allow_infinity=False,
        max_value=FLOAT_MAX[datatype],
        min_value=-FLOAT_MAX[datatype],
    )


@st.composite
def tensors(
    draw: st.DrawFn, datatypes: tuple[str, ...] = numeric_echo.DATATYPES
) -> tuple[str, list[int], list[Any]]:
    """A datatype of ``datatypes``, a shape of up to 3 dimensions (zero-size included) and
    matching flat data."""
    datatype = draw(st.sampled_from(datatypes))
    shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    count = math.prod(shape)
    data = draw(st.lists(_values(datatype), min_size=count, max_size=count))
    return datatype, shape, data


#: few, deterministic examples: a CI gate must not flake, and each example is a request
HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.features("v2-rest")
def test_rest_hypothesis_round_trip_is_exact(v2: V2RestClient, numeric: ModelInfo) -> None:
    """Tensor data is "row-major", flat or nested (required_api.md, Tensor Data): generated
    tensors (any datatype JSON carries, any shape, any values of the type) round-trip exactly
    through the numeric echo model over REST."""

    @HYPOTHESIS
    @given(tensors(JSON_DATATYPES), st.booleans())
    def round_trip(generated: tuple[str, list[int], list[Any]], nested: bool) -> None:
        datatype, shape, data = generated
        payload = _nest(data, shape) if nested else data
        rule = f"a generated {datatype} {shape} tensor round-trips exactly"
        reply, outputs = _echo(v2, numeric.name, [tensor("x", datatype, shape, payload)], rule)
        _check_echo(reply, outputs, "x", datatype, shape, data, rule)

    round_trip()
