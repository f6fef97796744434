"""KServe V1 routes of the deviation server, with the switches that break them.

Every model of models.MODELS is listed and ready; the encoder tasks answer predict in
huggingfaceserver's V1 encoding (a class id, label ids per token, the mask's token, a unit
vector); other models are refused with 400, as KServe refuses models it serves only over OpenAI.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.deviation_server import models
from tests.deviation_server.switches import BOARD, switch

AREA = "v1"
BAD = "test_v1_bad_request_is_a_4xx_json_error"
MEANING = "test_v1_prediction_means_the_task"
UNKNOWN_ERROR = "test_v1_unknown_model_is_an_error_object"
UNKNOWN_404 = "test_v1_unknown_model_is_a_404"
MALFORMED = "test_v1_malformed_json_is_an_error_object"
ANSWERS = "test_v1_predict_answers_instances_and_inputs"
PER_INSTANCE = "test_v1_predict_returns_one_prediction_per_instance"
JSON_TYPES = ("application/json", "")

LIST_NOT_NAMES = switch(
    "v1-list-not-names",
    AREA,
    "GET /v1/models lists objects instead of names",
    ["test_v1_models_lists_the_served_models"],
)
LIST_DUPLICATE = switch(
    "v1-list-duplicate",
    AREA,
    "GET /v1/models lists a model twice",
    ["test_v1_models_lists_the_served_models"],
)
STATUS_NOT_READY = switch(
    "v1-status-not-ready",
    AREA,
    "GET /v1/models/{m} says ready false for a loaded model",
    ["test_v1_listed_models_report_their_status", "test_v1_every_model_is_ready"],
)
STATUS_WRONG_NAME = switch(
    "v1-status-wrong-name",
    AREA,
    "GET /v1/models/{m} names another model",
    ["test_v1_listed_models_report_their_status", "test_v1_every_model_is_ready"],
)
UNKNOWN_500 = switch(
    "v1-unknown-model-500",
    AREA,
    "an unknown model answers 500",
    [UNKNOWN_404],
)
UNKNOWN_PREDICT_400 = switch(
    "v1-unknown-model-predict-400",
    AREA,
    "predict on an unknown model answers 400",
    [UNKNOWN_404],
)
ERROR_PLAIN_TEXT = switch(
    "v1-error-plain-text",
    AREA,
    "V1 errors are plain text, not JSON",
    [UNKNOWN_ERROR, MALFORMED, BAD],
)
ERROR_NOT_STRING = switch(
    "v1-error-not-a-string",
    AREA,
    'V1 errors are {"message": ...} without "error"',
    [UNKNOWN_ERROR, MALFORMED, BAD],
)
BATCH_IGNORED = switch(
    "v1-batch-ignored",
    AREA,
    "predict answers only the first instance",
    [PER_INSTANCE],
)
INPUTS_REJECTED = switch(
    "v1-inputs-500",
    AREA,
    'the documented {"inputs": [...]} form is a KeyError 500',
    [f"{ANSWERS}[*inputs*]"],
)
NOT_PREDICTIONS = switch(
    "v1-outputs-not-predictions",
    AREA,
    'predict answers {"outputs"} instead of {"predictions"}',
    [PER_INSTANCE],
)
CLASS_NEGATIVE = switch(
    "v1-class-id-negative",
    AREA,
    "text-classification predicts class id -1",
    [f"{MEANING}[*text-classification*]"],
)
CLASS_AS_LIST = switch(
    "v1-class-ids-per-token",
    AREA,
    "text-classification predicts several ids per instance",
    [f"{MEANING}[*text-classification*]"],
)
TOKENS_SHORT = switch(
    "v1-token-labels-short",
    AREA,
    "token-classification predicts one label per sentence",
    [f"{MEANING}[*token-classification*]"],
)
TOKEN_LABEL_STRINGS = switch(
    "v1-token-labels-strings",
    AREA,
    "token-classification predicts label names, not ids",
    [f"{MEANING}[*token-classification*]"],
)
FILL_MASK_ECHO = switch(
    "v1-fill-mask-returns-mask",
    AREA,
    "fill-mask predicts the mask token itself",
    [f"{MEANING}[*fill-mask*]"],
)
EMBEDDING_NOT_UNIT = switch(
    "v1-embedding-not-unit",
    AREA,
    "embeddings are not L2-normalised",
    [f"{MEANING}[*feature-extraction*]"],
)
MALFORMED_500 = switch(
    "v1-malformed-json-500", AREA, "malformed JSON answers 500", [f"{BAD}[*malformed-json*]"]
)
CONTENT_TYPE_500 = switch(
    "v1-non-json-content-type-500",
    AREA,
    "a non-JSON content type hands the raw body to the model: 500",
    [f"{BAD}[*non-json-content-type*]"],
)
MISSING_INSTANCES_500 = switch(
    "v1-missing-instances-500",
    AREA,
    "a body without instances is a KeyError 500",
    [f"{BAD}[*missing-instances*]"],
)
UNREADY_AFTER_BAD = switch(
    "v1-bad-request-breaks-readiness",
    AREA,
    "after a refused predict the model reports not ready once",
    [BAD],
)
GENERATIVE_500 = switch(
    "v1-generative-model-500",
    AREA,
    "predict on a generative model crashes with 500",
    ["test_v1_generative_model_predict_is_not_a_5xx"],
)
GENERATIVE_PLAIN = switch(
    "v1-generative-refusal-plain-text",
    AREA,
    "predict on a generative model is refused with a plain-text 400",
    ["test_v1_generative_model_predict_is_answered_or_refused"],
)
MALFORMED_ACCEPTED = switch(
    "v1-malformed-json-accepted",
    AREA,
    "malformed JSON is answered 200 with empty predictions",
    [MALFORMED],
)
PREDICT_LIST = switch(
    "v1-predict-answers-a-list",
    AREA,
    "predict answers a bare JSON list, not an object",
    [ANSWERS, PER_INSTANCE],
)

ENCODER_TASKS = ("text-classification", "token-classification", "fill-mask", "feature-extraction")
#: one not-ready answer owed after a refused request (UNREADY_AFTER_BAD)
_unready_once: list[bool] = [False]


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> Response:
    if 400 <= status < 500:
        _unready_once[0] = BOARD.on(UNREADY_AFTER_BAD)
    if BOARD.on(ERROR_PLAIN_TEXT):
        return PlainTextResponse(message, status_code=status)
    if BOARD.on(ERROR_NOT_STRING):
        return JSONResponse({"message": message}, status_code=status)
    return JSONResponse({"error": message}, status_code=status)


def _find(name: str) -> models.Model:
    model = models.MODELS.get(name)
    if model is None:
        raise _Refused(
            500 if BOARD.on(UNKNOWN_500) else 404, f"Model with name {name} does not exist."
        )
    return model


async def list_models(request: Request) -> Response:
    names: list[Any] = list(models.MODELS)
    if BOARD.on(LIST_DUPLICATE):
        names.append(names[0])
    if BOARD.on(LIST_NOT_NAMES):
        names = [{"name": n} for n in names]
    return JSONResponse({"models": names})


async def model_status(request: Request) -> Response:
    model = _find(request.path_params["model"])
    ready = not (BOARD.on(STATUS_NOT_READY) or _unready_once[0])
    _unready_once[0] = False
    name = model.name + "-v1" if BOARD.on(STATUS_WRONG_NAME) else model.name
    return JSONResponse({"name": name, "ready": ready})


def _unit(text: str, size: int = models.HIDDEN) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    vec = [b / 255.0 + 0.01 for b in digest[:size]]
    norm = math.sqrt(sum(v * v for v in vec))
    scale = 2.0 if BOARD.on(EMBEDDING_NOT_UNIT) else 1.0
    return [scale * v / norm for v in vec]


def _predict_one(task: str, text: str) -> Any:
    if task == "text-classification":
        label = -1 if BOARD.on(CLASS_NEGATIVE) else len(text) % len(models.LABELS)
        return [label, label] if BOARD.on(CLASS_AS_LIST) else label
    if task == "token-classification":
        tokens = 1 if BOARD.on(TOKENS_SHORT) else len(re.findall(r"\w+|[^\w\s]", text)) + 2
        ids = [i % len(models.NER_LABELS) for i in range(tokens)]
        if BOARD.on(TOKEN_LABEL_STRINGS):
            return [[models.NER_LABELS[i] for i in ids]]
        return [ids]
    if task == "fill-mask":
        return models.MASK if BOARD.on(FILL_MASK_ECHO) else "paris"
    return _unit(text)


async def predict(request: Request) -> Response:
    name = request.path_params["model"]
    if name not in models.MODELS and BOARD.on(UNKNOWN_PREDICT_400):
        raise _Refused(400, f"Model with name {name} cannot predict.")
    model = _find(name)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if ctype not in JSON_TYPES:
        raise _Refused(
            500 if BOARD.on(CONTENT_TYPE_500) else 415, f"content type {ctype!r} is not JSON"
        )
    try:
        body = json.loads(raw)
    except ValueError as exc:
        if BOARD.on(MALFORMED_ACCEPTED):
            return JSONResponse({"predictions": []})
        raise _Refused(
            500 if BOARD.on(MALFORMED_500) else 400, f"Unrecognized request format: {exc}"
        ) from None
    if model.task not in ENCODER_TASKS:
        if BOARD.on(GENERATIVE_PLAIN):
            return PlainTextResponse("this model is not served over V1", status_code=400)
        raise _Refused(
            500 if BOARD.on(GENERATIVE_500) else 400,
            f"Model {model.name} does not support the V1 predict method.",
        )
    if isinstance(body, dict) and "inputs" in body and BOARD.on(INPUTS_REJECTED):
        raise _Refused(500, "KeyError : 'instances'")
    texts = body.get("instances", body.get("inputs")) if isinstance(body, dict) else None
    if texts is None:
        raise _Refused(
            500 if BOARD.on(MISSING_INSTANCES_500) else 400,
            'the body has neither "instances" nor "inputs"',
        )
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise _Refused(400, "instances must be a list of strings")
    if BOARD.on(BATCH_IGNORED):
        texts = texts[:1]
    predictions = [_predict_one(model.task or "", t) for t in texts]
    if BOARD.on(PREDICT_LIST):
        return JSONResponse(predictions)
    key = "outputs" if BOARD.on(NOT_PREDICTIONS) else "predictions"
    return JSONResponse({key: predictions})


def _guard(handler):
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except _Refused as exc:
            return _error(exc.status, str(exc))

    return wrapped


def routes() -> list[Route]:
    return [
        Route("/v1/models", _guard(list_models)),
        Route("/v1/models/{model}:predict", _guard(predict), methods=["POST"]),
        Route("/v1/models/{model}", _guard(model_status)),
    ]


def reset() -> None:
    _unready_once[0] = False
