"""The model repository extension (index, load, unload; Triton's extension_model_repository.md,
announced as "model_repository") and what readiness means with it: a model that is not loaded
is not ready."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from servegate.checks import expect, expect_model, expect_status
from servegate.protocols.http import NotJSON
from servegate.protocols.v2_models import ErrorResponse, tensor
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import ModelInfo, Target

#: how long a reloaded model may take to be ready again
RELOAD_DEADLINE = 60.0


@pytest.mark.features("v2-rest", "v2-repository")
def test_repository_index_lists_every_model(target: Target, v2: V2RestClient) -> None:
    """ "The index API returns information about every model available in a model
    repository": $repository_index_response is a list of {"name" : $string, "version" :
    $string #optional, "state" : $string, "reason" : $string} (extension_model_repository.md,
    Index). Every served model is listed with its name and a state."""
    rule = "the repository index lists each model with a name and a state"
    reply = v2.repository_index()
    expect_status(reply, 200, rule)
    index = reply.json()
    expect(isinstance(index, list), rule, "the index is not a list", reply)
    states = {e.get("name"): e.get("state") for e in index if isinstance(e, dict)}
    for model in target.models:
        expect(model in states, rule, f"{model!r} is not listed", reply)
        expect(
            isinstance(states[model], str) and states[model], rule, f"{model!r} has no state", reply
        )


def _repository(v2: V2RestClient, model: str, action: str):
    return v2.http.post(f"/v2/repository/models/{quote(model, safe='')}/{action}", json={})


@pytest.mark.features("v2-rest", "v2-repository")
def test_unloaded_model_is_not_ready(v2: V2RestClient, numeric: ModelInfo) -> None:
    """After the repository unloads a model it is not ready: "A 200 status code indicates true
    and a 4xx status code indicates false" (required_api.md, Health); inference on it fails:
    "A failed inference request must be indicated by an HTTP error status (typically 400). The
    HTTP body must contain the $inference_error_response object" (required_api.md; KServe
    answers 503, which passes). "A successful load request is indicated by a 200 HTTP status"
    (extension_model_repository.md): loaded again, the model is ready."""
    rule = "a model that is not loaded is not ready (a 4xx)"
    expect_status(_repository(v2, numeric.name, "unload"), 200, "repository unload returns 200")
    try:
        reply = v2.model_ready(numeric.name)
        expect(
            400 <= reply.status < 500,
            rule,
            f"ready answers {reply.status} after unload",
            reply,
        )
        infer = v2.infer(numeric.name, {"inputs": [tensor("x", "INT32", [1], [1])]})
        infer_rule = (
            "inference on an unloaded model fails with an error status and the error object"
        )
        expect(infer.status >= 400, infer_rule, f"status {infer.status}", infer)
        try:
            error = infer.json()
        except NotJSON:
            expect(False, infer_rule, "the error body is not JSON", infer)
        expect_model(ErrorResponse, error, infer_rule, infer)
    finally:
        load = _repository(v2, numeric.name, "load")
        deadline = time.monotonic() + RELOAD_DEADLINE
        while v2.model_ready(numeric.name).status != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
    expect_status(load, 200, "repository load returns 200")
    expect_status(v2.model_ready(numeric.name), 200, "a reloaded model is ready")
