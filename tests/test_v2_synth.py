"""Requests synthesised from model metadata: shapes, values, faults and the three encodings."""

from __future__ import annotations

import json

import pytest

from servegate.protocols import binary_tensor, v2_synth
from servegate.protocols.v2_synth import Tensor, Unusable

META = {
    "name": "m",
    "platform": "x",
    "inputs": [
        {"name": "ids", "datatype": "INT64", "shape": [-1, 3]},
        {"name": "half", "datatype": "FP16", "shape": [-1, -1]},
        {"name": "text", "datatype": "BYTES", "shape": [2]},
        {"name": "brain", "datatype": "BF16", "shape": [2]},
    ],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
}


def test_every_declared_input_gets_a_small_concrete_tensor() -> None:
    spec = v2_synth.model_spec("m", META)
    tensors = {t.name: t for t in v2_synth.valid_inputs(spec)}
    assert tensors["ids"].shape == (1, 3) and tensors["half"].shape == (1, 2)
    assert all(isinstance(v, int) for v in tensors["ids"].values)
    assert all(isinstance(v, bytes) and v.isascii() for v in tensors["text"].values)
    assert len(tensors["text"].values) == 2


@pytest.mark.parametrize(
    "meta, why",
    [
        ({"inputs": [], "outputs": []}, "no inputs"),
        ({"inputs": [{"name": "a", "datatype": "FLOAT", "shape": [1]}]}, "not a V2 datatype"),
        (
            {"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1]}] * 2},
            "more than once",
        ),
    ],
)
def test_metadata_without_a_request_is_unusable(meta: dict, why: str) -> None:
    with pytest.raises(Unusable, match=why):
        v2_synth.valid_inputs(v2_synth.model_spec("m", meta))


def test_raw_only_inputs_travel_as_binary_parts_and_round_trip() -> None:
    tensors = v2_synth.valid_inputs(v2_synth.model_spec("m", META))
    body, headers = v2_synth.rest_body(tensors, request_id="r1")
    length = int(headers[binary_tensor.HEADER])
    head = json.loads(body[:length])
    sent = {t["name"]: t for t in head["inputs"]}
    assert "data" in sent["ids"] and "binary_data_size" in sent["half"]["parameters"]
    assert "binary_data_size" in sent["brain"]["parameters"] and head["id"] == "r1"
    # the same bytes read back as a response body give the values sent
    echoed = json.dumps({"outputs": head["inputs"]}).encode()
    _, outs = v2_synth.rest_outputs(echoed + body[length:], str(len(echoed)))
    by_name = v2_synth.by_name(outs)
    for t in tensors:
        assert v2_synth.comparable(by_name[t.name]) == v2_synth.comparable(t)


def test_grpc_request_goes_all_raw_when_one_input_needs_it() -> None:
    tensors = v2_synth.valid_inputs(v2_synth.model_spec("m", META))
    request = v2_synth.grpc_request("m", tensors, request_id="r", outputs=["y"])
    assert len(request.raw_input_contents) == len(tensors)
    assert [o.name for o in request.outputs] == ["y"]
    typed = v2_synth.grpc_request("m", [t for t in tensors if t.datatype in ("INT64", "BYTES")])
    assert not typed.raw_input_contents and list(typed.inputs[0].contents.int64_contents)


@pytest.mark.parametrize("fault", v2_synth.FAULTS)
def test_each_fault_changes_exactly_one_thing(fault: str) -> None:
    spec = v2_synth.model_spec("m", META)
    valid = v2_synth.valid_inputs(spec)
    faulty = v2_synth.faulty_inputs(fault, spec, valid)
    assert faulty != valid
    if fault == "unknown-input":
        assert faulty[:-1] == valid and faulty[-1].name == v2_synth.UNKNOWN_INPUT
    elif fault == "missing-input":
        assert faulty == valid[1:]
    else:
        assert faulty[1:] == valid[1:]
        first = faulty[0]
        if fault == "wrong-datatype":
            assert first.datatype != valid[0].datatype
        elif fault == "wrong-rank":
            assert len(first.shape) == len(valid[0].shape) + 1
        else:
            assert len(first.values) < v2_synth._count(first.shape)


def test_outputs_are_judged_against_the_declared_ones() -> None:
    spec = v2_synth.model_spec("m", META)
    good = Tensor("y", "FP32", (3, 2), (0.5,) * 6)
    assert v2_synth.output_problems(spec, [good]) == []
    bad = [
        Tensor("z", "FP32", (1, 2), (0.0, 0.0)),
        Tensor("y", "FP64", (1, 2), (0.0, 0.0)),
        Tensor("y", "FP32", (1, 3), (0.0,) * 3),
        Tensor("y", "FP32", (1, 2), (0.0,)),
    ]
    problems = v2_synth.output_problems(spec, bad)
    assert len(problems) == 4, problems


def test_json_floats_compare_as_their_datatype() -> None:
    exact = Tensor("y", "FP32", (1,), (0.10000000149011612,))
    printed = Tensor("y", "FP32", (1,), (0.1,))  # the same float32, printed short
    other = Tensor("y", "FP32", (1,), (0.1000001,))
    assert v2_synth.comparable(exact) == v2_synth.comparable(printed)
    assert v2_synth.comparable(exact) != v2_synth.comparable(other)
    text = Tensor("t", "BYTES", (1,), ("hi",))
    assert v2_synth.comparable(text) == v2_synth.comparable(Tensor("t", "BYTES", (1,), (b"hi",)))
