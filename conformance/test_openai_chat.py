"""OpenAI chat completions: roles, the assistant message, max_tokens and max_completion_tokens
(openapi.yaml, ``POST /chat/completions``). ``usage`` is optional in
CreateChatCompletionResponse: the token bounds are judged when it is reported."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.test_openai_completions import GENERATIVE_TASKS, MAX_TOKENS, expect_usage_adds_up
from servegate.checks import expect, expect_model, expect_status
from servegate.protocols.http import Reply
from servegate.protocols.openai import ChatCompletion, OpenAIClient
from servegate.targets import ModelInfo
from servegate.tasks import examples

USER = [{"role": "user", "content": examples.PROMPT}]
#: CreateChatCompletionResponse choices[].finish_reason's enum
FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "function_call")
#: short conversations, so that they fit the small context of tiny models
CONVERSATIONS = {
    "system-user": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."}],
    "user-assistant": [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello."},
    ],
}


def chat(
    openai_client: OpenAIClient, model: ModelInfo, rule: str, **params: Any
) -> tuple[ChatCompletion, Reply]:
    """A chat completion at temperature 0 that must answer 200 with a chat.completion."""
    body = {
        "model": model.name,
        "messages": USER,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        **params,
    }
    reply = openai_client.chat(body)
    expect_status(reply, 200, rule)
    completion = expect_model(ChatCompletion, reply.json(), rule, reply)
    expect(completion.object == "chat.completion", rule, f"object {completion.object!r}", reply)
    expect(completion.choices, rule, "no choices", reply)
    return completion, reply


@pytest.mark.features("openai", "openai-chat")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_chat_returns_an_assistant_message(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """A chat completion answers one choice whose message has role "assistant" and text
    content, and a finish_reason of the schema's enum.

    openapi.yaml: CreateChatCompletionResponse ``object`` "always `chat.completion`";
    ChatCompletionResponseMessage requires ``role`` (enum: assistant) and ``content`` (string or
    null; text here, as no tool is offered); ``n`` defaults to 1."""
    rule = "a chat completion returns an assistant message"
    completion, reply = chat(openai_client, task_model, rule)
    expect(
        [c.index for c in completion.choices] == [0],
        rule,
        f"choice indexes {[c.index for c in completion.choices]}",
        reply,
    )
    message = completion.choices[0].message
    expect(message.role == "assistant", rule, f"role {message.role!r}", reply)
    expect(isinstance(message.content, str), rule, f"content {message.content!r}", reply)
    expect(
        completion.choices[0].finish_reason in FINISH_REASONS,
        f"finish_reason is one of {', '.join(FINISH_REASONS)}",
        f"finish_reason {completion.choices[0].finish_reason!r}",
        reply,
    )


@pytest.mark.features("openai", "openai-chat")
@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_chat_accepts_system_user_and_assistant_roles(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo, conversation: str
) -> None:
    """Conversations with system, user and assistant messages are answered.

    openapi.yaml: messages is "A list of messages comprising the conversation so far", whose
    message types include system, user and assistant messages."""
    chat(
        openai_client,
        task_model,
        "system, user and assistant messages are accepted",
        messages=CONVERSATIONS[conversation],
    )


@pytest.mark.features("openai", "openai-chat")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_chat_respects_max_tokens(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """When usage is reported, max_tokens bounds usage.completion_tokens.

    openapi.yaml: max_tokens "The maximum number of tokens that can be generated in the chat
    completion" (deprecated in favour of max_completion_tokens, still in the schema)."""
    completion, reply = chat(
        openai_client, task_model, "a chat completion returns 200", max_tokens=3
    )
    expect_usage_adds_up(completion.usage, reply, 3, 1)


@pytest.mark.features("openai", "openai-chat")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_chat_respects_max_completion_tokens(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """When usage is reported, max_completion_tokens bounds usage.completion_tokens.

    openapi.yaml: max_completion_tokens "An upper bound for the number of tokens that can be
    generated for a completion"."""
    body = {
        "model": task_model.name,
        "messages": USER,
        "max_completion_tokens": 3,
        "temperature": 0,
    }
    rule = "max_completion_tokens bounds the completion"
    reply = openai_client.chat(body)
    expect_status(reply, 200, rule)
    completion = expect_model(ChatCompletion, reply.json(), rule, reply)
    expect_usage_adds_up(completion.usage, reply, 3, 1)
