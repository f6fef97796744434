"""KServe V1 protocol: the model list, model status, predict with ``instances`` and ``inputs``,
and errors.

The V1 page fixes the routes and the request, and leaves the answer open: "The response payload
in V1 protocol is not strictly enforced. A custom server can define and return its own response
payload." The core checks therefore ask only that predict answers; ``{"predictions": [...]}``,
one per instance, and what each HuggingFace task's predictions mean are KServe
huggingfaceserver's encoding (feature ``v1-hf-predictions``). Errors follow the TensorFlow
Serving REST API that "All InferenceServices speak": "In case of error, all APIs will return a
JSON object in the response body with error as key and the error message as the value". No
status code is specified: 404 for an unknown model, a 4xx rather than a 5xx for a bad request
and a model that stays ready are the ``hardening`` profile's."""

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


#: the TensorFlow Serving REST API's error rule, which V1 inherits
ERROR_RULE = 'a V1 error is a JSON object {"error": <error message string>}'


def _json_error(reply: Reply, rule: str = ERROR_RULE) -> None:
    body = reply.json()
    expect(
        isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"],
        rule,
        f'error body {body!r} is not {{"error": message}}',
        reply,
    )


@pytest.mark.features("v1")
def test_v1_models_lists_the_served_models(v1: V1Client) -> None:
    """GET /v1/models answers 200 {"models": [names]}: distinct, non-empty model names.

    V1 page: "List Models | GET | /v1/models | {"models": [<model_name>]}"; "The "models" API
    exposes a list of models in the model registry." """
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
    lists.

    V1 page: "Model Ready | GET | /v1/models/<model_name> | {"name": <model_name>, "ready":
    $bool}"; "The "model ready" health API indicates if a specific model is ready for
    inferencing." A gate runs once the server says it is ready, so every listed model is."""
    listing = v1.models()
    expect_status(listing, 200, "GET /v1/models returns 200")
    for name in expect_model(ModelList, listing.json(), "GET /v1/models", listing).models:
        rule = f"GET /v1/models/{name} returns 200 with its name and ready true"
        reply = v1.model(name)
        expect_status(reply, 200, rule)
        status = expect_model(ModelStatus, reply.json(), rule, reply)
        expect(status.name == name, rule, f"name {status.name!r}", reply)
        expect(status.ready is True, rule, f"ready {status.ready!r}", reply)


def _unknown_model_replies(v1: V1Client) -> list[Reply]:
    return [
        v1.model(UNKNOWN_MODEL),
        v1.predict(UNKNOWN_MODEL, {"instances": [examples.SENTIMENT]}),
    ]


@pytest.mark.features("v1")
def test_v1_unknown_model_is_an_error_object(v1: V1Client) -> None:
    """An unknown model's status and predict answer an error status with {"error": message}.

    TensorFlow Serving REST API (V1 page: "All InferenceServices speak the Tensorflow V1 HTTP
    API"): "In case of error, all APIs will return a JSON object in the response body with
    error as key and the error message as the value". The status is not specified (404 is
    the hardening profile's)."""
    for reply in _unknown_model_replies(v1):
        expect(
            reply.status >= 400, ERROR_RULE, f"status {reply.status} for an unknown model", reply
        )
        _json_error(reply)


@pytest.mark.features("v1", "hardening")
def test_v1_unknown_model_is_a_404(v1: V1Client) -> None:
    """Hardening: an unknown model's status and predict answer 404 (Not Found), the status
    KServe and TensorFlow Serving use; the V1 page names no status code."""
    for reply in _unknown_model_replies(v1):
        expect_status(reply, 404, "a V1 request for an unknown model answers 404")


#: the request forms of the V1 page: "{"instances": []}* or {"inputs": []}*"
FORMS = ["instances", "inputs"]


@pytest.mark.features("v1")
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("task", ENCODER_TASKS)
def test_v1_predict_answers_instances_and_inputs(
    v1: V1Client, task: str, form: str, task_model: ModelInfo
) -> None:
    """POST :predict with {"instances": [a, b]} or the columnar {"inputs": [a, b]} answers 200
    with a JSON object.

    V1 page: "Predict | POST | /v1/models/<model_name>:predict | {"instances": []}* or
    {"inputs": []}*"; "The "predict" API performs inference on a model. The response is the
    prediction result." TensorFlow Serving: "The request and response is a JSON object." The
    object's content is open: "The response payload in V1 protocol is not strictly
    enforced." """
    body = {form: [kserve_v1.V1_EXAMPLES[task], SECOND[task]]}
    reply = v1.predict(task_model.name, body)
    rule = f'V1 predict answers {{"{form}": [...]}} with 200 and a JSON object'
    expect_status(reply, 200, rule)
    payload = reply.json()
    expect(isinstance(payload, dict), rule, f"body {str(payload)[:120]} is not an object", reply)


