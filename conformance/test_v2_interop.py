"""Interoperability: tritonclient's HTTP and gRPC clients, written to the same protocol by
another project, complete an inference round trip with the target.

"By implementing this protocol both inference clients and servers will increase their utility
and portability by being able to operate seamlessly on platforms that have standardized around
this API" (required_api.md). Each round trip uses only what the protocol requires (health,
readiness, inference with an id, FP32 and BYTES tensors); binary data is the extension's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from servegate.checks import RuleViolation, expect
from servegate.protocols.exchange import Exchange
from servegate.protocols.v2_grpc import call_metadata, tls_settings, uses_tls
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


def _headers(target: Target) -> dict[str, str]:
    """The --header values, which tritonclient takes per call."""
    return dict(target.connection.headers)


def _as_bytes(value: object) -> bytes:
    # JSON answers decode BYTES elements to str, binary ones to bytes
    return value.encode() if isinstance(value, str) else bytes(value)  # type: ignore[arg-type]


def _http_client(target: Target) -> triton_http.InferenceServerClient:
    """tritonclient.http with the target's TLS settings (--ca-bundle, --insecure)."""
    parts = urlsplit(target.http_url)
    https = parts.scheme == "https"
    verify = target.connection.verify
    tls: dict[str, Any] = {}
    if https and isinstance(verify, str):
        tls["ssl_options"] = {"ca_certs": verify}
    elif https and verify is False:
        # geventhttpclient's own "insecure" only skips the host name check
        tls = {"insecure": True, "ssl_context_factory": _unverified_context}
    return triton_http.InferenceServerClient(
        parts.netloc,
        connection_timeout=target.connection.timeout,
        network_timeout=target.connection.timeout,
        ssl=https,
        **tls,
    )


def _unverified_context(*_args: Any, **_kwargs: Any) -> Any:
    """A TLS context that verifies nothing (--insecure), of the kind geventhttpclient uses."""
    import gevent.ssl

    context = gevent.ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = gevent.ssl.CERT_NONE
    return context


def _grpc_client(target: Target) -> triton_grpc.InferenceServerClient:
    """tritonclient.grpc with the target's TLS settings, as servegate's own gRPC client."""
    assert target.grpc_address
    if not uses_tls(target):
        return triton_grpc.InferenceServerClient(target.grpc_address)
    settings = tls_settings(
        target.grpc_address, target.connection.verify, target.connection.timeout
    )
    return triton_grpc.InferenceServerClient(
        target.grpc_address,
        ssl=True,
        root_certificates=None,
        creds=settings.credentials(),
        channel_args=settings.options() or None,
    )


def _round_trip(
    client, module, model: str, binary: bool, evidence_url: str, headers: dict[str, str]
) -> None:
    rule = f"tritonclient {module.__name__.split('.')[-1]} completes an inference round trip"
    what = f"infer {model}: fp32 {FP32.tolist()}, bytes {WORDS.tolist()}"
    try:
        expect(
            client.is_server_live(headers=headers),
            rule,
            "is_server_live() is false",
            _Evidence(evidence_url, "is_server_live"),
        )
        expect(
            client.is_model_ready(model, headers=headers),
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
        result = client.infer(
            model, [fp32, words], outputs=outputs, request_id="interop-1", headers=headers
        )
    except InferenceServerException as exc:
        raise RuleViolation(rule, str(exc), _Evidence(evidence_url, what)) from None
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
    """tritonclient.http (JSON tensors) checks liveness ("A 200 status code indicates true")
    and readiness and completes an inference whose outputs equal its inputs; it sends no
    Content-Type, which the protocol does not ask for."""
    client = _http_client(target)
    try:
        _round_trip(client, triton_http, numeric.name, False, target.http_url, _headers(target))
    finally:
        client.close()


@pytest.mark.features("v2-rest", "v2-binary-tensor")
def test_tritonclient_http_binary_round_trip(target: Target, numeric: ModelInfo) -> None:
    """tritonclient.http with binary tensor data both ways (extension_binary_data.md,
    feature v2-binary-tensor) completes the round trip."""
    client = _http_client(target)
    try:
        _round_trip(client, triton_http, numeric.name, True, target.http_url, _headers(target))
    finally:
        client.close()


@pytest.mark.features("v2-grpc")
def test_tritonclient_grpc_round_trip(target: Target, numeric: ModelInfo) -> None:
    """tritonclient.grpc (grpc_predict_v2.proto: ServerLive, ModelReady, ModelInfer with
    typed contents) checks liveness and readiness and completes an inference whose outputs
    equal its inputs."""
    if not target.grpc_address:
        unsupported(target, "v2-grpc", "has no gRPC address (--grpc-target)")
    client = _grpc_client(target)
    try:
        _round_trip(
            client,
            triton_grpc,
            numeric.name,
            False,
            f"grpc://{target.grpc_address}",
            dict(call_metadata(target.connection)),
        )
    finally:
        client.close()
