"""Interoperability: the official ``openai`` Python client completes, chats, streams and embeds
against the target (base_url = target + OpenAI base). The client is generated from openapi.yaml:
a server it cannot talk to does not answer what the spec describes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from conformance.test_openai_completions import GENERATIVE_TASKS, MAX_TOKENS
from servegate.checks import expect
from servegate.protocols.http import tls_verify
from servegate.targets import ModelInfo, Target
from servegate.tasks import examples

RULE = "the official openai client works against the target"


@pytest.fixture(scope="module")
def client(target: Target) -> Iterator[openai.OpenAI]:
    conn = target.connection
    http = httpx.Client(verify=tls_verify(conn.verify), timeout=conn.timeout)
    headers = dict(conn.headers)
    # the client insists on a key; a target without authentication ignores it
    api_key = headers.pop("Authorization", "").removeprefix("Bearer ").strip() or "unused"
    sdk = openai.OpenAI(
        base_url=target.http_url + target.openai_base,
        api_key=api_key,
        default_headers=headers,
        http_client=http,
        max_retries=0,
    )
    yield sdk
    sdk.close()


def _call(what: str, fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except openai.OpenAIError as exc:
        expect(False, RULE, f"{what} raised {type(exc).__name__}: {exc}")


@pytest.mark.features("openai", "openai-completions")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_openai_client_completes(client: openai.OpenAI, task: str, task_model: ModelInfo) -> None:
    """client.completions.create returns a Completion with one text choice."""
    result = _call(
        "completions.create",
        lambda: client.completions.create(
            model=task_model.name, prompt=examples.PROMPT, max_tokens=MAX_TOKENS, temperature=0
        ),
    )
    expect(
        len(result.choices) == 1 and isinstance(result.choices[0].text, str),
        RULE,
        f"completion {result!r}",
    )


@pytest.mark.features("openai", "openai-chat")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_openai_client_chats(client: openai.OpenAI, task: str, task_model: ModelInfo) -> None:
    """client.chat.completions.create returns an assistant message."""
    result = _call(
        "chat.completions.create",
        lambda: client.chat.completions.create(
            model=task_model.name,
            messages=[{"role": "user", "content": examples.PROMPT}],
            max_tokens=MAX_TOKENS,
            temperature=0,
        ),
    )
    expect(
        result.choices and result.choices[0].message.role == "assistant",
        RULE,
        f"chat completion {result!r}",
    )


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param(
            "completions",
            marks=pytest.mark.features("openai", "openai-completions", "openai-stream"),
        ),
        pytest.param("chat", marks=pytest.mark.features("openai", "openai-chat", "openai-stream")),
    ],
)
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_openai_client_streams(
    client: openai.OpenAI, endpoint: str, task: str, task_model: ModelInfo
) -> None:
    """Streamed completions and chat completions iterate to the end in the client."""

    def completion_text() -> str:
        stream = client.completions.create(
            model=task_model.name,
            prompt=examples.PROMPT,
            max_tokens=MAX_TOKENS,
            temperature=0,
            stream=True,
        )
        return "".join(c.choices[0].text for c in stream if c.choices)

    def chat_chunks() -> int:
        stream = client.chat.completions.create(
            model=task_model.name,
            messages=[{"role": "user", "content": examples.PROMPT}],
            max_tokens=MAX_TOKENS,
            temperature=0,
            stream=True,
        )
        return sum(1 for _ in stream)

    if endpoint == "completions":
        text = _call("streamed completions.create", completion_text)
        expect(isinstance(text, str), RULE, f"streamed text {text!r}")
    else:
        count = _call("streamed chat.completions.create", chat_chunks)
        expect(count, RULE, "a chat stream of no chunks")


@pytest.mark.features("openai-embeddings")
@pytest.mark.parametrize("task", ["feature-extraction"])
def test_openai_client_embeds(client: openai.OpenAI, task: str, task_model: ModelInfo) -> None:
    """client.embeddings.create returns one vector of floats per input, asked for floats and
    by the client's default (it asks for base64 and decodes it itself)."""
    inputs = [examples.EMBED, examples.SENTIMENT]
    for fmt in ("float", openai.omit):
        result = _call(
            f"embeddings.create ({fmt})",
            lambda fmt=fmt: client.embeddings.create(
                model=task_model.name, input=inputs, encoding_format=fmt
            ),
        )
        expect(
            len(result.data) == len(inputs),
            RULE,
            f"{len(result.data)} embeddings for {len(inputs)} inputs ({fmt})",
        )
        expect(
            all(
                isinstance(d.embedding, list) and d.embedding and isinstance(d.embedding[0], float)
                for d in result.data
            ),
            RULE,
            f"embeddings are not float vectors ({fmt}): {str(result.data[0])[:120]}",
        )
