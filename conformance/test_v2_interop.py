"""Interoperability: tritonclient's HTTP and gRPC clients, written to the same protocol by
another project, complete an inference round trip with the target."""

from __future__ import annotations

from urllib.parse import urlsplit

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from servegate.checks import expect
from servegate.protocols.exchange import Exchange
from servegate.targets import ModelInfo, Target
from servegate.unsupported import unsupported

FP32 = np.array([[0.5, -1.5], [2.0, 3.25]], dtype=np.float32)
WORDS = np.array([b"hello", b"caf\xc3\xa9"], dtype=np.object_)


class _Evidence:
    """What a tritonclient call did, for a failure message (the client hides its exchange)."""

    def __init__(self, url: str, what: str, seen: str = ""):
        self.exchange = Exchange(
            protocol="tritonclient", method="CALL", url=url, request_body=what, response_body=seen
        )

    def describe(self) -> str:
        return self.exchange.describe()


def _as_bytes(value: object) -> bytes:
    # JSON answers decode BYTES elements to str, binary ones to bytes
    return value.encode() if isinstance(value, str) else bytes(value)  # type: ignore[arg-type]


def _http_client(target: Target) -> triton_http.InferenceServerClient:
    parts = urlsplit(target.http_url)
    return triton_http.InferenceServerClient(
        parts.netloc,
        ssl=parts.scheme == "https",
        connection_timeout=target.connection.timeout,
        network_timeout=target.connection.timeout,
    )


def _round_trip(client, module, model: str, binary: bool, evidence_url: str) -> None:
    rule = f"tritonclient {module.__name__.split('.')[-1]} completes an inference round trip"
    what = f"infer {model}: fp32 {FP32.tolist()}, bytes {WORDS.tolist()}"
    try:
        expect(
            client.is_server_live(),
            rule,
            "is_server_live() is false",
            _Evidence(evidence_url, "is_server_live"),
        )
        expect(
            client.is_model_ready(model),
            rule,
            "is_model_ready() is false",
            _Evidence(evidence_url, f"is_model_ready {model}"),
        )
        fp32 = module.InferInput("fp32", list(FP32.shape), "FP32")
        words = module.InferInput("bytes", list(WORDS.shape), "BYTES")
        if module is triton_http:
            fp32.set_data_from_numpy(FP32, binary_data=binary)
            words.set_data_from_numpy(WORDS, binary_data=binary)
            outputs = [
                module.InferRequestedOutput(n, binary_data=binary) for n in ("fp32", "bytes")
            ]
        else:
            fp32.set_data_from_numpy(FP32)
            words.set_data_from_numpy(WORDS)
            outputs = [module.InferRequestedOutput(n) for n in ("fp32", "bytes")]
        result = client.infer(model, [fp32, words], outputs=outputs, request_id="interop-1")
    except InferenceServerException as exc:
        raise AssertionError(
            f"rule: {rule}\nproblem: {exc}\n{_Evidence(evidence_url, what).describe()}"
        ) from None
    got_fp32, got_words = result.as_numpy("fp32"), result.as_numpy("bytes")
    seen = (
        f"fp32 {None if got_fp32 is None else got_fp32.tolist()}, bytes "
        f"{None if got_words is None else got_words.tolist()}"
    )
    evidence = _Evidence(evidence_url, what, seen)
    expect(
        got_fp32 is not None and np.array_equal(got_fp32, FP32),
        rule,
        "fp32 did not come back unchanged",
        evidence,
    )
    expect(
        got_words is not None and [_as_bytes(w) for w in got_words.ravel()] == list(WORDS),
        rule,
        "bytes did not come back unchanged",
        evidence,
    )


@pytest.mark.features("v2-rest")
def test_tritonclient_http_round_trip(target: Target, numeric: ModelInfo) -> None:
    """tritonclient.http (JSON tensors) checks liveness and readiness and completes an
    inference whose outputs equal its inputs."""
    client = _http_client(target)
    try:
        _round_trip(client, triton_http, numeric.name, False, target.http_url)
    finally:
        client.close()


@pytest.mark.features("v2-rest", "v2-binary-tensor")
def test_tritonclient_http_binary_round_trip(target: Target, numeric: ModelInfo) -> None:
    """tritonclient.http with binary tensor data both ways completes the round trip."""
    client = _http_client(target)
    try:
        _round_trip(client, triton_http, numeric.name, True, target.http_url)
    finally:
        client.close()


@pytest.mark.features("v2-grpc")
def test_tritonclient_grpc_round_trip(target: Target, numeric: ModelInfo) -> None:
    """tritonclient.grpc checks liveness and readiness and completes an inference whose
    outputs equal its inputs."""
    if not target.grpc_address:
        unsupported(target, "v2-grpc", "has no gRPC address (--grpc-target)")
    client = triton_grpc.InferenceServerClient(target.grpc_address)
    try:
        _round_trip(client, triton_grpc, numeric.name, False, f"grpc://{target.grpc_address}")
    finally:
        client.close()
