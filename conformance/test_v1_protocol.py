"""KServe V1 protocol: the model list, model status, predict with ``instances`` and ``inputs``,
what each encoder task's predictions mean, and errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from servegate.checks import expect, expect_model, expect_status
from servegate.protocols.http import Reply
from servegate.protocols.v1 import ModelList, ModelStatus, PredictResponse, V1Client
from servegate.targets import ModelInfo
from servegate.tasks import examples, kserve_v1, semantics

ENCODER_TASKS = sorted(kserve_v1.V1_EXAMPLES)
GENERATIVE_TASKS = ["text-generation", "text2text-generation"]
UNKNOWN_MODEL = "servegate-no-such-model"
#: a second instance, so that "one prediction per instance" is not satisfied by accident
SECOND = {
    "text-classification": "The plot was dull and I left early.",
    "token-classification": "Angela Merkel visited Paris in May.",
    "fill-mask": "Paris is the [MASK] of France.",
    "feature-extraction": "A second sentence to embed.",
}


def _predictions(reply: Reply, count: int, rule: str) -> list[Any]:
    expect_status(reply, 200, rule)
    body = expect_model(PredictResponse, reply.json(), rule, reply)
    expect(
        len(body.predictions) == count,
        rule,
        f"{len(body.predictions)} predictions for {count} instances",
        reply,
    )
    return body.predictions


def _json_error(reply: Reply, rule: str) -> None:
    body = reply.json()
    expect(
        isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"],
        rule,
        f'error body {body!r} is not {{"error": message}}',
        reply,
    )


@pytest.mark.features("v1")
def test_v1_models_lists_the_served_models(v1: V1Client) -> None:
    """GET /v1/models answers 200 {"models": [names]}: distinct, non-empty model names."""
    rule = "GET /v1/models returns 200 with the list of model names"
    reply = v1.models()
    expect_status(reply, 200, rule)
    listing = expect_model(ModelList, reply.json(), rule, reply)
    expect(listing.models, rule, "no model listed", reply)
    expect(all(listing.models), rule, "an empty model name", reply)
    expect(len(set(listing.models)) == len(listing.models), rule, "a model listed twice", reply)


@pytest.mark.features("v1")
def test_v1_listed_models_report_their_status(v1: V1Client) -> None:
    """GET /v1/models/{m} answers {"name": m, "ready": true} for every model GET /v1/models
    lists."""
    listing = v1.models()
    expect_status(listing, 200, "GET /v1/models returns 200")
    for name in expect_model(ModelList, listing.json(), "GET /v1/models", listing).models:
        rule = f"GET /v1/models/{name} returns 200 with its name and ready true"
        reply = v1.model(name)
        expect_status(reply, 200, rule)
        status = expect_model(ModelStatus, reply.json(), rule, reply)
        expect(status.name == name, rule, f"name {status.name!r}", reply)
        expect(status.ready is True, rule, f"ready {status.ready!r}", reply)


@pytest.mark.features("v1")
def test_v1_unknown_model_is_a_404_json_error(v1: V1Client) -> None:
    """An unknown model's status and predict answer 404 with a JSON {"error": message}."""
    for reply in (
        v1.model(UNKNOWN_MODEL),
        v1.predict(UNKNOWN_MODEL, {"instances": [examples.SENTIMENT]}),
    ):
        rule = "a V1 request for an unknown model answers 404 with a JSON error"
        expect_status(reply, 404, rule)
        _json_error(reply, rule)


@pytest.mark.features("v1")
@pytest.mark.parametrize("task", ENCODER_TASKS)
def test_v1_predict_returns_one_prediction_per_instance(
    v1: V1Client, task: str, task_model: ModelInfo
) -> None:
    """POST :predict with {"instances": [a, b]} answers {"predictions": [pa, pb]}."""
    body = {"instances": [kserve_v1.V1_EXAMPLES[task], SECOND[task]]}
    _predictions(
        v1.predict(task_model.name, body), 2, "V1 predict returns one prediction per instance"
    )


@pytest.mark.features("v1")
@pytest.mark.parametrize("task", ENCODER_TASKS)
def test_v1_predict_accepts_inputs(v1: V1Client, task: str, task_model: ModelInfo) -> None:
    """POST :predict also takes the columnar {"inputs": [...]} form KServe documents, with one
    prediction per input."""
    body = {"inputs": [kserve_v1.V1_EXAMPLES[task], SECOND[task]]}
    _predictions(
        v1.predict(task_model.name, body),
        2,
        'V1 predict accepts {"inputs": [...]} with one prediction per input',
    )


