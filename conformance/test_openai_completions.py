"""OpenAI completions: prompt forms, max_tokens, stop, echo, n, usage and finish_reason, for every
generative task the target serves; seed and temperature 0 for a server that promises to repeat.

openapi.yaml marks ``POST /completions`` legacy, so its checks need the feature
``openai-completions``: a chat-only server passes the ``openai`` profile without it.
``usage`` is not among CreateCompletionResponse's required fields: the checks that read it judge
it when it is there. Determinism is not promised ("Determinism is not guaranteed"): its checks
need ``openai-deterministic``, which a user declares for a server that promises it."""

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
#: CreateCompletionResponse choices[].finish_reason: "enum: [stop, length, content_filter]"
FINISH_REASONS = ("stop", "length", "content_filter")
#: sampling for checks that must not depend on greedy decoding (vLLM refuses n > 1 greedily)
SAMPLED = 0.8
COMPLETIONS = pytest.mark.features("openai", "openai-completions")
DETERMINISTIC = pytest.mark.features("openai", "openai-completions", "openai-deterministic")


def complete(
    openai_client: OpenAIClient, model: ModelInfo, rule: str, **params: Any
) -> tuple[Completion, Reply]:
    """A completion (at temperature 0 unless ``params`` say otherwise) that must answer 200
    with a text_completion ("The object type, which is always "text_completion"")."""
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
    expect(completion.choices, rule, "no choices", reply)
    return completion, reply


def expect_usage_adds_up(usage: Any, reply: Reply, max_tokens: int | None, choices: int) -> None:
    """When usage is reported (it is optional): total = prompt + completion, prompt counted,
    completion within max_tokens per choice.

    openapi.yaml CompletionUsage: total_tokens is the "Total number of tokens used in the
    request (prompt + completion)"; max_tokens is "The maximum number of tokens that can be
    generated in the completion"."""
    if usage is None:
        return
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


