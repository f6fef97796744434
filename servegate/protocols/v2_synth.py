"""Valid (and deliberately invalid) V2 requests synthesised from a model's own metadata.

Any V2 model describes its inputs in its metadata: a name, a datatype and a shape whose -1
dimensions are variable. That is enough to build a request the model must take, without
knowing what the model does: every declared input, of its datatype, with variable dimensions
made small and values well inside the datatype's range. The same tensors are written as JSON,
as the binary tensor extension's body, and as a gRPC ModelInferRequest, so a check can compare
what each transport returns; and a few single faults (an unknown input, a missing input, a wrong
datatype, a wrong rank, data that does not fill its shape) are derived from them.

FP16 and BF16 have no JSON representation the protocol promises ("fp16 is problematic to
communicate explicitly"): such inputs travel as binary parts of a REST request or as gRPC raw
contents, never as JSON numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from servegate.protocols import binary_tensor
from servegate.protocols.v2_grpc import CONTENTS_FIELD

#: datatypes a request can carry as JSON values
JSON_DATATYPES = frozenset(
    {
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP32",
        "FP64",
        "BYTES",
    }
)
#: datatypes that travel only as raw little-endian bytes (binary extension, gRPC raw)
RAW_ONLY = frozenset({"FP16", "BF16"})
SYNTHESISABLE = JSON_DATATYPES | RAW_ONLY
#: what a variable dimension becomes: the first (often a batch dimension, which a model may
#: cap at 1) and every other
FIRST_VARIABLE_SIZE = 1
OTHER_VARIABLE_SIZE = 2
#: short ASCII text: a valid element for any BYTES input a text model reads
WORDS = ("hello world", "the quick brown fox", "servegate says hi", "a short sentence")
#: the name of the input no model declares (the unknown-input fault)
UNKNOWN_INPUT = "servegate_undeclared_input"
#: the single faults derived from a valid request
FAULTS = ("unknown-input", "missing-input", "wrong-datatype", "wrong-rank", "data-short-of-shape")


class Unusable(ValueError):
    """Metadata from which no valid request can be built (the reason is the message)."""


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as model metadata declares it."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelSpec:
    """A model's declared inputs and outputs."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def output(self, name: str) -> TensorSpec | None:
        return next((o for o in self.outputs if o.name == name), None)


