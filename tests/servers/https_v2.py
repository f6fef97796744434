"""An in-process https V2 server for the transport, redaction and report tests.

It answers the discovery routes, can demand a bearer token, echoes the request headers where a
check reads model metadata (so a careless report would leak the token), can answer slowly,
and counts the requests it received. The certificate comes from a throwaway CA made here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Imported with this module, at collection: a first import inside a test that uses pytester
# would be undone at its teardown, and a second import breaks cryptography's bindings.
try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
except ImportError:  # the tests that need it skip
    x509 = None  # type: ignore[assignment]


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(folder: Path) -> Certs:
    """A CA and a server certificate for 127.0.0.1 and localhost signed by it."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "servegate test CA")])
    ca = (
        _builder(ca_name, ca_name, ca_key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (
        _builder(subject, ca_name, key, now)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    out = Certs(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write(out, cert, key)
    return out


def make_self_signed(folder: Path) -> Certs:
    """A self-signed certificate for 127.0.0.1 (its own CA, as a dev server's often is)."""
    now = dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (
        _builder(name, name, key, now)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    out = Certs(ca=folder / "self.pem", cert=folder / "self.pem", key=folder / "self-key.pem")
    _write(out, cert, key)
    return out


def _builder(subject: Any, issuer: Any, key: Any, now: dt.datetime) -> Any:
    """A certificate builder valid from five minutes ago for a day."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )


def _write(out: Certs, cert: Any, key: Any) -> None:
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass
class HttpsV2:
    """A running server: its URL, what it received, and switches."""

    url: str
    token: str | None
    delay: float = 0.0
    hits: dict[str, int] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def start_https_v2(certs: Certs, token: str | None = None) -> HttpsV2:
    state = HttpsV2(url="", token=token)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str) -> None:
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            if self.headers.get("content-length"):
                self.rfile.read(int(self.headers["content-length"]))
            if state.token and self.headers.get("authorization") != f"Bearer {state.token}":
                self._send(401, {"error": "missing or wrong bearer token"})
                return
            if self.path == "/slow":
                time.sleep(state.delay)
                self._send(200, {})
            elif method == "GET" and self.path in ("/v2/health/live", "/v2/health/ready"):
                self._send(200, {})
            elif method == "GET" and self.path == "/v2":
                self._send(200, {"name": "https-echo", "version": "1.0.0", "extensions": []})
            elif method == "POST" and self.path == "/v2/repository/index":
                self._send(200, [{"name": "echo-text-classification", "state": "READY"}])
            elif self.path.endswith("/ready"):
                self._send(200, {})
            else:
                # a server that echoes what it was sent: the token must still not be reported
                self._send(404, {"error": f"no route {self.path}", "headers": dict(self.headers)})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert, certs.key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state._server = server
    state.url = f"https://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return state
