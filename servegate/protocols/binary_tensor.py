"""The binary tensor data extension of the V2 REST protocol (Triton's ``binary_tensor_data``).

A request or response body is a JSON header followed by raw tensor bytes. The HTTP header
``Inference-Header-Content-Length`` gives the JSON header's length in bytes; each tensor sent in
binary carries ``parameters.binary_data_size`` instead of ``data``, and the binary parts follow
the JSON in the order of those tensors. Elements are little-endian; BOOL is one byte; BF16 is the
upper half of an IEEE float32 (two bytes); each BYTES element is a 4-byte little-endian length
followed by its bytes. A client asks for binary outputs
with the request parameter ``binary_data_output: true`` (every output) or the output parameter
``binary_data: true`` (that one).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

HEADER = "Inference-Header-Content-Length"
#: the extension's name in GET /v2 ``extensions``
EXTENSION = "binary_tensor_data"

NUMPY_DTYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}


#: "All tensor data types are representable as binary data in the native size of the data
#: type": BF16 has no numpy type, so it is coded here as the high 16 bits of a float32
BF16 = "BF16"


class BinaryFormatError(ValueError):
    """Bytes that are not a well-formed binary tensor body or tensor."""


def _encode_bf16(data: Sequence[Any]) -> bytes:
    values = np.asarray(list(data), dtype=np.float32)
    bits = values.view(np.uint32).astype(np.uint64)
    # round to nearest, ties to even, as float32 -> bfloat16 conversions do; NaN stays NaN
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    rounded[np.isnan(values)] = 0x7FC0
    return rounded.astype("<u2").tobytes()


def _decode_bf16(raw: bytes) -> list[Any]:
    if len(raw) % 2:
        raise BinaryFormatError(f"{len(raw)} bytes is not a whole number of BF16 elements (2 each)")
    halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return halves.view(np.float32).astype(np.float64).tolist()


def encode_tensor(datatype: str, data: Sequence[Any]) -> bytes:
    """Flat values as the extension's raw bytes (the same layout as gRPC raw contents)."""
    if datatype == "BYTES":
        out = bytearray()
        for item in data:
            b = item.encode() if isinstance(item, str) else bytes(item)
            out += len(b).to_bytes(4, "little") + b
        return bytes(out)
    if datatype == BF16:
        return _encode_bf16(data)
    if datatype not in NUMPY_DTYPES:
        raise BinaryFormatError(f"no binary layout for datatype {datatype!r}")
    dtype = np.dtype(NUMPY_DTYPES[datatype]).newbyteorder("<")
    return np.asarray(list(data), dtype=NUMPY_DTYPES[datatype]).astype(dtype).tobytes()


def decode_tensor(datatype: str, raw: bytes) -> list[Any]:
    """Raw bytes as flat Python values; BYTES elements come back as ``bytes``."""
    if datatype == "BYTES":
        out: list[Any] = []
        pos = 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise BinaryFormatError(f"BYTES element at offset {pos}: truncated length prefix")
            size = int.from_bytes(raw[pos : pos + 4], "little")
            if pos + 4 + size > len(raw):
                raise BinaryFormatError(
                    f"BYTES element at offset {pos}: length {size} runs past the "
                    f"{len(raw)} bytes given"
                )
            out.append(bytes(raw[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        return out
    if datatype == BF16:
        return _decode_bf16(raw)
    if datatype not in NUMPY_DTYPES:
        raise BinaryFormatError(f"no binary layout for datatype {datatype!r}")
    dtype = np.dtype(NUMPY_DTYPES[datatype]).newbyteorder("<")
    if len(raw) % dtype.itemsize:
        raise BinaryFormatError(
            f"{len(raw)} bytes is not a whole number of {datatype} elements ({dtype.itemsize} each)"
        )
    return np.frombuffer(raw, dtype=dtype).tolist()


def encode_body(header: dict[str, Any], binary_inputs: Iterable[str] = ()) -> tuple[bytes, int]:
    """A request body with the named inputs moved from JSON ``data`` to binary parts.

    ``header`` is an inference request as JSON (flat ``data`` lists); it is not modified.
    Returns the body and the JSON header's length (the value of :data:`HEADER`).
    """
    wanted = set(binary_inputs)
    header = json.loads(json.dumps(header))
    parts: list[bytes] = []
    for tensor in header.get("inputs", []):
        if tensor.get("name") not in wanted:
            continue
        raw = encode_tensor(tensor["datatype"], _flat(tensor.pop("data")))
        tensor.setdefault("parameters", {})["binary_data_size"] = len(raw)
        parts.append(raw)
    head = json.dumps(header).encode()
    return head + b"".join(parts), len(head)


def split_body(body: bytes, header_length: int | str | None, key: str) -> dict[str, Any]:
    """Parse a body of the extension into JSON with every binary tensor's ``data`` filled in.

    ``key`` is ``"inputs"`` for a request and ``"outputs"`` for a response. Without a header
    length the whole body is JSON. Each tensor that was binary keeps its
    ``parameters.binary_data_size``; BYTES elements stay ``bytes``.
    """
    if header_length is None:
        length = len(body)
    else:
        try:
            length = int(header_length)
        except (TypeError, ValueError):
            raise BinaryFormatError(f"{HEADER} {header_length!r} is not an integer") from None
        if not 0 <= length <= len(body):
            raise BinaryFormatError(f"{HEADER} {length} is outside the {len(body)}-byte body")
    try:
        head = json.loads(body[:length])
    except (ValueError, RecursionError) as exc:
        raise BinaryFormatError(f"the first {length} bytes are not a JSON header: {exc}") from None
    if not isinstance(head, dict):
        raise BinaryFormatError("the JSON header is not an object")
    pos = length
    tensors = head.get(key)
    for tensor in tensors if isinstance(tensors, list) else []:
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BinaryFormatError(f"{tensor.get('name')!r}: binary_data_size {size!r}")
        if pos + size > len(body):
            raise BinaryFormatError(
                f"{tensor.get('name')!r}: binary_data_size {size} runs past the end of the body"
            )
        tensor["data"] = decode_tensor(str(tensor.get("datatype")), body[pos : pos + size])
        pos += size
    if pos != len(body):
        raise BinaryFormatError(
            f"{len(body) - pos} bytes after the last binary tensor belong to no tensor"
        )
    return head


def _flat(data: Any) -> list[Any]:
    if isinstance(data, list):
        out: list[Any] = []
        for item in data:
            out.extend(_flat(item))
        return out
    return [data]