@pytest.mark.features("v1", "v1-hf-predictions")
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("task", ENCODER_TASKS)
def test_v1_predict_returns_one_prediction_per_instance(
    v1: V1Client, task: str, form: str, task_model: ModelInfo
) -> None:
    """KServe's payload: {"instances": [a, b]} (or {"inputs": [a, b]}) answers
    {"predictions": [pa, pb]}.

    V1 page: "Response Payload ... {"predictions": []}" and "We encourage using the KServe
    defined response payload for consistency" (not enforced, hence an extended feature)."""
    body = {form: [kserve_v1.V1_EXAMPLES[task], SECOND[task]]}
    _predictions(
        v1.predict(task_model.name, body), 2, "V1 predict returns one prediction per instance"
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


@pytest.mark.features("v1", "v1-hf-predictions")
@pytest.mark.parametrize("task", ENCODER_TASKS)
def test_v1_prediction_means_the_task(v1: V1Client, task: str, task_model: ModelInfo) -> None:
    """The documented example of each encoder task predicts what the task means: a class id,
    a label id per token, the token for the mask, a unit-length embedding.

    KServe huggingfaceserver's V1 encoding, not the protocol's ("The response payload in V1
    protocol is not strictly enforced"): feature v1-hf-predictions."""
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
@pytest.mark.parametrize("task", ["text-classification"])
def test_v1_malformed_json_is_an_error_object(
    v1: V1Client, task: str, task_model: ModelInfo
) -> None:
    """A predict body that is not JSON at all (sent as application/json) answers an error
    status with {"error": message}.

    TensorFlow Serving: "The request and response is a JSON object", and "In case of error,
    all APIs will return a JSON object in the response body with error as key and the error
    message as the value". Which error status is not specified (a 4xx is hardening)."""
    bad = BAD_REQUESTS[0]
    reply = v1.predict(
        task_model.name, content=bad.content, headers={"content-type": bad.content_type}
    )
    expect(reply.status >= 400, ERROR_RULE, f"status {reply.status} for malformed JSON", reply)
    _json_error(reply)


@pytest.mark.features("v1", "hardening")
@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=lambda b: b.id)
@pytest.mark.parametrize("task", ["text-classification"])
def test_v1_bad_request_is_a_4xx_json_error(
    v1: V1Client, bad: BadRequest, task: str, task_model: ModelInfo
) -> None:
    """Hardening: a predict body the server cannot read (malformed JSON, a non-JSON content
    type, no instances) answers 4xx with a JSON {"error": message}, and the model stays ready.

    Not the V1 page's: it names no status, says "payload is optional" and says nothing of
    non-JSON bodies; a client's mistake answered as a server fault (5xx) is what this
    profile refuses."""
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
    """A generative model on V1 predict either answers 200 with a JSON object or is refused
    with an error status and {"error": message} (KServe serves such models only over OpenAI).

    TensorFlow Serving: "The request and response is a JSON object" and "In case of error, all
    APIs will return a JSON object in the response body with error as key and the error
    message as the value"."""
    reply = v1.predict(task_model.name, {"instances": [examples.PROMPT]})
    rule = "V1 predict on a generative model answers a JSON object or a JSON error"
    if reply.status == 200:
        payload = reply.json()
        expect(isinstance(payload, dict), rule, f"body {str(payload)[:120]}", reply)
    else:
        expect(reply.status >= 400, rule, f"status {reply.status}", reply)
        _json_error(reply)


@pytest.mark.features("v1", "hardening")
@pytest.mark.parametrize("task", GENERATIVE_TASKS)
def test_v1_generative_model_predict_is_not_a_5xx(
    v1: V1Client, task: str, task_model: ModelInfo
) -> None:
    """Hardening: V1 predict on a generative model is answered or refused with a 4xx (KServe
    documents a 400 for models served only over OpenAI), never a 5xx crash."""
    reply = v1.predict(task_model.name, {"instances": [examples.PROMPT]})
    rule = "V1 predict on a generative model answers 200 or a 4xx, not a 5xx"
    expect(reply.status == 200 or 400 <= reply.status < 500, rule, f"status {reply.status}", reply)
