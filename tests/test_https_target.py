"""Real-world targets: https with a CA bundle or --insecure, extra headers, per-request
timeouts, and retries on connection setup only, against a local https server; and the same
options over gRPC (TLS, call metadata) against a local gRPC server over TLS."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conformance import test_v2_interop as interop
from servegate.errors import BadTarget, Unreachable
from servegate.protocols.http import HttpSession
from servegate.protocols.v2_grpc import V2GrpcClient, call_metadata
from servegate.targets import Connection, Target
from tests.servers.grpc_tls import start_grpc_tls
from tests.servers.https_v2 import make_certs, make_self_signed, start_https_v2, x509

if x509 is None:
    pytest.skip("cryptography makes the test certificates (dev extra)", allow_module_level=True)


@pytest.fixture
def certs(tmp_path):
    return make_certs(tmp_path)


@pytest.fixture
def server(certs):
    srv = start_https_v2(certs, token="abcdef-token-123456")
    yield srv
    srv.stop()


AUTH = {"Authorization": "Bearer abcdef-token-123456"}


def test_https_with_ca_bundle_and_bearer_header(server, certs):
    with HttpSession(server.url, Connection(headers=AUTH, verify=str(certs.ca))) as http:
        assert http.get("/v2/health/live").status == 200


def test_extra_header_is_sent_with_every_request(server, certs):
    with HttpSession(server.url, Connection(verify=str(certs.ca))) as http:
        assert http.get("/v2/health/live").status == 401


def test_untrusted_certificate_is_refused_with_a_clear_reason(server):
    with (
        HttpSession(server.url, Connection(headers=AUTH)) as http,
        pytest.raises(Unreachable, match="certificate verify failed"),
    ):
        http.get("/v2/health/live")


def test_insecure_skips_certificate_verification(server):
    with HttpSession(server.url, Connection(headers=AUTH, verify=False)) as http:
        assert http.get("/v2/health/live").status == 200


def test_timeout_applies_per_request_and_a_sent_request_is_not_retried(server, certs):
    server.delay = 0.6
    conn = Connection(headers=AUTH, verify=str(certs.ca), timeout=0.2)
    with HttpSession(server.url, conn) as http:
        started = time.monotonic()
        with pytest.raises(Unreachable, match="no answer within the timeout"):
            http.get("/slow")
        assert time.monotonic() - started < 0.55
        # the same session, a longer limit for one call
        assert http.get("/slow", timeout=3.0).status == 200
    time.sleep(0.5)
    assert server.hits["/slow"] == 2  # one per call: the timed-out request was sent once


class _Ok(BaseHTTPRequestHandler):
    def log_message(self, *a: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def test_connection_setup_is_retried_until_the_server_listens():
    # bound but not listening: connects are refused until listen() 0.25 s later
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok, bind_and_activate=False)
    server.server_bind()
    port = server.server_address[1]

    def listen_later() -> None:
        time.sleep(0.25)
        server.server_activate()
        server.serve_forever(poll_interval=0.05)

    threading.Thread(target=listen_later, daemon=True).start()
    try:
        with HttpSession(f"http://127.0.0.1:{port}", Connection(timeout=5)) as http:
            assert http.get("/").status == 200
    finally:
        server.shutdown()
        server.server_close()


def test_refused_connection_gives_up_after_the_retries():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with (
        HttpSession(f"http://127.0.0.1:{port}", Connection(timeout=5)) as http,
        pytest.raises(Unreachable, match="cannot connect"),
    ):
        http.get("/")
    assert time.monotonic() - started < 4


# --- gRPC: --header as call metadata, TLS with --ca-bundle or --insecure ----------------------

TOKEN = "abcdef-token-123456"


@pytest.fixture
def grpc_server(certs):
    srv = start_grpc_tls(certs, token=TOKEN)
    yield srv
    srv.stop()


def _grpc(address: str, conn: Connection) -> V2GrpcClient:
    return V2GrpcClient(address, timeout=5.0, connection=conn, tls=True)


def test_grpc_tls_with_ca_bundle_sends_the_header_as_call_metadata(grpc_server, certs):
    client = _grpc(grpc_server.address, Connection(headers=AUTH, verify=str(certs.ca)))
    try:
        reply = client.live()
        assert reply.ok, reply.describe()
        assert client.model_metadata("echo").ok
    finally:
        client.close()
    assert grpc_server.seen and all(
        m.get("authorization") == f"Bearer {TOKEN}" for m in grpc_server.seen
    )


def test_grpc_without_the_header_is_refused_by_the_server(grpc_server, certs):
    client = _grpc(grpc_server.address, Connection(verify=str(certs.ca)))
    try:
        reply = client.live()
    finally:
        client.close()
    assert reply.code.name == "UNAUTHENTICATED"


def test_grpc_untrusted_certificate_is_refused_with_a_clear_reason(grpc_server):
    client = _grpc(grpc_server.address, Connection(headers=AUTH))
    try:
        with pytest.raises(Unreachable, match="(?i)certificate|handshake"):
            client.live()
    finally:
        client.close()
    assert not grpc_server.seen  # nothing, the token included, went to an unverified server


def test_grpc_insecure_trusts_a_self_signed_certificate(tmp_path):
    server = start_grpc_tls(make_self_signed(tmp_path / "self"), token=TOKEN)
    try:
        client = _grpc(server.address, Connection(headers=AUTH, verify=False))
        try:
            assert client.live().ok
        finally:
            client.close()
    finally:
        server.stop()


def test_grpc_insecure_cannot_skip_verification_of_a_ca_issued_certificate(grpc_server):
    with pytest.raises(BadTarget, match="--ca-bundle"):
        _grpc(grpc_server.address, Connection(headers=AUTH, verify=False))


def test_plain_grpc_sends_the_header_too():
    """Without TLS (an http target) the header still travels as call metadata."""
    from concurrent import futures

    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    seen: list[dict] = []

    class Live(pb_grpc.GRPCInferenceServiceServicer):
        def ServerLive(self, request, context):
            seen.append(dict(context.invocation_metadata()))
            return pb.ServerLiveResponse(live=True)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Live(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        client = V2GrpcClient(f"127.0.0.1:{port}", connection=Connection(headers=AUTH))
        try:
            assert client.live().ok
        finally:
            client.close()
    finally:
        server.stop(grace=None)
    assert seen[0]["authorization"] == f"Bearer {TOKEN}"


GRPC_CHECKS = """
import pytest
from servegate.checks import expect