@COMPLETIONS
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_returns_a_text_completion(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """A string prompt answers a text_completion with one choice (index 0) of text and a
    finish_reason of the schema's enum.

    openapi.yaml: ``n`` "How many completions to generate for each prompt", default 1;
    finish_reason "enum: stop, length, content_filter". The response's ``model`` is "The model
    used for completion", which need not be the requested name."""
    rule = "a completion returns 200 and a text_completion object"
    completion, reply = complete(openai_client, task_model, rule)
    expect(
        [c.index for c in completion.choices] == [0],
        "n defaults to one choice, index 0",
        f"choice indexes {[c.index for c in completion.choices]}",
        reply,
    )
    expect(
        completion.choices[0].finish_reason in FINISH_REASONS,
        f"finish_reason is one of {', '.join(FINISH_REASONS)}",
        f"finish_reason {completion.choices[0].finish_reason!r}",
        reply,
    )


@COMPLETIONS
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_usage_adds_up(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """When usage is reported: usage.total_tokens = prompt_tokens + completion_tokens, and
    completion_tokens is at most max_tokens.

    openapi.yaml CompletionUsage: total_tokens "Total number of tokens used in the request
    (prompt + completion)"; max_tokens "The maximum number of tokens that can be generated in
    the completion"."""
    completion, reply = complete(openai_client, task_model, "a completion returns 200")
    expect_usage_adds_up(completion.usage, reply, MAX_TOKENS, 1)


@COMPLETIONS
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_prompt_list_gives_one_choice_per_prompt(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """A list of prompts answers one choice per prompt, indexes 0..n-1.

    openapi.yaml: prompt is "The prompt(s) to generate completions for, encoded as a string,
    array of strings, array of tokens, or array of token arrays"; ``n`` "How many completions
    to generate for each prompt" (default 1)."""
    rule = "a list of prompts returns one choice per prompt"
    completion, reply = complete(
        openai_client, task_model, rule, prompt=[examples.PROMPT, examples.TEXT2TEXT]
    )
    indexes = sorted(c.index for c in completion.choices)
    expect(indexes == [0, 1], rule, f"choice indexes {indexes}", reply)


@COMPLETIONS
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_accepts_token_ids(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """A prompt of token ids is answered; when usage is reported, prompt_tokens counts exactly
    those ids.

    openapi.yaml: prompt "encoded as a string, array of strings, array of tokens, or array of
    token arrays"; prompt_tokens "Number of tokens in the prompt"."""
    rule = "a prompt of token ids returns a completion counting those tokens"
    completion, reply = complete(openai_client, task_model, rule, prompt=TOKEN_IDS)
    expect(len(completion.choices) == 1, rule, f"{len(completion.choices)} choices", reply)
    usage = completion.usage
    if usage is not None:
        expect(
            usage.prompt_tokens == len(TOKEN_IDS),
            rule,
            f"prompt_tokens {usage.prompt_tokens}, sent {len(TOKEN_IDS)} ids",
            reply,
        )


@COMPLETIONS
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_finish_reason_length_when_max_tokens_is_reached(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """When usage is reported: finish_reason is "length" when generation used all of
    max_tokens, "stop" when it ended earlier.

    openapi.yaml: finish_reason "will be `stop` if the model hit a natural stop point or a
    provided stop sequence, `length` if the maximum number of tokens specified in the request
    was reached"."""
    completion, reply = complete(
        openai_client, task_model, "a completion returns 200", max_tokens=2
    )
    usage = completion.usage
    if usage is None or usage.completion_tokens is None:
        return  # usage is optional: without it the tokens generated are unknown
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


def _stop_for(openai_client: OpenAIClient, model: ModelInfo) -> tuple[str, str]:
    """A greedy completion's text and a stop sequence taken from it."""
    free, free_reply = complete(openai_client, model, "a completion returns 200")
    text = free.choices[0].text
    stop = _stop_word(text)
    expect(stop is not None, "a greedy completion generates text", f"text {text!r}", free_reply)
    assert stop is not None
    return text, stop


@COMPLETIONS
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_text_never_contains_the_stop_sequence(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """With a stop sequence (taken from a greedy text, so that it is likely to be generated),
    the returned text does not contain it.

    openapi.yaml StopConfiguration: "Up to 4 sequences where the API will stop generating
    further tokens. The returned text will not contain the stop sequence." """
    _, stop = _stop_for(openai_client, task_model)
    rule = "the returned text does not contain the stop sequence"
    stopped, reply = complete(openai_client, task_model, rule, stop=[stop])
    got = stopped.choices[0].text
    expect(stop not in got, rule, f"text {got!r} contains the stop sequence {stop!r}", reply)


@DETERMINISTIC
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_stop_sequence_ends_the_text(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """On a server that repeats greedy text: with a stop sequence taken from the greedy text,
    the text ends right before its first occurrence and finish_reason is "stop".

    openapi.yaml: stop sequences are "where the API will stop generating further tokens";
    finish_reason "will be `stop` if the model hit ... a provided stop sequence". Which text
    comes before it is known only when the text repeats (openai-deterministic)."""
    text, stop = _stop_for(openai_client, task_model)
    rule = "generation stops before the stop sequence, which is not returned"
    stopped, reply = complete(openai_client, task_model, rule, stop=[stop])
    got = stopped.choices[0].text
    expected = text[: text.find(stop)]
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


@COMPLETIONS
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_echo_returns_the_prompt_first(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """echo: true returns the prompt, then the completion.

    openapi.yaml: echo "Echo back the prompt in addition to the completion"."""
    rule = "echo returns the prompt followed by the completion"
    echoed, reply = complete(openai_client, task_model, rule, echo=True)
    text = echoed.choices[0].text
    expect(
        text.startswith(examples.PROMPT),
        rule,
        f"text {text!r} does not start with the prompt {examples.PROMPT!r}",
        reply,
    )


@COMPLETIONS
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_n_returns_n_choices(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """n: 2 (sampled at a temperature above 0) answers two choices with indexes 0 and 1.

    openapi.yaml: n "How many completions to generate for each prompt" (1 to 128). Sampled,
    not greedy: several greedy completions of one prompt are one text, and vLLM refuses them."""
    rule = "n choices are returned, indexes 0..n-1"
    completion, reply = complete(openai_client, task_model, rule, n=2, temperature=SAMPLED)
    indexes = sorted(c.index for c in completion.choices)
    expect(indexes == [0, 1], rule, f"choice indexes {indexes}", reply)


@DETERMINISTIC
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_temperature_zero_is_deterministic(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """On a server that promises it: the same request at temperature 0 answers the same text
    twice.

    openapi.yaml promises no more than "lower values like 0.2 will make it more focused and
    deterministic": the promise is the server's (openai-deterministic, declared by the user)."""
    first, _ = complete(openai_client, task_model, "a completion returns 200")
    second, reply = complete(openai_client, task_model, "a completion returns 200")
    expect(
        first.choices[0].text == second.choices[0].text,
        "temperature 0 (greedy) completions are deterministic",
        f"{first.choices[0].text!r} then {second.choices[0].text!r}",
        reply,
    )


@DETERMINISTIC
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_completion_seed_repeats_sampling(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """On a server that promises it: the same seed at temperature 1 samples the same text
    twice.

    openapi.yaml: seed "our system will make a best effort to sample deterministically ...
    Determinism is not guaranteed": the promise is the server's (openai-deterministic)."""
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
