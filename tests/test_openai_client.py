"""The OpenAI client's payload models and the helpers the streaming and embedding checks use."""

from __future__ import annotations

import base64
import struct
from contextlib import contextmanager

import httpx
import pytest

from servegate.protocols.openai import (
    ChatCompletionChunk,
    CompletionChunk,
    OpenAIClient,
    OpenAIError,
    chunk_text,
    decode_base64_embedding,
    finish_reasons,
    stream_texts,
)


def test_base64_embedding_decodes_little_endian_float32():
    values = [0.5, -1.25, 3.0]
    packed = base64.b64encode(struct.pack("<3f", *values)).decode()
    assert decode_base64_embedding(packed) == values


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"\x00\x01\x02").decode()])
def test_base64_embedding_refuses_what_is_not_float32(bad):
    with pytest.raises(ValueError):
        decode_base64_embedding(bad)


COMPLETION_CHUNKS = [
    {"choices": [{"index": 0, "text": " once", "finish_reason": None}]},
    {"choices": [{"index": 1, "text": " twice", "finish_reason": None}]},
    {"choices": [{"index": 0, "text": " upon", "finish_reason": "length"}]},
    {"choices": [{"index": 1, "text": "", "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}},
]
CHAT_CHUNKS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"content": None}, "finish_reason": "stop"}]},
]


def test_stream_texts_concatenate_per_choice():
    assert stream_texts(COMPLETION_CHUNKS) == {0: " once upon", 1: " twice"}
    assert stream_texts(CHAT_CHUNKS) == {0: "Hi"}


def test_chunk_text_reads_text_or_delta_content():
    assert chunk_text(COMPLETION_CHUNKS[1], 1) == " twice"
    assert chunk_text(COMPLETION_CHUNKS[1], 0) is None
    assert chunk_text(CHAT_CHUNKS[1], 0) == "Hi"


def test_finish_reasons_name_their_chunk_positions():
    assert finish_reasons(COMPLETION_CHUNKS) == {0: [(2, "length")], 1: [(3, "stop")]}
    assert finish_reasons(CHAT_CHUNKS) == {0: [(2, "stop")]}


def test_chunk_models_accept_a_final_usage_chunk_and_role_only_deltas():
    common = {"id": "x", "created": 1, "model": "m"}
    usage = CompletionChunk.model_validate(
        {**common, "object": "text_completion", **COMPLETION_CHUNKS[-1]}
    )
    assert usage.choices == [] and usage.usage is not None and usage.usage.total_tokens == 6
    first = ChatCompletionChunk.model_validate(
        {**common, "object": "chat.completion.chunk", **CHAT_CHUNKS[0]}
    )
    assert first.choices[0].delta.role == "assistant"


class _Recorder:
    """A Transport that answers 200 {} and remembers what it was asked."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes | None]] = []

    def send(self, method, url, headers, body, timeout):
        self.sent.append((method, url, body))
        return 200, httpx.Headers({"content-type": "application/json"}), b"{}"

    def stream(self, method, url, headers, body):  # pragma: no cover - not used here
        raise NotImplementedError

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("base", "prefix"), [("/v1", "/v1"), ("/openai/v1/", "/openai/v1"), ("", "")]
)
def test_requests_go_below_the_api_base(base, prefix):
    recorder = _Recorder()
    client = OpenAIClient("http://h:1", api_base=base, transport=recorder)
    client.models()
    client.model("org/model")
    client.request("POST", "chat/completions", content=b"{", headers={"content-type": "x"})
    urls = [url for _, url, _ in recorder.sent]
    assert urls == [
        f"http://h:1{prefix}/models",
        f"http://h:1{prefix}/models/org%2Fmodel",
        f"http://h:1{prefix}/chat/completions",
    ]
    assert recorder.sent[-1][2] == b"{"


def test_error_envelope_allows_extra_fields_and_requires_message_and_type():
    body = {
        "error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None},
        "request_id": "r-1",
    }
    body["error"]["status"] = 400  # vLLM adds the HTTP status
    assert OpenAIError.model_validate(body).error.message == "bad"
    with pytest.raises(ValueError):
        OpenAIError.model_validate({"error": {"message": "bad"}})


class _StreamingTransport(_Recorder):
    """Answers every stream with the given byte chunks, as a server's writes arrive."""

    def __init__(self, chunks: list[bytes]):
        super().__init__()
        self.chunks = chunks

    @contextmanager
    def stream(self, method, url, headers, body):
        chunks = self.chunks

        class _Raw:
            status_code = 200
            headers = httpx.Headers({"content-type": "text/event-stream"})

            def iter_bytes(self):
                yield from chunks

        yield _Raw()


def test_stream_all_ignores_comments_and_decodes_characters_split_across_chunks():
    event = 'data: {"choices": [{"index": 0, "text": "caf\u00e9 \u20ac"}]}\n\n'.encode()
    cut = event.index("é".encode()) + 1
    chunks = [b": keep-alive\n\n", event[:cut], event[cut:], b": ping\n\n", b"data: [DONE]\n\n"]
    client = OpenAIClient("http://h:1", transport=_StreamingTransport(chunks))
    stream = client.stream_all("completions", {"model": "m", "prompt": "p"})
    assert stream.done and not stream.bad_json and not stream.framing.unterminated
    assert stream_texts(stream.chunks) == {0: "café €"}
    assert stream.framing.comments == 2


def test_stream_all_counts_json_that_is_not_an_object_as_bad():
    chunks = [b"data: [1, 2]\n\n", b'data: {"choices": []}\n\n', b"data: [DONE]\n\n"]
    client = OpenAIClient("http://h:1", transport=_StreamingTransport(chunks))
    stream = client.stream_all("completions", {"model": "m", "prompt": "p"})
    assert stream.bad_json == ["[1, 2]"] and stream.chunks == [{"choices": []}]
