"""OpenAI streaming (server-sent events) for completions and chat: the framing, the chunk
objects, the role in the first chat delta, one finish_reason per choice in its last chunk, the
same text as without streaming, and the include_usage chunk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conformance.test_openai_completions import GENERATIVE_TASKS, MAX_TOKENS
from servegate.checks import expect, expect_model
from servegate.protocols.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
    OpenAIClient,
    Stream,
    finish_reasons,
    stream_texts,
)
from servegate.targets import ModelInfo
from servegate.tasks import examples

COMPLETIONS = "completions"
CHAT = "chat/completions"
ENDPOINTS = [
    pytest.param(
        COMPLETIONS, marks=pytest.mark.features("openai", "openai-stream"), id="completions"
    ),
    pytest.param(
        CHAT, marks=pytest.mark.features("openai", "openai-chat", "openai-stream"), id="chat"
    ),
]
CHUNK_MODELS = {COMPLETIONS: CompletionChunk, CHAT: ChatCompletionChunk}
CHUNK_OBJECTS = {COMPLETIONS: "text_completion", CHAT: "chat.completion.chunk"}


def request_body(endpoint: str, model: ModelInfo, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model.name, "max_tokens": MAX_TOKENS, "temperature": 0}
    if endpoint == CHAT:
        body["messages"] = [{"role": "user", "content": examples.PROMPT}]
    else:
        body["prompt"] = examples.PROMPT
    return {**body, **params}


@pytest.fixture(scope="module")
def streamed(openai_client: OpenAIClient) -> Iterator[Callable[..., Stream]]:
    """Streams read once per module and shared by the checks that judge them."""
    cache: dict[tuple[str, str, str], Stream] = {}

    def get(endpoint: str, model: ModelInfo, **params: Any) -> Stream:
        key = (endpoint, model.name, repr(sorted(params.items())))
        if key not in cache:
            cache[key] = openai_client.stream_all(endpoint, request_body(endpoint, model, **params))
        return cache[key]

    yield get


def _ok(stream: Stream) -> Stream:
    expect(
        stream.reply.status == 200,
        "a streamed request returns 200",
        f"status {stream.reply.status}",
        stream,
    )
    return stream


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_stream_is_text_event_stream(
    streamed: Callable[..., Stream], endpoint: str, task: str, task_model: ModelInfo
) -> None:
    """A request with stream: true answers 200 with Content-Type text/event-stream."""
    stream = _ok(streamed(endpoint, task_model))
    ctype = stream.reply.content_type
    expect(
        ctype == "text/event-stream",
        "a stream is sent as text/event-stream",
        f"content type {ctype!r}",
        stream,
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_stream_events_are_data_lines_each_ended_by_a_blank_line(
    streamed: Callable[..., Stream], endpoint: str, task: str, task_model: ModelInfo
) -> None:
    """Every event is one `data: <json>` line followed by a blank line."""
    stream = _ok(streamed(endpoint, task_model))
    rule = "every event is data: <json> followed by a blank line"
    expect(stream.events, rule, "no events", stream)
    expect(
        not stream.framing.unterminated, rule, "the last event is not ended by a blank line", stream
    )
    expect(
        not stream.framing.malformed_lines,
        rule,
        f"lines that are not SSE fields: {stream.framing.malformed_lines[:3]}",
        stream,
    )
    expect(
        not stream.bad_json,
        rule,
        f"data that is not one JSON object: {stream.bad_json[:2]}",
        stream,
    )
    for event in stream.events:
        data_lines = [line for line in event.lines if line.startswith("data")]
        expect(
            len(data_lines) == 1,
            rule,
            f"event of {len(data_lines)} data lines: {event.lines[:4]}",
            stream,
        )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_stream_ends_with_done(
    streamed: Callable[..., Stream], endpoint: str, task: str, task_model: ModelInfo
) -> None:
    """The stream's last event is `data: [DONE]`, after at least one chunk."""
    stream = _ok(streamed(endpoint, task_model))
    rule = "the stream ends with data: [DONE]"
    expect(stream.done, rule, "no data: [DONE] event", stream)
    expect(not stream.after_done, rule, f"{len(stream.after_done)} event(s) after [DONE]", stream)
    expect(stream.chunks, rule, "no chunk before [DONE]", stream)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_stream_chunks_are_chunk_objects(
    streamed: Callable[..., Stream], endpoint: str, task: str, task_model: ModelInfo
) -> None:
    """Every chunk is a text_completion (completions) or chat.completion.chunk (chat) object,
    all with the stream's one id."""
    stream = _ok(streamed(endpoint, task_model))
    wanted = CHUNK_OBJECTS[endpoint]
    rule = f"every chunk is a {wanted} object with the stream's id"
    ids = set()
    for chunk in stream.chunks:
        parsed = expect_model(CHUNK_MODELS[endpoint], chunk, rule, stream)
        expect(parsed.object == wanted, rule, f"object {parsed.object!r}", stream)
        ids.add(parsed.id)
    expect(len(ids) <= 1, rule, f"{len(ids)} different ids", stream)


