"""The binary tensor data extension of V2 REST (Triton's extension_binary_data.md), checked when
the server advertises it: "Triton reports “binary_tensor_data” in the extensions field of its
Server Metadata". An extension, so feature v2-binary-tensor, never core."""

from __future__ import annotations

from typing import Any

import pytest

from servegate.checks import expect, expect_status
from servegate.protocols import binary_tensor
from servegate.protocols.http import Reply
from servegate.protocols.v2_models import flatten, tensor
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import ModelInfo
from servegate.tasks import numeric_echo

INT32 = [-2147483648, -1, 0, 2147483647]
FP32 = [-1.5, 0.10000000149011612, 3.0, 2.0**-100]
BYTES = ["", "hello", "caf\u00e9"]


def _request(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [tensor("int32", "INT32", [4], INT32), tensor("fp32", "FP32", [4], FP32)]
    }
    body.update(extra)
    return body


def _send(v2: V2RestClient, model: str, body: dict[str, Any], binary_inputs: list[str]) -> Reply:
    content, length = binary_tensor.encode_body(body, binary_inputs)
    return v2.infer(
        model,
        content=content,
        headers={binary_tensor.HEADER: str(length), "content-type": "application/octet-stream"},
    )


def _parse(reply: Reply, rule: str) -> dict[str, dict[str, Any]]:
    """The response's outputs by name, binary parts decoded; a RuleViolation if malformed."""
    expect_status(reply, 200, rule)
    try:
        body = binary_tensor.split_body(
            reply.content, reply.headers.get(binary_tensor.HEADER), "outputs"
        )
    except binary_tensor.BinaryFormatError as exc:
        raise AssertionError(f"rule: {rule}\nproblem: {exc}\n{reply.describe()}") from None
    outputs = body.get("outputs")
    expect(isinstance(outputs, list), rule, "no outputs list", reply)
    return {o["name"]: o for o in outputs}


def _is_binary(output: dict[str, Any]) -> bool:
    return "binary_data_size" in (output.get("parameters") or {})


@pytest.mark.features("v2-rest", "v2-binary-tensor")
def test_binary_inputs_are_read(v2: V2RestClient, numeric: ModelInfo) -> None:
    """ "Tensor data represented as binary data is organized in little-endian byte order, row
    major"; "binary_data_size" : "int64 parameter indicating the size of the tensor binary
    data"; "the Inference-Header-Content-Length header must be provided to give the length of
    the JSON object" (extension_binary_data.md): inputs sent so are read as their values."""
    rule = "binary request tensors are read exactly"
    reply = _send(v2, numeric.name, _request(), ["int32", "fp32"])
    outputs = _parse(reply, rule)
    for name, sent in (("int32", INT32), ("fp32", FP32)):
        expect(name in outputs, rule, f"no output {name!r}", reply)
        got = flatten(outputs[name].get("data"))
        expect(
            numeric_echo.same_values(name.upper(), sent, got),
            rule,
            f"{name}: sent {sent}, model returned {got}",
            reply,
        )


@pytest.mark.features("v2-rest", "v2-binary-tensor")
def test_binary_data_output_returns_every_output_binary(
    v2: V2RestClient, numeric: ModelInfo
) -> None:
    """ "binary_data_output" : "bool parameter that is true if all outputs should be returned
    as binary data" (extension_binary_data.md)."""
    rule = "binary_data_output returns every output in binary"
    reply = v2.infer(numeric.name, _request(parameters={"binary_data_output": True}))
    outputs = _parse(reply, rule)
    text = [n for n, o in outputs.items() if not _is_binary(o)]
    expect(not text, rule, f"outputs {text} came back as JSON data", reply)
    got = flatten(outputs["int32"]["data"])
    expect(numeric_echo.same_values("INT32", INT32, got), rule, f"int32 came back {got}", reply)


@pytest.mark.features("v2-rest", "v2-binary-tensor")
def test_binary_data_on_one_output_returns_only_it_binary(
    v2: V2RestClient, numeric: ModelInfo
) -> None:
    """ "binary_data" : "bool parameter that is true if the output should be returned as binary
    data and false (or not given) if the tensor should be returned as JSON"
    (extension_binary_data.md)."""
    rule = "an output's binary_data parameter returns that output alone in binary"
    body = _request(
        outputs=[{"name": "fp32", "parameters": {"binary_data": True}}, {"name": "int32"}]
    )
    reply = v2.infer(numeric.name, body)
    outputs = _parse(reply, rule)
    expect(
        _is_binary(outputs.get("fp32", {})) and not _is_binary(outputs.get("int32", {})),
        rule,
        f"binary outputs: {[n for n, o in outputs.items() if _is_binary(o)]}",
        reply,
    )
    got = flatten(outputs["fp32"]["data"])
    expect(numeric_echo.same_values("FP32", FP32, got), rule, f"fp32 came back {got}", reply)


@pytest.mark.features("v2-rest", "v2-binary-tensor")
def test_binary_bytes_tensor_round_trips(v2: V2RestClient, numeric: ModelInfo) -> None:
    """ "For BYTES type an element is represented by a 4-byte unsigned integer giving the
    length followed by the actual bytes" (extension_binary_data.md), both ways."""
    rule = "a binary BYTES tensor round-trips exactly"
    body = {
        "inputs": [tensor("bytes", "BYTES", [3], BYTES)],
        "outputs": [{"name": "bytes", "parameters": {"binary_data": True}}],
    }
    reply = _send(v2, numeric.name, body, ["bytes"])
    got = flatten(_parse(reply, rule).get("bytes", {}).get("data"))
    expect(numeric_echo.same_values("BYTES", BYTES, got), rule, f"got back {got!r}", reply)


@pytest.mark.features("v2-rest", "v2-binary-tensor")
def test_binary_response_declares_its_header_length(v2: V2RestClient, numeric: ModelInfo) -> None:
    """ "If any binary data is present in the request or response the
    Inference-Header-Content-Length header must be provided to give the length of the JSON
    object" (extension_binary_data.md); the binary parts fill the rest of the body."""
    rule = "Inference-Header-Content-Length is the JSON header's exact length"
    reply = v2.infer(numeric.name, _request(parameters={"binary_data_output": True}))
    expect_status(reply, 200, rule)
    length = reply.headers.get(binary_tensor.HEADER)
    expect(length is not None and length.isdigit(), rule, f"header value {length!r}", reply)
    head = reply.content[: int(length)]
    expect(head.rstrip().endswith(b"}"), rule, f"the header ends {head[-20:]!r}", reply)
    _parse(reply, rule)
