"""Health and readiness: what a load balancer and an orchestrator rely on.

V2 REST: "A health request is made with an HTTP GET to a health endpoint. The HTTP response
status code indicates a boolean result for the health request. A 200 status code indicates
true and a 4xx status code indicates false" (required_api.md, Health).
"""

from __future__ import annotations

import pytest

from servegate.checks import expect, expect_status
from servegate.protocols.v1 import V1Client
from servegate.protocols.v2_grpc import V2GrpcClient
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import Target


@pytest.mark.features("v2-rest")
def test_server_live_returns_200(v2: V2RestClient) -> None:
    """ "The “server live” API indicates if the inference server is able to receive and
    respond to metadata and inference requests" (required_api.md): 200 (true) while it is."""
    expect_status(v2.live(), 200, "GET /v2/health/live returns 200 when the server is live")


@pytest.mark.features("v2-rest")
def test_server_ready_returns_200(v2: V2RestClient) -> None:
    """ "The “server ready” health API indicates if all the models are ready for inferencing"
    (required_api.md): 200 (true) when they are."""
    expect_status(v2.ready(), 200, "GET /v2/health/ready returns 200 when the server is ready")


@pytest.mark.features("v2-rest")
def test_every_model_is_ready(target: Target, v2: V2RestClient) -> None:
    """ "The “model ready” health API indicates if a specific model is ready for inferencing"
    (required_api.md): 200 (true) for every model the server serves."""
    expect(target.models, "the server serves at least one model", "no model discovered")
    for model in target.models:
        expect_status(
            v2.model_ready(model),
            200,
            f"GET /v2/models/{model}/ready returns 200 for a loaded model",
        )


@pytest.mark.features("v2-grpc")
def test_grpc_server_live_and_ready(v2_grpc: V2GrpcClient) -> None:
    """ServerLiveResponse.live: "True if the inference server is live"; ServerReadyResponse
    .ready: "True if the inference server is ready" (grpc_predict_v2.proto)."""
    live = v2_grpc.live()
    expect(live.ok and live.message.live, "ServerLive returns live=true", live.details, live)
    ready = v2_grpc.ready()
    expect(ready.ok and ready.message.ready, "ServerReady returns ready=true", ready.details, ready)


@pytest.mark.features("v1")
def test_v1_every_model_is_ready(target: Target, v1: V1Client) -> None:
    """KServe V1 protocol page, Model Ready: GET /v1/models/<model_name> answers
    {"name": <model_name>, "ready": $bool}: 200 with ready true for a loaded model."""
    for model in target.models:
        reply = v1.model(model)
        rule = f"GET /v1/models/{model} returns 200 with ready true"
        expect_status(reply, 200, rule)
        body = reply.json()
        expect(
            body.get("name") == model and body.get("ready") is True, rule, f"body {body!r}", reply
        )