@dataclass(frozen=True)
class Tensor:
    """A concrete tensor: flat row-major values (BYTES elements are ``bytes``)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: tuple[Any, ...]


def _spec_tensors(items: Sequence[Any], kind: str) -> tuple[TensorSpec, ...]:
    out = []
    for item in items:
        get = item.get if isinstance(item, Mapping) else lambda k, o=item: getattr(o, k, None)
        name, datatype = get("name"), get("datatype")
        shape: Any = get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise Unusable(f"an {kind} tensor lacks a name or a datatype: {item!r}"[:200])
        try:
            dims = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise Unusable(f"{kind} {name!r}: shape {shape!r} is not a list of integers") from None
        out.append(TensorSpec(name, datatype, dims))
    return tuple(out)


def model_spec(name: str, metadata: Any) -> ModelSpec:
    """A ModelSpec from REST metadata (a dict) or a gRPC ModelMetadataResponse."""
    if isinstance(metadata, Mapping):
        inputs, outputs = metadata.get("inputs") or [], metadata.get("outputs") or []
    else:
        inputs, outputs = list(metadata.inputs), list(metadata.outputs)
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise Unusable("metadata inputs/outputs are not lists")
    return ModelSpec(name, _spec_tensors(inputs, "input"), _spec_tensors(outputs, "output"))


def check_synthesisable(spec: ModelSpec) -> None:
    """Unusable when the metadata gives nothing to build a request from."""
    if not spec.inputs:
        raise Unusable("its metadata declares no inputs")
    names = [t.name for t in spec.inputs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        # e.g. one name per accepted encoding: alternatives, not one request
        raise Unusable(f"its metadata declares input(s) {repeated} more than once")
    for t in spec.inputs:
        if t.datatype not in SYNTHESISABLE:
            raise Unusable(f"input {t.name!r} has datatype {t.datatype!r}, not a V2 datatype")
        if any(d < -1 for d in t.shape):
            raise Unusable(f"input {t.name!r} has shape {list(t.shape)}")


def concrete_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """The declared shape with each -1 made small."""
    out = []
    for i, dim in enumerate(shape):
        if dim == -1:
            out.append(FIRST_VARIABLE_SIZE if i == 0 else OTHER_VARIABLE_SIZE)
        else:
            out.append(dim)
    return tuple(out)


def sample_values(datatype: str, count: int, seed: int = 0) -> tuple[Any, ...]:
    """``count`` values of ``datatype``, small and exact in every representation."""
    out: list[Any] = []
    for i in range(count):
        k = (i + seed) % 7
        if datatype == "BYTES":
            out.append(WORDS[(i + seed) % len(WORDS)].encode())
        elif datatype == "BOOL":
            out.append(k % 2 == 0)
        elif datatype.startswith(("UINT", "INT")):
            out.append(k + 1)
        else:
            # multiples of 0.5 up to 3.5: exact in FP16, BF16, FP32 and FP64
            out.append((k + 1) * 0.5)
    return tuple(out)


def valid_inputs(spec: ModelSpec) -> list[Tensor]:
    """One tensor per declared input; Unusable when the metadata cannot say how."""
    check_synthesisable(spec)
    tensors = []
    for i, t in enumerate(spec.inputs):
        shape = concrete_shape(t.shape)
        tensors.append(
            Tensor(t.name, t.datatype, shape, sample_values(t.datatype, _count(shape), i))
        )
    return tensors


def _count(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 1


def needs_raw(tensors: Sequence[Tensor]) -> bool:
    """Whether some tensor cannot travel as JSON values."""
    return any(t.datatype in RAW_ONLY for t in tensors)


# --- the faults ------------------------------------------------------------------------------


def faulty_inputs(fault: str, spec: ModelSpec, tensors: Sequence[Tensor]) -> list[Tensor]:
    """The valid tensors with one fault (see FAULTS); the first input carries it."""
    first, rest = tensors[0], list(tensors[1:])
    if fault == "unknown-input":
        extra = Tensor(UNKNOWN_INPUT, first.datatype, first.shape, first.values)
        return [*tensors, extra]
    if fault == "missing-input":
        return rest
    if fault == "wrong-datatype":
        if first.datatype == "BYTES":
            wrong = replace(
                first, datatype="INT32", values=sample_values("INT32", len(first.values))
            )
        else:
            wrong = replace(
                first, datatype="BYTES", values=sample_values("BYTES", len(first.values))
            )
        return [wrong, *rest]
    if fault == "wrong-rank":
        return [replace(first, shape=(*first.shape, 1)), *rest]
    if fault == "data-short-of-shape":
        longer = (*first.shape[:-1], first.shape[-1] + 1) if first.shape else (2,)
        return [replace(first, shape=longer), *rest]
    raise ValueError(f"unknown fault {fault!r}")


# --- REST (JSON and the binary tensor extension) --------------------------------------------


def _json_value(datatype: str, value: Any) -> Any:
    return value.decode() if datatype == "BYTES" else value


def rest_body(
    tensors: Sequence[Tensor],
    *,
    binary_inputs: bool = False,
    raw_as_json: bool = False,
    binary_outputs: bool = False,
    request_id: str | None = None,
    outputs: Sequence[str] | None = None,
    binary_output_names: Sequence[str] = (),
) -> tuple[bytes, dict[str, str]]:
    """An inference request body and its headers.

    Tensors go as JSON values unless ``binary_inputs`` or their datatype has no JSON form (then
    as binary parts; with ``raw_as_json``, for a server without the binary extension, as JSON
    numbers after all); ``binary_outputs`` asks for every output as binary data, and
    ``binary_output_names`` for those of the requested ``outputs`` only.
    """
    head: dict[str, Any] = {}
    if request_id is not None:
        head["id"] = request_id
    if binary_outputs:
        head["parameters"] = {"binary_data_output": True}
    parts: list[bytes] = []
    inputs = []
    for t in tensors:
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if binary_inputs or (t.datatype in RAW_ONLY and not raw_as_json):
            raw = encode_raw(t.datatype, t.values)
            entry["parameters"] = {"binary_data_size": len(raw)}
            parts.append(raw)
        else:
            entry["data"] = [_json_value(t.datatype, v) for v in t.values]
        inputs.append(entry)
    head["inputs"] = inputs
    if outputs is not None:
        head["outputs"] = [
            {"name": n, "parameters": {"binary_data": True}}
            if n in binary_output_names
            else {"name": n}
            for n in outputs
        ]
    encoded = json.dumps(head).encode()
    headers = {"content-type": "application/json"}
    if parts:
        headers = {
            "content-type": "application/octet-stream",
            binary_tensor.HEADER: str(len(encoded)),
        }
    return encoded + b"".join(parts), headers


def rest_outputs(content: bytes, header_length: str | None) -> tuple[dict[str, Any], list[Tensor]]:
    """A REST inference response: its JSON header and its outputs with flat values.

    Raises ValueError (binary_tensor.BinaryFormatError, a JSON error) for a malformed body.
    """
    length = len(content) if header_length is None else int(header_length)
    head = json.loads(content[:length])
    if not isinstance(head, dict):
        raise ValueError("the response is not a JSON object")
    pos = length
    outs: list[Tensor] = []
    items = head.get("outputs")
    if not isinstance(items, list):
        raise ValueError("the response's outputs are not a list")
    for item in items:
        if not isinstance(item, dict):
            raise ValueError(f"an output is not an object: {item!r}"[:200])
        datatype = str(item.get("datatype"))
        size = (item.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            values = decode_raw(datatype, content[pos : pos + int(size)])
            pos += int(size)
        else:
            values = _flatten(item.get("data"))
        shape = item.get("shape")
        outs.append(
            Tensor(
                str(item.get("name")),
                datatype,
                tuple(shape) if isinstance(shape, list) else (),
                tuple(values),
            )
        )
    if pos != len(content):
        raise ValueError(f"{len(content) - pos} bytes after the last binary output")
    return head, outs


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        out: list[Any] = []
        for item in data:
            out.extend(_flatten(item))
        return out
    return [] if data is None else [data]


# --- raw bytes (binary extension and gRPC raw contents share the layout) ---------------------


def encode_raw(datatype: str, values: Sequence[Any]) -> bytes:
    """Little-endian elements; BF16 as the upper half of each float32."""
    if datatype == "BF16":
        bits = np.asarray(values, dtype="<f4").view("<u4") >> 16
        return bits.astype("<u2").tobytes()
    return binary_tensor.encode_tensor(datatype, values)


def decode_raw(datatype: str, raw: bytes) -> list[Any]:
    if datatype == "BF16":
        halves = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
        return halves.view("<f4").astype(float).tolist()
    return binary_tensor.decode_tensor(datatype, raw)


# --- gRPC ------------------------------------------------------------------------------------


def grpc_request(
    model: str,
    tensors: Sequence[Tensor],
    *,
    request_id: str = "",
    outputs: Sequence[str] = (),
) -> pb.ModelInferRequest:
    """A ModelInferRequest: typed contents, or raw contents for every input when one needs it
    (the protocol does not allow mixing the two in one request)."""
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    raw = needs_raw(tensors)
    for t in tensors:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name=t.name, datatype=t.datatype, shape=list(t.shape)
        )
        if raw:
            request.raw_input_contents.append(encode_raw(t.datatype, t.values))
        else:
            field = CONTENTS_FIELD[t.datatype][0]
            getattr(tensor.contents, field).extend(list(t.values))
        request.inputs.append(tensor)
    for name in outputs:
        request.outputs.append(pb.ModelInferRequest.InferRequestedOutputTensor(name=name))
    return request


def grpc_outputs(response: pb.ModelInferResponse) -> list[Tensor]:
    """The outputs of a ModelInferResponse with flat values, from raw or typed contents."""
    outs = []
    raws = list(response.raw_output_contents)
    for i, out in enumerate(response.outputs):
        if raws:
            values = decode_raw(out.datatype, raws[i]) if i < len(raws) else []
        else:
            field = CONTENTS_FIELD.get(out.datatype, ("", None))[0]
            values = list(getattr(out.contents, field)) if field else []
        outs.append(Tensor(out.name, out.datatype, tuple(out.shape), tuple(values)))
    return outs


# --- judging outputs -------------------------------------------------------------------------


def shape_fits(declared: Sequence[int], actual: Sequence[int]) -> bool:
    """Whether a concrete shape is one the declared shape allows (-1 matches any size)."""
    return len(declared) == len(actual) and all(
        d in (-1, a) for d, a in zip(declared, actual, strict=True)
    )


def output_problems(spec: ModelSpec, outputs: Sequence[Tensor]) -> list[str]:
    """How returned outputs stray from the metadata: undeclared names, other datatypes,
    shapes the declared shape does not allow, element counts that are not the shape's."""
    problems = []
    for out in outputs:
        declared = spec.output(out.name)
        if declared is None:
            names = [o.name for o in spec.outputs]
            problems.append(f"output {out.name!r} is not declared (metadata declares {names})")
            continue
        if out.datatype != declared.datatype:
            problems.append(
                f"output {out.name!r} is {out.datatype}; metadata declares {declared.datatype}"
            )
        if not shape_fits(declared.shape, out.shape):
            problems.append(
                f"output {out.name!r} has shape {list(out.shape)}; metadata declares "
                f"{list(declared.shape)}"
            )
        elif _count(out.shape) != len(out.values):
            problems.append(
                f"output {out.name!r}: shape {list(out.shape)} holds {_count(out.shape)} "
                f"elements, data has {len(out.values)}"
            )
    return problems


