"""The binary tensor data extension's codec: layouts, bodies and malformed input."""

from __future__ import annotations

import json

import pytest

from servegate.protocols import binary_tensor as bt


@pytest.mark.parametrize(
    ("datatype", "values", "raw"),
    [
        ("BOOL", [True, False], b"\x01\x00"),
        ("UINT16", [1, 65535], b"\x01\x00\xff\xff"),
        ("INT32", [-1], b"\xff\xff\xff\xff"),
        ("FP32", [1.0], b"\x00\x00\x80\x3f"),
        ("FP16", [1.0], b"\x00\x3c"),
        ("BF16", [1.0, -2.0], b"\x80\x3f\x00\xc0"),
        ("BYTES", ["ab", b""], b"\x02\x00\x00\x00ab\x00\x00\x00\x00"),
    ],
)
def test_tensor_layout_is_little_endian_and_length_prefixed(datatype, values, raw):
    assert bt.encode_tensor(datatype, values) == raw
    decoded = bt.decode_tensor(datatype, raw)
    assert decoded == [v.encode() if isinstance(v, str) else v for v in values]


def test_body_round_trip_moves_named_inputs_to_binary_parts():
    request = {
        "inputs": [
            {"name": "a", "datatype": "INT64", "shape": [2, 1], "data": [[1], [2]]},
            {"name": "b", "datatype": "BYTES", "shape": [1], "data": ["x"]},
        ]
    }
    body, length = bt.encode_body(request, ["a"])
    head = json.loads(body[:length])
    assert "data" not in head["inputs"][0]
    assert head["inputs"][0]["parameters"]["binary_data_size"] == 16
    assert head["inputs"][1]["data"] == ["x"]
    parsed = bt.split_body(body, str(length), "inputs")
    assert parsed["inputs"][0]["data"] == [1, 2]
    assert request["inputs"][0]["data"] == [[1], [2]]  # the caller's request is untouched


def test_body_without_header_length_is_all_json():
    assert bt.split_body(b'{"outputs": []}', None, "outputs") == {"outputs": []}


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b'{"outputs": []}', "99", "outside"),
        (b'{"outputs": []}', "x", "not an integer"),
        (b'{"outputs": []}xx', "15", "belong to no tensor"),
        (
            b'{"outputs": [{"name": "o", "datatype": "INT32", '
            b'"parameters": {"binary_data_size": 8}}]}'
            b"\x00\x00\x00\x00",
            None,
            "runs past the end",
        ),
    ],
)
def test_malformed_bodies_are_named(body, length, message):
    if length is None:
        head = body[:-4]
        length = str(len(head))
    with pytest.raises(bt.BinaryFormatError, match=message):
        bt.split_body(body, length, "outputs")


def test_truncated_bytes_and_partial_elements_are_refused():
    with pytest.raises(bt.BinaryFormatError, match="runs past"):
        bt.decode_tensor("BYTES", b"\x05\x00\x00\x00abc")
    with pytest.raises(bt.BinaryFormatError, match="whole number"):
        bt.decode_tensor("INT32", b"\x01\x00\x00")


def test_bf16_is_the_upper_half_of_float32_rounded_to_nearest_even():
    # 1 + 2**-8 lies halfway between two BF16 values: ties go to the even one (1.0);
    # 1 + 3 * 2**-8 rounds up to 1 + 2**-6; inf and NaN survive
    raw = bt.encode_tensor("BF16", [1 + 2**-8, 1 + 3 * 2**-8, float("inf"), float("nan")])
    values = bt.decode_tensor("BF16", raw)
    assert values[:3] == [1.0, 1 + 2**-6, float("inf")]
    assert values[3] != values[3]
    with pytest.raises(bt.BinaryFormatError, match="BF16"):
        bt.decode_tensor("BF16", b"\x80")
