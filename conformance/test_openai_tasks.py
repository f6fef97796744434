"""Tasks across protocols: a generative model asked over V2 infer is answered or refused cleanly
(V1 has its own check in test_v1_protocol.py)."""

from __future__ import annotations

import pytest

from servegate.checks import expect
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import ModelInfo
from servegate.tasks import examples


@pytest.mark.features("v2-rest")
@pytest.mark.parametrize("task", ["text-generation", "text2text-generation"])
def test_v2_generative_model_infer_is_answered_or_refused(
    v2: V2RestClient, task: str, task_model: ModelInfo
) -> None:
    """V2 infer on a generative model either answers or is refused with an error status and
    a JSON {"error": message} (KServe refuses models it serves only over OpenAI with a 400).

    OIP required_api.md: "A failed inference request must be indicated by an HTTP error status
    (typically 400)" with "$inference_error_response" {"error": $string}. Which error status
    is the server's choice ("typically"); never a 5xx is good practice, not the spec."""
    body = {
        "inputs": [{"name": "args", "shape": [1], "datatype": "BYTES", "data": [examples.PROMPT]}]
    }
    reply = v2.infer(task_model.name, body)
    rule = "V2 infer on a generative model answers 200 or an error status with a JSON error"
    expect(reply.status == 200 or reply.status >= 400, rule, f"status {reply.status}", reply)
    if reply.status != 200:
        payload = reply.json()
        expect(
            isinstance(payload, dict) and payload.get("error"),
            rule,
            f"error body {payload!r}",
            reply,
        )
