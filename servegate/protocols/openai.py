"""The OpenAI API (completions, chat completions, embeddings, models) over REST and SSE."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from servegate.protocols.http import HttpSession, Reply, StreamingReply, Transport
from servegate.protocols.sse import Event, Framing, parse_events
from servegate.targets import DEFAULT_OPENAI_BASE, Connection

DONE = "[DONE]"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int | None = None
    total_tokens: int


class CompletionChoice(_Open):
    index: int
    text: str
    finish_reason: str | None = None


class Completion(_Open):
    id: str
    object: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ChatMessage(_Open):
    role: str
    content: str | None = None


class ChatChoice(_Open):
    index: int
    message: ChatMessage
    finish_reason: str | None = None


class ChatCompletion(_Open):
    id: str
    object: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class CompletionChunk(_Open):
    """One streamed ``text_completion`` chunk (choices may be empty in a final usage chunk)."""

    id: str
    object: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ChatDelta(_Open):
    role: str | None = None
    content: str | None = None


class ChatChunkChoice(_Open):
    index: int
    delta: ChatDelta
    finish_reason: str | None = None


class ChatCompletionChunk(_Open):
    """One streamed ``chat.completion.chunk``."""

    id: str
    object: str
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class Embedding(_Open):
    index: int
    object: str
    embedding: list[float] | str


class EmbeddingList(_Open):
    object: str
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(_Open):
    id: str
    object: str


class ModelCardList(_Open):
    object: str
    data: list[ModelCard]


class OpenAIErrorBody(_Open):
    """``Error``: openapi.yaml requires all four keys; ``param`` and ``code`` may be null (the
    checks test that they are present)."""

    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class OpenAIError(_Open):
    """The error envelope ``ErrorResponse``: ``{"error": {"message", "type", "param", "code"}}``.

    Extra fields are allowed at both levels: openapi.yaml does not close these objects, and
    servers add their own (vLLM an HTTP status, others a request id)."""

    error: OpenAIErrorBody


def decode_base64_embedding(data: str) -> list[float]:
    """An embedding sent with ``encoding_format: base64``: little-endian float32 values.

    ValueError when the text is not base64 or not a whole number of float32 values."""
    raw = base64.b64decode(data, validate=True)
    if len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes is not a whole number of float32 values")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def chunk_text(chunk: dict[str, Any], index: int) -> str | None:
    """The text a stream chunk adds to choice ``index`` (``text`` of a completion chunk,
    ``delta.content`` of a chat chunk); None when the chunk has no such choice."""
    for choice in chunk.get("choices") or []:
        if isinstance(choice, dict) and choice.get("index") == index:
            if "delta" in choice:
                delta = choice.get("delta") or {}
                return str(delta.get("content") or "")
            return str(choice.get("text") or "")
    return None


def stream_texts(chunks: list[dict[str, Any]]) -> dict[int, str]:
    """Each choice's text, concatenated over a stream's chunks in order."""
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and isinstance(choice.get("index"), int):
                piece = chunk_text(chunk, choice["index"]) or ""
                texts[choice["index"]] = texts.get(choice["index"], "") + piece
    return texts


def finish_reasons(chunks: list[dict[str, Any]]) -> dict[int, list[tuple[int, str]]]:
    """Per choice index, the (chunk position, finish_reason) of every chunk that set one."""
    out: dict[int, list[tuple[int, str]]] = {}
    for pos, chunk in enumerate(chunks):
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("finish_reason") is not None:
                out.setdefault(choice.get("index", -1), []).append(
                    (pos, str(choice["finish_reason"]))
                )
    return out


@dataclass
class Stream:
    """A streamed response, read to the end: its events, parsed chunks and framing facts."""

    reply: StreamingReply
    events: list[Event] = field(default_factory=list)
    framing: Framing = field(default_factory=Framing)
    #: True when the last data event was ``[DONE]``
    done: bool = False
    #: JSON chunks in order (events other than [DONE])
    chunks: list[dict[str, Any]] = field(default_factory=list)
    #: data payloads that were not one JSON object
    bad_json: list[str] = field(default_factory=list)
    #: events after [DONE]
    after_done: list[Event] = field(default_factory=list)

    def describe(self) -> str:
        return self.reply.exchange.describe()


class OpenAIClient:
    def __init__(
        self,
        base_url: str,
        connection: Connection | None = None,
        api_base: str = DEFAULT_OPENAI_BASE,
        transport: Transport | None = None,
    ):
        self.http = HttpSession(base_url, connection, protocol="openai", transport=transport)
        self.api_base = "/" + api_base.strip("/") if api_base.strip("/") else ""

    def close(self) -> None:
        self.http.close()

    def models(self) -> Reply:
        return self.http.get(f"{self.api_base}/models")

    def model(self, model: str) -> Reply:
        return self.http.get(f"{self.api_base}/models/{quote(model, safe='')}")

    def request(self, method: str, endpoint: str, **kw: Any) -> Reply:
        """Any request below the API base (``endpoint`` like "completions"), for bodies the
        typed methods do not send: malformed JSON, other content types."""
        return self.http.request(method, f"{self.api_base}/{endpoint.lstrip('/')}", **kw)

    def completions(self, body: dict[str, Any], **kw: Any) -> Reply:
        return self.http.post(f"{self.api_base}/completions", json=body, **kw)

    def chat(self, body: dict[str, Any], **kw: Any) -> Reply:
        return self.http.post(f"{self.api_base}/chat/completions", json=body, **kw)

    def embeddings(self, body: dict[str, Any], **kw: Any) -> Reply:
        return self.http.post(f"{self.api_base}/embeddings", json=body, **kw)

    @contextmanager
    def stream(self, endpoint: str, body: dict[str, Any]) -> Iterator[Iterator[Event]]:
        """Open a stream and iterate its events as they arrive (for latency measurement)."""
        with self.http.stream("POST", f"{self.api_base}/{endpoint}", json=body) as reply:
            yield parse_events(reply.iter_bytes())

    def stream_all(self, endpoint: str, body: dict[str, Any]) -> Stream:
        """Send a streaming request (``endpoint``: "completions" or "chat/completions") and read
        every event."""
        body = {**body, "stream": True}
        with self.http.stream("POST", f"{self.api_base}/{endpoint}", json=body) as reply:
            result = Stream(reply)
            if reply.status != 200:
                reply.read()
                return result
            for event in parse_events(reply.iter_bytes(), result.framing):
                result.events.append(event)
                if result.done:
                    result.after_done.append(event)
                    continue
                if event.data == DONE:
                    result.done = True
                    continue
                try:
                    chunk = json.loads(event.data)
                except ValueError:
                    result.bad_json.append(event.data)
                    continue
                if isinstance(chunk, dict):
                    result.chunks.append(chunk)
                else:
                    result.bad_json.append(event.data)
            return result
