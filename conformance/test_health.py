"""Health and readiness: what a load balancer and an orchestrator rely on."""

from __future__ import annotations

import pytest

from servegate.checks import expect, expect_status
from servegate.protocols.v1 import V1Client
from servegate.protocols.v2_grpc import V2GrpcClient
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import Target


@pytest.mark.features("v2-rest")
def test_server_live_returns_200(v2: V2RestClient) -> None:
    """GET /v2/health/live answers 200 while the server can receive requests."""
    expect_status(v2.live(), 200, "GET /v2/health/live returns 200 when the server is live")


@pytest.mark.features("v2-rest")
def test_server_ready_returns_200(v2: V2RestClient) -> None:
    """GET /v2/health/ready answers 200 when the server and its models are ready."""
    expect_status(v2.ready(), 200, "GET /v2/health/ready returns 200 when the server is ready")


@pytest.mark.features("v2-rest")
def test_every_model_is_ready(target: Target, v2: V2RestClient) -> None:
    """GET /v2/models/{m}/ready answers 200 for every model the server lists."""
    expect(target.models, "the server serves at least one model", "no model discovered")
    for model in target.models:
        expect_status(
            v2.model_ready(model),
            200,
            f"GET /v2/models/{model}/ready returns 200 for a loaded model",
        )


@pytest.mark.features("v2-grpc")
def test_grpc_server_live_and_ready(v2_grpc: V2GrpcClient) -> None:
    """ServerLive and ServerReady answer live=true and ready=true."""
    live = v2_grpc.live()
    expect(live.ok and live.message.live, "ServerLive returns live=true", live.details, live)
    ready = v2_grpc.ready()
    expect(ready.ok and ready.message.ready, "ServerReady returns ready=true", ready.details, ready)


@pytest.mark.features("v1")
def test_v1_every_model_is_ready(target: Target, v1: V1Client) -> None:
    """GET /v1/models/{m} answers 200 with {"name": m, "ready": true} for a loaded model."""
    for model in target.models:
        reply = v1.model(model)
        rule = f"GET /v1/models/{model} returns 200 with ready true"
        expect_status(reply, 200, rule)
        body = reply.json()
        expect(
            body.get("name") == model and body.get("ready") is True, rule, f"body {body!r}", reply
        )
