"""OpenAI errors: a refused request answers the error envelope
``{"error": {"message", "type", "param", "code"}}`` (core); bad requests get a 4xx, not a 5xx,
and the server keeps serving (hardening).

openapi.yaml documents ErrorResponse (``error``, an Error requiring ``type``, ``message``,
``param`` and ``code``) and, for these routes, no status but 200 and 429: which status a bad
request gets is not in the spec, so "4xx, never 5xx" is the ``hardening`` profile's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from servegate.checks import expect, expect_model, expect_status
from servegate.protocols.http import Reply
from servegate.protocols.openai import OpenAIClient, OpenAIError
from servegate.targets import ModelInfo, Target
from servegate.unsupported import unsupported

GENERATIVE = ("text-generation", "text2text-generation")
ENCODER = ("text-classification", "token-classification", "fill-mask", "feature-extraction")
UNKNOWN_MODEL = "servegate-no-such-model"
#: far beyond any model's context
HUGE = 10**9
HELLO = [{"role": "user", "content": "Hello"}]


@dataclass(frozen=True)
class BadRequest:
    id: str
    endpoint: str
    #: the body; "{generative}" / "{encoder}" stand for a model of that kind
    body: dict[str, Any] | None = None
    raw: bytes | None = None
    method: str = "POST"
    features: tuple[str, ...] = field(default=("openai", "openai-completions"))


CASES = [
    BadRequest(
        "completion-negative-max-tokens",
        "completions",
        {"model": "{generative}", "prompt": "Hello", "max_tokens": -1},
    ),
    BadRequest(
        "completion-unknown-model",
        "completions",
        {"model": UNKNOWN_MODEL, "prompt": "Hello", "max_tokens": 2},
    ),
    BadRequest(
        "completion-encoder-model",
        "completions",
        {"model": "{encoder}", "prompt": "Hello", "max_tokens": 2},
    ),
    BadRequest("completion-missing-model", "completions", {"prompt": "Hello"}),
    BadRequest(
        "completion-n-over-limit",
        "completions",
        {"model": "{generative}", "prompt": "Hello", "max_tokens": 2, "n": 1000},
    ),
    BadRequest(
        "completion-negative-temperature",
        "completions",
        {"model": "{generative}", "prompt": "Hello", "max_tokens": 2, "temperature": -1},
    ),
    BadRequest(
        "completion-max-tokens-not-a-number",
        "completions",
        {"model": "{generative}", "prompt": "Hello", "max_tokens": "many"},
    ),
    BadRequest(
        "completion-beyond-context",
        "completions",
        {"model": "{generative}", "prompt": "Hello", "max_tokens": HUGE},
    ),
    BadRequest("completion-malformed-json", "completions", raw=b'{"model": "x", "prompt": '),
    BadRequest(
        "chat-empty-messages",
        "chat/completions",
        {"model": "{generative}", "messages": []},
        features=("openai", "openai-chat"),
    ),
    BadRequest(
        "chat-bad-role",
        "chat/completions",
        {"model": "{generative}", "messages": [{"role": "wizard", "content": "Hi"}]},
        features=("openai", "openai-chat"),
    ),
    BadRequest(
        "chat-negative-max-tokens",
        "chat/completions",
        {"model": "{generative}", "messages": HELLO, "max_tokens": -1},
        features=("openai", "openai-chat"),
    ),
    BadRequest(
        "chat-n-over-limit",
        "chat/completions",
        {"model": "{generative}", "messages": HELLO, "max_tokens": 2, "n": 1000},
        features=("openai", "openai-chat"),
    ),
    BadRequest(
        "chat-unknown-model",
        "chat/completions",
        {"model": UNKNOWN_MODEL, "messages": HELLO},
        features=("openai", "openai-chat"),
    ),
    BadRequest(
        "embeddings-unknown-model",
        "embeddings",
        {"model": UNKNOWN_MODEL, "input": "Hello"},
        features=("openai-embeddings",),
    ),
    BadRequest(
        "embeddings-missing-input",
        "embeddings",
        {"model": "{embedding}"},
        features=("openai-embeddings",),
    ),
    BadRequest(
        "model-retrieve-unknown", f"models/{UNKNOWN_MODEL}", method="GET", features=("openai",)
    ),
]
PARAMS = [pytest.param(c, id=c.id, marks=pytest.mark.features(*c.features)) for c in CASES]
HARDENING_PARAMS = [
    pytest.param(c, id=c.id, marks=pytest.mark.features(*c.features, "hardening")) for c in CASES
]


def _model_of(target: Target, tasks: tuple[str, ...], kind: str) -> ModelInfo:
    for task in tasks:
        models = target.models_for_task(task)
        if models:
            return models[0]
    unsupported(
        target, [f"task-{t}" for t in tasks], f"serves no {kind} model ({', '.join(tasks)})"
    )


def _fill(value: Any, target: Target) -> Any:
    if value == "{generative}":
        return _model_of(target, GENERATIVE, "generative").name
    if value == "{encoder}":
        return _model_of(target, ENCODER, "encoder").name
    if value == "{embedding}":
        return _model_of(target, ("feature-extraction",), "embedding").name
    return value


def send(openai_client: OpenAIClient, target: Target, case: BadRequest) -> Reply:
    """Send a bad request as the case says, with its model placeholders filled in."""
    if case.method == "GET":
        return openai_client.request("GET", case.endpoint)
    if case.raw is not None:
        return openai_client.request(
            "POST", case.endpoint, content=case.raw, headers={"content-type": "application/json"}
        )
    body = {key: _fill(value, target) for key, value in (case.body or {}).items()}
    return openai_client.request("POST", case.endpoint, json=body)


@pytest.mark.parametrize("case", HARDENING_PARAMS)
def test_openai_bad_request_is_a_4xx(
    openai_client: OpenAIClient, target: Target, case: BadRequest
) -> None:
    """Hardening: a request with a bad parameter, an unknown or unfit model or unreadable JSON
    answers 4xx, not 5xx, and the server keeps serving.

    openapi.yaml gives these routes no error status but 429; a client's mistake answered as a
    server fault is what this profile refuses."""
    reply = send(openai_client, target, case)
    expect(
        400 <= reply.status < 500,
        "a bad OpenAI request answers 4xx, not 5xx",
        f"status {reply.status}",
        reply,
    )
    expect_status(
        openai_client.models(),
        200,
        "the server keeps serving after a bad request (GET {base}/models)",
    )


@pytest.mark.parametrize("case", PARAMS)
def test_openai_error_body_is_the_error_envelope(
    openai_client: OpenAIClient, target: Target, case: BadRequest
) -> None:
    """A refused request answers {"error": {"message", "type", "param", "code"}}; extra fields
    are allowed. A request the server accepts (a 2xx) has no error body to judge.

    openapi.yaml: ErrorResponse requires ``error``; Error requires ``type``, ``message``,
    ``param`` and ``code`` (``param`` and ``code`` string or null)."""
    reply = send(openai_client, target, case)
    rule = 'an OpenAI error body is {"error": {"message", "type", "param", "code"}}'
    if reply.status < 400:
        return  # accepted: whether it should have been is the hardening profile's question
    body = reply.json()
    error = expect_model(OpenAIError, body, rule, reply).error
    expect(error.message, rule, "empty error message", reply)
    expect(
        isinstance(body["error"], dict) and {"param", "code"} <= set(body["error"]),
        rule,
        "error lacks param or code (null when not applicable)",
        reply,
    )
