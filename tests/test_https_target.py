"""Real-world targets: https with a CA bundle or --insecure, extra headers, per-request
timeouts, and retries on connection setup only, against a local https server."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from servegate.errors import Unreachable
from servegate.protocols.http import HttpSession
from servegate.targets import Connection
from tests.servers.https_v2 import make_certs, start_https_v2, x509

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