def comparable(t: Tensor) -> tuple[Any, ...]:
    """The tensor's values as its datatype holds them, so that two transports' answers compare
    equal when they carry the same tensor (a JSON float is cast back to FP32, BYTES text to
    bytes; NaN equals NaN)."""
    dt = t.datatype
    out: list[Any] = []
    for v in t.values:
        if dt == "BYTES":
            out.append(v.encode() if isinstance(v, str) else bytes(v))
        elif dt == "BOOL":
            out.append(bool(v))
        elif dt in ("FP16", "FP32", "FP64", "BF16"):
            x = float("nan") if v is None else float(v)
            if dt == "FP16":
                x = float(np.float16(x))
            elif dt in ("FP32", "BF16"):
                x = float(np.float32(x))
            out.append("nan" if x != x else x)
        else:
            out.append(v)
    return tuple(out)


def by_name(outputs: Sequence[Tensor]) -> dict[str, Tensor]:
    return {o.name: o for o in outputs}


def describe(tensors: Sequence[Tensor]) -> str:
    """A short text of tensors for a failure message."""
    parts = []
    for t in tensors:
        shown = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in t.values[:6]]
        more = "..." if len(t.values) > 6 else ""
        parts.append(f"{t.name} {t.datatype} {list(t.shape)} {shown}{more}")
    return "; ".join(parts)
