"""The model repository extension (index, load, unload) and what readiness means with it: a
model that is not loaded is not ready."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from servegate.checks import expect, expect_status
from servegate.protocols.v2_models import tensor
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import ModelInfo, Target

#: how long a reloaded model may take to be ready again
RELOAD_DEADLINE = 60.0


@pytest.mark.features("v2-rest", "v2-repository")
def test_repository_index_lists_every_model(target: Target, v2: V2RestClient) -> None:
    """POST /v2/repository/index lists every served model with its name and state."""
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
    """After the repository unloads a model, GET /v2/models/{m}/ready is not 200 and inference
    on it is refused; after it loads the model again, the model is ready."""
    rule = "a model that is not loaded is not ready"
    expect_status(_repository(v2, numeric.name, "unload"), 200, "repository unload returns 200")
    try:
        reply = v2.model_ready(numeric.name)
        expect(
            reply.status != 200 and reply.status < 500,
            rule,
            f"ready answers {reply.status} after unload",
            reply,
        )
        infer = v2.infer(numeric.name, {"inputs": [tensor("x", "INT32", [1], [1])]})
        expect(
            400 <= infer.status < 500,
            "inference on an unloaded model is a 4xx",
            f"status {infer.status}",
            infer,
        )
    finally:
        load = _repository(v2, numeric.name, "load")
        deadline = time.monotonic() + RELOAD_DEADLINE
        while v2.model_ready(numeric.name).status != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
    expect_status(load, 200, "repository load returns 200")
    expect_status(v2.model_ready(numeric.name), 200, "a reloaded model is ready")
