"""OpenAI streaming (server-sent events) for completions and chat: the framing, the chunk
objects, one finish_reason per choice in its last chunk and the include_usage chunk; the role in
the first chat delta (hardening) and the same text as without streaming (for a server that
promises determinism).

openapi.yaml, ``stream``: "tokens will be sent as data-only server-sent events as they become
available, with the stream terminated by a `data: [DONE]` message". The stream is read as the
HTML standard's event stream (servegate.protocols.sse): comments such as ``: keep-alive`` are
legal and ignored."""

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
        COMPLETIONS,
        marks=pytest.mark.features("openai", "openai-completions", "openai-stream"),
        id="completions",
    ),
    pytest.param(
        CHAT, marks=pytest.mark.features("openai", "openai-chat", "openai-stream"), id="chat"
    ),
]
CHUNK_MODELS = {COMPLETIONS: CompletionChunk, CHAT: ChatCompletionChunk}
CHUNK_OBJECTS = {COMPLETIONS: "text_completion", CHAT: "chat.completion.chunk"}
#: the finish_reason enums of the completion and chat chunk choices
FINISH_REASONS = {
    COMPLETIONS: ("stop", "length", "content_filter"),
    CHAT: ("stop", "length", "tool_calls", "content_filter", "function_call"),
}


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
    """A request with stream: true answers 200 with Content-Type text/event-stream.

    openapi.yaml: "tokens will be sent as data-only server-sent events"; the HTML standard
    serves an event stream "using the text/event-stream MIME type"."""
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
    """Every event carries data only, one JSON object (or [DONE]), ended by a blank line;
    comment lines are allowed.

    openapi.yaml: "data-only server-sent events". HTML standard: "Lines must be separated by
    either a U+000D CARRIAGE RETURN U+000A LINE FEED (CRLF) character pair, a single U+000A
    LINE FEED (LF) character, or a single U+000D CARRIAGE RETURN (CR) character"; a blank line
    dispatches the event; an event the stream ends inside "is not dispatched"; "Lines
    starting with a U+003A COLON character (:)" are comments."""
    stream = _ok(streamed(endpoint, task_model))
    rule = "every event is data: <json> ended by a blank line"
    expect(stream.events, rule, "no events", stream)
    expect(
        not stream.framing.unterminated,
        rule,
        f"the stream ends inside an event: {stream.framing.incomplete[:3]}",
        stream,
    )
    expect(
        not stream.framing.unknown_fields,
        rule,
        f"lines that are not data fields: {stream.framing.unknown_fields[:3]}",
        stream,
    )
    expect(
        not stream.bad_json,
        rule,
        f"data that is not one JSON object: {stream.bad_json[:2]}",
        stream,
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_stream_ends_with_done(
    streamed: Callable[..., Stream], endpoint: str, task: str, task_model: ModelInfo
) -> None:
    """The stream's last event is `data: [DONE]`, after at least one chunk.

    openapi.yaml: "with the stream terminated by a `data: [DONE]` message"."""
    stream = _ok(streamed(endpoint, task_model))
    rule = "the stream ends with data: [DONE]"
    unended = (
        f" (the stream ends inside an event: {stream.framing.incomplete[:2]})"
        if stream.framing.unterminated
        else ""
    )
    expect(stream.done, rule, "no data: [DONE] event" + unended, stream)
    expect(not stream.after_done, rule, f"{len(stream.after_done)} event(s) after [DONE]", stream)
    expect(stream.chunks, rule, "no chunk before [DONE]", stream)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_stream_chunks_are_chunk_objects(
    streamed: Callable[..., Stream], endpoint: str, task: str, task_model: ModelInfo
) -> None:
    """Every chunk is a text_completion (completions) or chat.completion.chunk (chat) object,
    all with the stream's one id.

    openapi.yaml: chat chunks' ``object`` "is always `chat.completion.chunk`" and their ``id``:
    "Each chunk has the same ID"; completions: "both the streamed and non-streamed response
    objects share the same shape", ``object`` "always "text_completion"", ``id`` "A unique
    identifier for the completion"."""
    stream = _ok(streamed(endpoint, task_model))
    wanted = CHUNK_OBJECTS[endpoint]
    rule = f"every chunk is a {wanted} object with the stream's id"
    ids = set()
    for chunk in stream.chunks:
        parsed = expect_model(CHUNK_MODELS[endpoint], chunk, rule, stream)
        expect(parsed.object == wanted, rule, f"object {parsed.object!r}", stream)
        ids.add(parsed.id)
    expect(len(ids) <= 1, rule, f"{len(ids)} different ids", stream)


@pytest.mark.features("openai", "openai-chat", "openai-stream", "hardening")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_chat_stream_first_delta_carries_the_role(
    streamed: Callable[..., Stream], task: str, task_model: ModelInfo
) -> None:
    """Hardening: the first chunk of each chat choice has delta.role "assistant", as OpenAI's
    service sends it and clients that rebuild the message expect.

    Not required: ChatCompletionStreamResponseDelta has no required field, ``role`` included."""
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
    """Each choice gets a finish_reason exactly once, in the last chunk carrying that choice,
    from the schema's enum.

    openapi.yaml: a chunk choice's finish_reason (nullable) is "The reason the model stopped
    generating tokens": set while tokens still follow, it would say generation stopped when it
    did not, and a choice whose generation ended says why."""
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
        expect(got[0][1] in FINISH_REASONS[endpoint], rule, f"finish_reason {got[0][1]!r}", stream)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.features("openai-deterministic")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_stream_text_equals_the_non_streamed_text(
    openai_client: OpenAIClient,
    streamed: Callable[..., Stream],
    endpoint: str,
    task: str,
    task_model: ModelInfo,
) -> None:
    """On a server that promises determinism: at temperature 0 the concatenated stream is the
    text of the same request unstreamed.

    openapi.yaml promises no repeatable text ("Determinism is not guaranteed"): the promise is
    the server's (openai-deterministic, declared by the user)."""
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


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.features("openai-stream-usage")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_stream_include_usage_sends_one_final_usage_chunk(
    streamed: Callable[..., Stream], endpoint: str, task: str, task_model: ModelInfo
) -> None:
    """With stream_options.include_usage the last chunk before [DONE] has empty choices and
    usage (total = prompt + completion); no other chunk carries usage.

    openapi.yaml, include_usage: "an additional chunk will be streamed before the `data:
    [DONE]` message. The `usage` field on this chunk shows the token usage statistics for the
    entire request, and the `choices` field will always be an empty array. All other chunks
    will also include a `usage` field, but with a null value." """
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