def _label_ids(prediction: Any, model: ModelInfo, task: str, reply: Reply) -> list[int]:
    ids = kserve_v1.nested_ints(prediction)
    rule = f"{task} predictions are label ids of the model config"
    expect(
        ids and all(isinstance(i, int) and not isinstance(i, bool) for i in ids),
        rule,
        f"prediction {prediction!r} is not (nested) integers",
        reply,
    )
    bound = len(model.labels) if model.labels else None
    bad = [i for i in ids if i < 0 or (bound is not None and i >= bound)]
    expect(
        not bad,
        rule,
        f"ids {bad} are not label ids" + (f" of the config's {bound} labels" if bound else ""),
        reply,
    )
    return ids


@pytest.mark.features("v1")
@pytest.mark.parametrize("task", ENCODER_TASKS)
def test_v1_prediction_means_the_task(v1: V1Client, task: str, task_model: ModelInfo) -> None:
    """The documented example of each encoder task predicts what the task means: a class id,
    a label id per token, the token for the mask, a unit-length embedding."""
    text = kserve_v1.V1_EXAMPLES[task]
    reply = v1.predict(task_model.name, kserve_v1.request_for(task))
    prediction = _predictions(reply, 1, "V1 predict returns one prediction per instance")[0]
    if task == "text-classification":
        ids = _label_ids(prediction, task_model, task, reply)
        expect(
            len(ids) == 1,
            "text-classification predicts one class id per instance",
            f"prediction {prediction!r}",
            reply,
        )
    elif task == "token-classification":
        ids = _label_ids(prediction, task_model, task, reply)
        words = len(text.split())
        expect(
            len(ids) >= words,
            "token-classification predicts a label for every token",
            f"{len(ids)} labels for a sentence of {words} words",
            reply,
        )
    elif task == "fill-mask":
        mask = task_model.mask_token or "[MASK]"
        expect(
            isinstance(prediction, str) and prediction.strip() and mask not in prediction,
            "fill-mask predicts a token for the mask",
            f"prediction {prediction!r}",
            reply,
        )
    elif task == "feature-extraction":
        semantics.check_vector(prediction, task_model, reply, unit_length=True)


@dataclass(frozen=True)
class BadRequest:
    id: str
    content: bytes
    content_type: str


BAD_REQUESTS = [
    BadRequest("malformed-json", b'{"instances": [', "application/json"),
    BadRequest("non-json-content-type", b'{"instances": ["hello"]}', "text/plain"),
    BadRequest("missing-instances", b'{"examples": ["hello"]}', "application/json"),
]


@pytest.mark.features("v1")
@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=lambda b: b.id)
@pytest.mark.parametrize("task", ["text-classification"])
def test_v1_bad_request_is_a_4xx_json_error(
    v1: V1Client, bad: BadRequest, task: str, task_model: ModelInfo
) -> None:
    """A predict body the server cannot read (malformed JSON, a non-JSON content type, no
    instances) answers 4xx with a JSON {"error": message}, and the model stays ready."""
    reply = v1.predict(
        task_model.name, content=bad.content, headers={"content-type": bad.content_type}
    )
    rule = "an unreadable V1 predict request answers 4xx with a JSON error"
    expect(400 <= reply.status < 500, rule, f"status {reply.status}", reply)
    _json_error(reply, rule)
    after = v1.model(task_model.name)
    rule = "the model stays ready after a refused request"
    expect_status(after, 200, rule)
    expect(after.json().get("ready") is True, rule, f"body {after.json()!r}", after)


@pytest.mark.features("v1")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_v1_generative_model_predict_is_answered_or_refused(
    v1: V1Client, task: str, task_model: ModelInfo
) -> None:
    """A generative model on V1 predict either answers or is refused with a 4xx JSON error
    (KServe documents a 400 for models served only over OpenAI), never a 5xx crash."""
    reply = v1.predict(task_model.name, {"instances": [examples.PROMPT]})
    rule = "V1 predict on a generative model answers 200 or a 4xx JSON error"
    expect(reply.status == 200 or 400 <= reply.status < 500, rule, f"status {reply.status}", reply)
    if reply.status == 200:
        _predictions(reply, 1, rule)
    else:
        _json_error(reply, rule)
