"""OpenAI completions: prompt forms, max_tokens, stop, echo, n, seed, temperature 0, usage and
finish_reason, for every generative task the target serves."""

from __future__ import annotations

from typing import Any

import pytest

from servegate.checks import expect, expect_model, expect_status
from servegate.protocols.http import Reply
from servegate.protocols.openai import Completion, OpenAIClient
from servegate.targets import ModelInfo
from servegate.tasks import examples

GENERATIVE_TASKS = ["text-generation", "text2text-generation"]
#: small, so that any model reaches it and the suite stays fast on real models
MAX_TOKENS = 6
#: a prompt of token ids; small ids exist in every vocabulary
TOKEN_IDS = [5, 6, 7, 8]


def complete(
    openai_client: OpenAIClient, model: ModelInfo, rule: str, **params: Any
) -> tuple[Completion, Reply]:
    """A completion at temperature 0 (greedy) that must answer 200 with a text_completion."""
    body = {
        "model": model.name,
        "prompt": examples.PROMPT,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        **params,
    }
    reply = openai_client.completions(body)
    expect_status(reply, 200, rule)
    completion = expect_model(Completion, reply.json(), rule, reply)
    expect(completion.object == "text_completion", rule, f"object {completion.object!r}", reply)
    return completion, reply


def expect_usage_adds_up(usage: Any, reply: Reply, max_tokens: int | None, choices: int) -> None:
    """usage: present, total = prompt + completion, completion within max_tokens per choice."""
    expect(usage is not None, "a completion reports usage", "no usage", reply)
    rule = "usage.total_tokens = prompt_tokens + completion_tokens"
    completion_tokens = usage.completion_tokens or 0
    expect(
        usage.total_tokens == usage.prompt_tokens + completion_tokens,
        rule,
        f"{usage.total_tokens} != {usage.prompt_tokens} + {usage.completion_tokens}",
        reply,
    )
    expect(
        usage.prompt_tokens > 0,
        "usage.prompt_tokens counts the prompt",
        f"prompt_tokens {usage.prompt_tokens}",
        reply,
    )
    if max_tokens is not None:
        expect(
            completion_tokens <= max_tokens * choices,
            "usage.completion_tokens <= max_tokens for each choice",
            f"completion_tokens {completion_tokens} for {choices} choice(s) of at most "
            f"{max_tokens} tokens",
            reply,
        )