@pytest.mark.features("openai", "openai-chat", "openai-stream")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_chat_stream_first_delta_carries_the_role(
    streamed: Callable[..., Stream], task: str, task_model: ModelInfo
) -> None:
    """The first chunk of each chat choice has delta.role "assistant"."""
    stream = _ok(streamed(CHAT, task_model))
    rule = "the first delta of a chat stream carries role assistant"
    seen: set[int] = set()
    for chunk in stream.chunks:
        parsed = expect_model(ChatCompletionChunk, chunk, rule, stream)
        for choice in parsed.choices:
            if choice.index not in seen:
                seen.add(choice.index)
                expect(
                    choice.delta.role == "assistant",
                    rule,
                    f"choice {choice.index}: first delta {choice.delta.model_dump()}",
                    stream,
                )
    expect(seen, rule, "no choice in any chunk", stream)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_stream_finish_reason_once_per_choice_in_its_last_chunk(
    streamed: Callable[..., Stream], endpoint: str, task: str, task_model: ModelInfo
) -> None:
    """Each choice gets a finish_reason exactly once, in the last chunk carrying that choice."""
    stream = _ok(streamed(endpoint, task_model))
    rule = "finish_reason appears exactly once per choice, in its last chunk"
    reasons = finish_reasons(stream.chunks)
    last: dict[int, int] = {}
    for pos, chunk in enumerate(stream.chunks):
        for choice in chunk.get("choices") or []:
            last[choice.get("index", -1)] = pos
    expect(last, rule, "no choice in any chunk", stream)
    for index, final in last.items():
        got = reasons.get(index, [])
        expect(
            len(got) == 1,
            rule,
            f"choice {index}: finish_reason in {len(got)} of {len(stream.chunks)} chunks "
            f"({[r for _, r in got][:5]})",
            stream,
        )
        expect(
            got[0][0] == final,
            rule,
            f"choice {index}: finish_reason in chunk {got[0][0]}, its last chunk is {final}",
            stream,
        )
        expect(got[0][1] in ("stop", "length"), rule, f"finish_reason {got[0][1]!r}", stream)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_stream_text_equals_the_non_streamed_text(
    openai_client: OpenAIClient,
    streamed: Callable[..., Stream],
    endpoint: str,
    task: str,
    task_model: ModelInfo,
) -> None:
    """At temperature 0 the concatenated stream is the text of the same request unstreamed."""
    stream = _ok(streamed(endpoint, task_model))
    body = request_body(endpoint, task_model)
    if endpoint == CHAT:
        reply = openai_client.chat(body)
        whole = expect_model(ChatCompletion, reply.json(), "a chat completion", reply)
        text = whole.choices[0].message.content or ""
    else:
        reply = openai_client.completions(body)
        plain = expect_model(Completion, reply.json(), "a completion", reply)
        text = plain.choices[0].text
    streamed_text = stream_texts(stream.chunks).get(0, "")
    expect(
        streamed_text == text,
        "at temperature 0 the concatenated stream equals the non-streamed text",
        f"streamed {streamed_text!r}, unstreamed {text!r}",
        stream,
    )


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param(
            COMPLETIONS,
            id="completions",
            marks=pytest.mark.features("openai", "openai-stream", "openai-stream-usage"),
        ),
        pytest.param(
            CHAT,
            id="chat",
            marks=pytest.mark.features(
                "openai", "openai-chat", "openai-stream", "openai-stream-usage"
            ),
        ),
    ],
)
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_stream_include_usage_sends_one_final_usage_chunk(
    streamed: Callable[..., Stream], endpoint: str, task: str, task_model: ModelInfo
) -> None:
    """With stream_options.include_usage the last chunk before [DONE] has empty choices and
    usage (total = prompt + completion); no other chunk carries usage."""
    stream = _ok(streamed(endpoint, task_model, stream_options={"include_usage": True}))
    rule = "include_usage adds one final chunk with empty choices and the usage"
    expect(stream.chunks, rule, "no chunks", stream)
    final = stream.chunks[-1]
    expect(
        final.get("choices") == [], rule, f"last chunk's choices {final.get('choices')!r}", stream
    )
    usage = final.get("usage")
    expect(isinstance(usage, dict), rule, f"last chunk's usage {usage!r}", stream)
    assert isinstance(usage, dict)
    expect(
        usage.get("total_tokens")
        == usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0),
        rule,
        f"usage {usage}",
        stream,
    )
    others = [c for c in stream.chunks[:-1] if c.get("usage") is not None]
    expect(not others, rule, f"{len(others)} earlier chunk(s) carry usage", stream)