@pytest.mark.features("v2-grpc")
def test_live(v2_grpc):
    \"\"\"ServerLive answers live.\"\"\"
    reply = v2_grpc.live()
    expect(reply.ok and reply.message.live, "ServerLive is live", reply.details, reply)


@pytest.mark.features("v2-grpc")
def test_unknown_metadata(v2_grpc):
    \"\"\"ModelMetadata of an unknown model answers OK (it does not: this check fails).\"\"\"
    reply = v2_grpc.model_metadata("servegate-no-such-model")
    expect(reply.ok, "ModelMetadata answers", reply.details, reply)
"""


def test_run_over_https_and_grpc_tls_keeps_the_token_out_of_reports(pytester, certs):
    """A run with --header and --ca-bundle reaches a gRPC target over TLS (discovery, the
    v2_grpc fixture), and the token the server echoes appears in no report or output."""
    https = start_https_v2(certs, token=TOKEN)
    grpc_server = start_grpc_tls(certs, token=TOKEN)
    try:
        pytester.makepyfile(test_checks=GRPC_CHECKS)
        reports = pytester.path / "reports"
        result = pytester.runpytest_subprocess(
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            "-rA",
            f"--target={https.url}",
            f"--grpc-target={grpc_server.address}",
            f"--ca-bundle={certs.ca}",
            f"--header=Authorization: Bearer {TOKEN}",
            f"--reports-dir={reports}",
            f"--junitxml={reports / 'junit.xml'}",
        )
    finally:
        https.stop()
        grpc_server.stop()
    result.assert_outcomes(passed=1, failed=1)
    assert any(m.get("authorization") == f"Bearer {TOKEN}" for m in grpc_server.seen)
    import json

    report = json.loads(next(reports.glob("conformance-*.json")).read_text())
    failed = next(c for c in report["cases"] if c["outcome"] == "failed")
    exchange = failed["failure"]["exchange"]
    assert exchange["status"] == "NOT_FOUND"
    assert exchange["url"].startswith("grpcs://")
    assert exchange["request_headers"]["authorization"] == "***"
    files = [p for p in reports.rglob("*") if p.is_file()]
    for path in files:
        assert TOKEN not in path.read_text(errors="replace"), path
    out = result.stdout.str() + result.stderr.str()
    assert TOKEN not in out


# --- tritonclient (the interop checks) with the same options ----------------------------------


def _target(certs, verify, **kw) -> Target:
    return Target(name="t", connection=Connection(headers=AUTH, verify=verify), **kw)


@pytest.mark.parametrize("verify", ["ca", False], ids=["ca-bundle", "insecure"])
def test_tritonclient_http_gets_the_tls_settings_and_headers(server, certs, verify):
    target = _target(certs, str(certs.ca) if verify == "ca" else False, http_url=server.url)
    client = interop._http_client(target)
    try:
        assert client.is_server_live(headers=interop._headers(target))
        assert not client.is_server_live()  # the server refuses a call without the token
    finally:
        client.close()


def test_tritonclient_grpc_gets_the_tls_settings_and_metadata(grpc_server, certs):
    target = _target(
        certs, str(certs.ca), http_url="https://127.0.0.1:1", grpc_address=grpc_server.address
    )
    client = interop._grpc_client(target)
    try:
        assert client.is_server_live(headers=dict(call_metadata(target.connection)))
    finally:
        client.close()
    assert grpc_server.seen[-1]["authorization"] == f"Bearer {TOKEN}"
