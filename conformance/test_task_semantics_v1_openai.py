"""One inference per task over KServe V1 (encoder tasks) and OpenAI completions (generative
tasks), with a check of what the answer means."""

from __future__ import annotations

import pytest

from servegate.checks import expect, expect_model, expect_status
from servegate.protocols.openai import Completion, OpenAIClient
from servegate.protocols.v1 import PredictResponse, V1Client
from servegate.targets import ModelInfo
from servegate.tasks import examples, kserve_v1, semantics


@pytest.mark.features("v1")
@pytest.mark.parametrize("task", sorted(kserve_v1.V1_EXAMPLES))
def test_v1_predictions_are_meaningful(v1: V1Client, task: str, task_model: ModelInfo) -> None:
    """V1 predict with one instance returns one prediction that makes sense for the task."""
    rule = "V1 predict returns 200 and one prediction per instance"
    reply = v1.predict(task_model.name, kserve_v1.request_for(task))
    expect_status(reply, 200, rule)
    body = expect_model(PredictResponse, reply.json(), rule, reply)
    expect(len(body.predictions) == 1, rule, f"{len(body.predictions)} predictions", reply)
    prediction = body.predictions[0]
    if task in ("text-classification", "token-classification"):
        ids = kserve_v1.nested_ints(prediction)
        rule = f"{task} predictions are label ids of the model config"
        expect(
            ids and all(isinstance(i, int) and not isinstance(i, bool) for i in ids),
            rule,
            f"prediction {prediction!r} is not (nested) integers",
            reply,
        )
        if task_model.labels:
            bad = [i for i in ids if not 0 <= i < len(task_model.labels)]
            expect(
                not bad,
                rule,
                f"ids {bad} outside the config's {len(task_model.labels)} labels",
                reply,
            )
    elif task == "fill-mask":
        expect(
            isinstance(prediction, str) and prediction.strip(),
            "fill-mask predicts a non-empty token for the mask",
            f"prediction {prediction!r}",
            reply,
        )
    elif task == "feature-extraction":
        semantics.check_vector(prediction, task_model, reply, unit_length=True)


@pytest.mark.features("openai")
@pytest.mark.parametrize("task", ["text-generation", "text2text-generation"])
def test_completion_returns_text_and_consistent_usage(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """A completion returns one choice of text with a finish reason, and usage adds up."""
    rule = "a completion returns 200 and a text_completion object"
    reply = openai_client.completions(
        {"model": task_model.name, "prompt": examples.PROMPT, "max_tokens": 8, "temperature": 0}
    )
    expect_status(reply, 200, rule)
    completion = expect_model(Completion, reply.json(), rule, reply)
    expect(completion.object == "text_completion", rule, f"object {completion.object!r}", reply)
    expect(
        len(completion.choices) == 1,
        "n defaults to 1 choice",
        f"{len(completion.choices)} choices",
        reply,
    )
    choice = completion.choices[0]
    expect(
        choice.finish_reason in ("stop", "length"),
        "finish_reason is stop or length",
        f"finish_reason {choice.finish_reason!r}",
        reply,
    )
    usage = completion.usage
    expect(usage is not None, "a completion reports usage", "no usage", reply)
    assert usage is not None
    expect(
        usage.total_tokens == usage.prompt_tokens + (usage.completion_tokens or 0),
        "usage.total_tokens = prompt_tokens + completion_tokens",
        f"{usage.total_tokens} != {usage.prompt_tokens} + {usage.completion_tokens}",
        reply,
    )