@pytest.mark.features("openai")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_returns_a_text_completion(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """A string prompt answers a text_completion with one choice (index 0) of text, the model's
    name, and a finish_reason of stop or length."""
    rule = "a completion returns 200 and a text_completion object"
    completion, reply = complete(openai_client, task_model, rule)
    expect(
        completion.model == task_model.name,
        "a completion names the model it used",
        f"model {completion.model!r}",
        reply,
    )
    expect(
        [c.index for c in completion.choices] == [0],
        "n defaults to one choice, index 0",
        f"choice indexes {[c.index for c in completion.choices]}",
        reply,
    )
    expect(
        completion.choices[0].finish_reason in ("stop", "length"),
        "finish_reason is stop or length",
        f"finish_reason {completion.choices[0].finish_reason!r}",
        reply,
    )


@pytest.mark.features("openai")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_usage_adds_up(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """usage.total_tokens = prompt_tokens + completion_tokens, and completion_tokens is at most
    max_tokens."""
    completion, reply = complete(openai_client, task_model, "a completion returns 200")
    expect_usage_adds_up(completion.usage, reply, MAX_TOKENS, 1)


@pytest.mark.features("openai")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_prompt_list_gives_one_choice_per_prompt(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """A list of prompts answers one choice per prompt, indexes 0..n-1 in prompt order."""
    rule = "a list of prompts returns one choice per prompt"
    completion, reply = complete(
        openai_client, task_model, rule, prompt=[examples.PROMPT, examples.TEXT2TEXT]
    )
    indexes = sorted(c.index for c in completion.choices)
    expect(indexes == [0, 1], rule, f"choice indexes {indexes}", reply)


@pytest.mark.features("openai")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_accepts_token_ids(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """A prompt of token ids is accepted, and usage.prompt_tokens counts exactly those ids."""
    rule = "a prompt of token ids returns a completion counting those tokens"
    completion, reply = complete(openai_client, task_model, rule, prompt=TOKEN_IDS)
    expect(len(completion.choices) == 1, rule, f"{len(completion.choices)} choices", reply)
    usage = completion.usage
    expect(
        usage is not None and usage.prompt_tokens == len(TOKEN_IDS),
        rule,
        f"prompt_tokens {usage.prompt_tokens if usage else None}, sent {len(TOKEN_IDS)} ids",
        reply,
    )


@pytest.mark.features("openai")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_finish_reason_length_when_max_tokens_is_reached(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """finish_reason is "length" when generation used all of max_tokens, "stop" when it ended
    earlier."""
    completion, reply = complete(
        openai_client, task_model, "a completion returns 200", max_tokens=2
    )
    usage = completion.usage
    expect(
        usage is not None and usage.completion_tokens is not None,
        "a completion reports usage.completion_tokens",
        "none",
        reply,
    )
    assert usage is not None and usage.completion_tokens is not None
    wanted = "length" if usage.completion_tokens >= 2 else "stop"
    got = completion.choices[0].finish_reason
    expect(
        got == wanted,
        "finish_reason is length when max_tokens is reached, else stop",
        f"finish_reason {got!r} after {usage.completion_tokens} of 2 tokens",
        reply,
    )


def _stop_word(text: str) -> str | None:
    words = text.split()
    return words[1] if len(words) > 1 else (words[0] if words else None)


@pytest.mark.features("openai")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_stop_sequence_ends_the_text(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """With a stop sequence taken from the greedy text, the text ends before its first
    occurrence, does not contain it, and finish_reason is "stop"."""
    free, free_reply = complete(openai_client, task_model, "a completion returns 200")
    text = free.choices[0].text
    stop = _stop_word(text)
    expect(stop is not None, "a greedy completion generates text", f"text {text!r}", free_reply)
    assert stop is not None
    rule = "generation stops before the stop sequence, which is not returned"
    stopped, reply = complete(openai_client, task_model, rule, stop=[stop])
    got = stopped.choices[0].text
    expected = text[: text.find(stop)]
    expect(stop not in got, rule, f"text {got!r} contains the stop sequence {stop!r}", reply)
    expect(
        got == expected,
        rule,
        f"text {got!r}, expected {expected!r} (the greedy text {text!r} up to {stop!r})",
        reply,
    )
    expect(
        stopped.choices[0].finish_reason == "stop",
        "finish_reason is stop when a stop sequence ended generation",
        f"finish_reason {stopped.choices[0].finish_reason!r}",
        reply,
    )


@pytest.mark.features("openai")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_echo_returns_the_prompt_first(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """echo: true returns the prompt followed by the same completion as without echo."""
    plain, _ = complete(openai_client, task_model, "a completion returns 200")
    rule = "echo returns the prompt followed by the completion"
    echoed, reply = complete(openai_client, task_model, rule, echo=True)
    expected = examples.PROMPT + plain.choices[0].text
    expect(
        echoed.choices[0].text == expected,
        rule,
        f"text {echoed.choices[0].text!r}, expected {expected!r}",
        reply,
    )


@pytest.mark.features("openai")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_n_returns_n_choices(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """n: 2 answers two choices with indexes 0 and 1."""
    rule = "n choices are returned, indexes 0..n-1"
    completion, reply = complete(openai_client, task_model, rule, n=2)
    indexes = sorted(c.index for c in completion.choices)
    expect(indexes == [0, 1], rule, f"choice indexes {indexes}", reply)


@pytest.mark.features("openai")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_temperature_zero_is_deterministic(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """The same request at temperature 0 answers the same text twice."""
    first, _ = complete(openai_client, task_model, "a completion returns 200")
    second, reply = complete(openai_client, task_model, "a completion returns 200")
    expect(
        first.choices[0].text == second.choices[0].text,
        "temperature 0 (greedy) completions are deterministic",
        f"{first.choices[0].text!r} then {second.choices[0].text!r}",
        reply,
    )


@pytest.mark.features("openai")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_seed_repeats_sampling(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """The same seed at temperature 1 samples the same text twice."""
    first, _ = complete(
        openai_client, task_model, "a completion returns 200", temperature=1.0, seed=1234
    )
    second, reply = complete(
        openai_client, task_model, "a completion returns 200", temperature=1.0, seed=1234
    )
    expect(
        first.choices[0].text == second.choices[0].text,
        "a seed makes sampling repeatable",
        f"{first.choices[0].text!r} then {second.choices[0].text!r}",
        reply,
    )
