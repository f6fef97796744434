"""The one HTTP transport every REST client uses: TLS, headers, timeouts, exchange records."""

from __future__ import annotations

import json as jsonlib
import ssl
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

# httpx imports httpcore lazily, on the first transport, and maps httpcore's exception classes
# to its own then. Were that first import inside an in-process pytest run (which restores
# sys.modules afterwards), a later httpcore would raise classes httpx no longer maps, and a
# refused connection would escape as a raw httpcore error. Importing it here fixes the classes.
import httpcore  # noqa: F401
import httpx

from servegate.errors import Unreachable
from servegate.protocols.exchange import BODY_EXCERPT, Exchange, excerpt
from servegate.targets import Connection

#: bytes of a streamed body past which its excerpt is refreshed only when the stream ends
#: (UTF-8 takes at most 4 bytes a character, so the excerpt's characters are all in by then)
_EXCERPT_BYTES = 4 * BODY_EXCERPT
#: connection setup is retried this often (a refused connect is never a partial request)
CONNECT_RETRIES = 2


def tls_verify(verify: bool | str) -> bool | ssl.SSLContext:
    """httpx's ``verify`` for a Connection's: True (system CAs), False (--insecure), or a
    context trusting the CA bundle at a path (httpx deprecates passing the path itself)."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


class NotJSON(AssertionError):
    """A body that should have been JSON and was not."""


@dataclass
class Reply:
    """An HTTP response with the exchange that produced it."""

    status: int
    headers: httpx.Headers
    content: bytes
    exchange: Exchange

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        """The body parsed as JSON; NotJSON (an assertion failure) naming the exchange if not."""
        try:
            return jsonlib.loads(self.content)
        except (ValueError, UnicodeDecodeError):
            raise NotJSON(f"response body is not JSON\n{self.exchange.describe()}") from None

    def describe(self) -> str:
        return self.exchange.describe()


class RawStream(Protocol):
    """A response whose body is read as it arrives, as a Transport hands it over."""

    status_code: int
    headers: httpx.Headers

    def iter_bytes(self) -> Iterator[bytes]: ...


class Transport(Protocol):
    """Another way to move bytes for an HttpSession (e.g. a load generator's own HTTP engine).

    ``send`` returns (status, headers, body); both methods raise ``Unreachable`` when no
    response arrives. Everything above the bytes (exchanges, replies, SSE) stays the session's.
    """

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | None,
    ) -> tuple[int, httpx.Headers, bytes]: ...

    def stream(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> AbstractContextManager[RawStream]: ...

    def close(self) -> None: ...


class HttpSession:
    """A keep-alive HTTP client bound to one base URL.

    ``transport`` replaces httpx for sending (the load tests pass Locust's gevent HTTP engine);
    requests, replies and exchange records are the same either way.
    """

    def __init__(
        self,
        base_url: str,
        connection: Connection | None = None,
        protocol: str = "http",
        transport: Transport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.connection = connection or Connection()
        self.protocol = protocol
        self.transport = transport
        self._client: httpx.Client | None = None
        if transport is None:
            verify = tls_verify(self.connection.verify)
            self._client = httpx.Client(
                base_url=self.base_url,
                headers=dict(self.connection.headers),
                verify=verify,
                # one limit per request: connect, each read, each write (per call: timeout=)
                timeout=self.connection.timeout,
                # httpx retries only failed connection setup (refused, connect timeout), never
                # a request that reached the server: inference is not always idempotent
                transport=httpx.HTTPTransport(retries=CONNECT_RETRIES, verify=verify),
            )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.transport is not None:
            self.transport.close()

    def __enter__(self) -> HttpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exchange(self, method: str, path: str, headers: Mapping[str, str], body: bytes | None):
        return Exchange(
            protocol=self.protocol,
            method=method,
            url=self.base_url + path,
            # what was sent, the session's own headers included (reports redact credentials)
            request_headers={**self.connection.headers, **headers},
            request_body=excerpt(body),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """Send one request. ``json`` is serialised; ``content`` is sent as it is."""
        hdrs = dict(headers or {})
        body: bytes | None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            hdrs.setdefault("content-type", "application/json")
        elif isinstance(content, str):
            body = content.encode()
        else:
            body = content
        exchange = self._exchange(method, path, hdrs, body)
        if self.transport is not None:
            hdrs = {**self.connection.headers, **hdrs}
            status, resp_headers, content = self.transport.send(
                method,
                self.base_url + path,
                hdrs,
                body,
                timeout if timeout is not None else self.connection.timeout,
            )
            exchange.status = status
            exchange.response_headers = dict(resp_headers)
            exchange.response_body = excerpt(content)
            return Reply(status, resp_headers, content, exchange)
        assert self._client is not None
        send = partial(
            self._client.request,
            method,
            path,
            content=body,
            headers=hdrs,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        try:
            try:
                resp = send()
            except STALE_CONNECTION:
                # a kept-alive connection the server closed after its previous answer (uvicorn
                # does after an exception in the app) fails the next request sent on it before
                # the server reads it; a client sends it again on a new connection once, as
                # Go's and urllib3's do. A server that resets this request itself fails again.
                resp = send()
        except httpx.TransportError as exc:
            raise Unreachable(f"{method} {self.base_url}{path}: {_describe(exc)}") from None
        exchange.status = resp.status_code
        exchange.response_headers = dict(resp.headers)
        exchange.response_body = excerpt(resp.content)
        return Reply(resp.status_code, resp.headers, resp.content, exchange)

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        return self.request("POST", path, **kw)

    @contextmanager
    def stream(
        self, method: str, path: str, *, json: Any, headers: Mapping[str, str] | None = None
    ) -> Iterator[StreamingReply]:
        """Send a request and read its body incrementally (server-sent events)."""
        hdrs = dict(headers or {})
        body = jsonlib.dumps(json).encode()
        hdrs.setdefault("content-type", "application/json")
        exchange = self._exchange(method, path, hdrs, body)
        if self.transport is not None:
            hdrs = {**self.connection.headers, **hdrs}
            with self.transport.stream(method, self.base_url + path, hdrs, body) as raw:
                exchange.status = raw.status_code
                exchange.response_headers = dict(raw.headers)
                yield StreamingReply(raw, exchange)
            return
        assert self._client is not None
        try:
            with self._client.stream(method, path, content=body, headers=hdrs) as resp:
                exchange.status = resp.status_code
                exchange.response_headers = dict(resp.headers)
                yield StreamingReply(resp, exchange)
        except httpx.TransportError as exc:
            raise Unreachable(f"{method} {self.base_url}{path}: {_describe(exc)}") from None


class StreamingReply:
    """A response being read as it arrives; the exchange records what was read."""

    def __init__(self, resp: httpx.Response | RawStream, exchange: Exchange):
        self._resp = resp
        self.exchange = exchange
        self.status = resp.status_code
        self.headers = resp.headers
        self._seen = bytearray()

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def iter_bytes(self) -> Iterator[bytes]:
        try:
            for chunk in self._resp.iter_bytes():
                self._seen.extend(chunk)
                # the excerpt is refreshed while it grows, then once at the end: copying and
                # decoding the whole body on every chunk made reading a long stream quadratic
                if len(self._seen) - len(chunk) <= _EXCERPT_BYTES:
                    self.exchange.response_body = excerpt(bytes(self._seen))
                yield chunk
        finally:
            self.exchange.response_body = excerpt(bytes(self._seen))

    def read(self) -> bytes:
        for _ in self.iter_bytes():
            pass
        return bytes(self._seen)


#: how a request sent on a connection the server has already closed fails
STALE_CONNECTION = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc}); is the server running and the URL right?"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within the timeout ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"
