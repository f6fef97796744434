"""The OpenAI API (completions, chat completions, embeddings, models) over REST and SSE."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

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
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class OpenAIError(BaseModel):
    """The error envelope: ``{"error": {"message", "type", "param", "code"}}``."""

    model_config = ConfigDict(extra="forbid")
    error: OpenAIErrorBody


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
    #: data payloads that were not JSON
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
        return self.http.get(f"{self.api_base}/models/{model}")

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
                    result.chunks.append(json.loads(event.data))
                except ValueError:
                    result.bad_json.append(event.data)
            return result
