"""What a load scenario sends: request bodies from the stored payloads, resized per option.

No Locust here, so the encodings can be checked on their own.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from servegate.errors import ServegateError
from servegate.fixtures.payloads import PayloadError, load_payload
from servegate.protocols import v2_grpc
from servegate.targets import DEFAULT_OPENAI_BASE

#: V2 dialects: how a runtime maps V2 inputs onto a pipeline (fixtures/payloads.py)
DIALECTS = ("mlserver", "kserve")

#: what the scenarios send when no --task is given: a bare tensor the null endpoint answers
NULL_V2_REQUEST: dict[str, Any] = {
    "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1], "data": [0.0]}]
}
NULL_V1_REQUEST: dict[str, Any] = {"instances": [0.0]}


class ScenarioError(ServegateError):
    """Options that do not make a request."""


@dataclass(frozen=True)
class ScenarioOptions:
    """The custom command-line options of the locustfiles, parsed."""

    model: str | None = None
    task: str | None = None
    payload: str | None = None
    instances: int | None = None
    max_tokens: int | None = None
    dialect: str = "mlserver"
    openai_base: str = DEFAULT_OPENAI_BASE
    grpc_host: str | None = None
    pace_ms: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_parsed(cls, parsed: Any) -> ScenarioOptions:
        headers = {}
        for item in getattr(parsed, "sg_header", None) or []:
            name, sep, value = item.partition(":")
            if not sep:
                raise ScenarioError(f"--header {item!r}: expected 'Name: value'")
            headers[name.strip()] = value.strip()
        if getattr(parsed, "dialect", "mlserver") not in DIALECTS:
            raise ScenarioError(f"--dialect must be one of {', '.join(DIALECTS)}")
        instances = getattr(parsed, "instances", 0) or None
        if instances is not None and instances < 1:
            raise ScenarioError("--instances must be at least 1")
        return cls(
            model=getattr(parsed, "model", None) or None,
            task=getattr(parsed, "task", None) or None,
            payload=getattr(parsed, "payload", None) or None,
            instances=instances,
            max_tokens=getattr(parsed, "max_tokens", 0) or None,
            dialect=getattr(parsed, "dialect", "mlserver"),
            openai_base=getattr(parsed, "openai_base", DEFAULT_OPENAI_BASE),
            grpc_host=getattr(parsed, "grpc_host", None) or None,
            pace_ms=float(getattr(parsed, "pace_ms", 0.0) or 0.0),
            headers=headers,
        )

    def need_model(self) -> str:
        if not self.model:
            raise ScenarioError("no --model given: name the model to load-test")
        return self.model


def _load(name: str, model: str | None = None) -> dict[str, Any]:
    try:
        return load_payload(name, model=model)
    except PayloadError as exc:
        raise ScenarioError(str(exc)) from None


def resize_v2(body: dict[str, Any], instances: int) -> dict[str, Any]:
    """A V2 request with ``instances`` rows per input: the first dimension set to it and the
    rows of the stored payload repeated to fill it."""
    out = copy.deepcopy(body)
    for tensor in out["inputs"]:
        shape = list(tensor["shape"]) or [1]
        per_row = math.prod(shape[1:]) if len(shape) > 1 else 1
        data = list(tensor["data"])
        rows = [data[i : i + per_row] for i in range(0, len(data), per_row)] or [[]]
        tensor["data"] = [v for i in range(instances) for v in rows[i % len(rows)]]
        tensor["shape"] = [instances, *shape[1:]]
    return out


def v2_request(opts: ScenarioOptions) -> dict[str, Any]:
    """The V2 inference request the scenario sends."""
    if opts.payload:
        body = _load(opts.payload)
    elif opts.task:
        body = _load(f"v2_{opts.dialect}_{opts.task}")
    else:
        body = copy.deepcopy(NULL_V2_REQUEST)
    return resize_v2(body, opts.instances) if opts.instances else body


def v1_request(opts: ScenarioOptions) -> dict[str, Any]:
    """The KServe V1 predict body the scenario sends."""
    if opts.payload:
        body = _load(opts.payload)
    elif opts.task:
        body = _load(f"v1_{opts.task}")
    else:
        body = copy.deepcopy(NULL_V1_REQUEST)
    if opts.instances:
        items = body["instances"] or [0.0]
        body["instances"] = [items[i % len(items)] for i in range(opts.instances)]
    return body


OPENAI_PAYLOADS = {
    "completions": "openai_completion_stream",
    "chat/completions": "openai_chat_stream",
    "embeddings": "openai_embeddings",
}


def openai_body(endpoint: str, opts: ScenarioOptions) -> dict[str, Any]:
    """The OpenAI body for ``endpoint`` ("completions", "chat/completions", "embeddings")."""
    body = _load(opts.payload or OPENAI_PAYLOADS[endpoint], model=opts.need_model())
    if endpoint == "embeddings":
        if opts.instances:
            items = body["input"] if isinstance(body["input"], list) else [body["input"]]
            body["input"] = [items[i % len(items)] for i in range(opts.instances)]
        return body
    body["stream"] = True
    # usage in the last chunk gives the exact token count where the server supports it
    body.setdefault("stream_options", {"include_usage": True})
    if opts.max_tokens:
        body["max_tokens"] = opts.max_tokens
    return body


def grpc_request(model: str, body: dict[str, Any]) -> Any:
    """A V2 JSON request as a gRPC ModelInferRequest (same tensors, typed contents)."""
    inputs: list[tuple[str, str, Sequence[int], Sequence[Any]]] = []
    for tensor in body["inputs"]:
        inputs.append((tensor["name"], tensor["datatype"], tensor["shape"], tensor["data"]))
    request = v2_grpc.build_request(model, inputs)
    for tensor, source in zip(request.inputs, body["inputs"], strict=True):
        content_type = (source.get("parameters") or {}).get("content_type")
        if content_type:
            tensor.parameters["content_type"].string_param = content_type
    return request


def count_rows(body: dict[str, Any]) -> int:
    """Instances in a V2 or V1 body (first dimension of the first input)."""
    if "inputs" in body:
        shape = body["inputs"][0].get("shape") or [1]
        return int(shape[0])
    return len(body.get("instances", []))
