"""A Transport for the protocol clients over Locust's FastHttp engine (geventhttpclient).

It takes the connection pool of a FastHttpUser's session, so the user's settings (timeouts,
concurrency, TLS) apply, and sends without Locust's own request bookkeeping: the scenario times
and judges each request itself (see locust_plugin.ProtocolUser).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
from geventhttpclient.url import URL

from servegate.errors import Unreachable

#: what geventhttpclient raises when no (complete) response arrives
_NO_RESPONSE: tuple[type[BaseException], ...] = (OSError, socket.timeout, ConnectionError)
try:  # gevent's timeout is not an OSError
    from gevent import Timeout as _GeventTimeout
    from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError

    _NO_RESPONSE += (_GeventTimeout, HTTPConnectionClosed, HTTPParseError)
except ImportError:  # pragma: no cover - both ship with locust
    pass


class _Stream:
    """A streamed response: the body is handed over line by line as it arrives."""

    def __init__(self, response: Any):
        self._response = response
        self.status_code = int(response.status_code)
        self.headers = httpx.Headers(list(response.items()))

    def iter_bytes(self) -> Iterator[bytes]:
        # readline returns as soon as one line is there; read(n) would wait for n bytes
        while True:
            line = self._response.readline(b"\n")
            if not line:
                break
            yield line
        rest = self._response.read()
        if rest:
            yield rest

    def discard(self) -> None:
        """Drop the connection when the body was not read to the end (it cannot be reused)."""
        response = self._response
        if getattr(response, "message_complete", True):
            return
        sock, pool = getattr(response, "_sock", None), getattr(response, "_pool", None)
        if sock is not None and pool is not None:
            pool.release_socket(sock)
            response._sock = None
            response._pool = None


class FastHttpTransport:
    """Send through the connection pool of a locust FastHttpSession (``user.client``)."""

    def __init__(self, session: Any, base_url: str):
        self.base_url = base_url.rstrip("/")
        self._pool = session.client.clientpool
        self._client = self._pool.get_client(URL(self.base_url + "/"))
        self._prefix = len(self.base_url)

    def _split(self, url: str) -> tuple[Any, str]:
        if url.startswith(self.base_url):
            return self._client, url[self._prefix :] or "/"
        parsed = URL(url)
        return self._pool.get_client(parsed), parsed.request_uri

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | None,
    ) -> tuple[int, httpx.Headers, bytes]:
        client, uri = self._split(url)
        try:
            response = client.request(method, uri, body=body, headers=dict(headers))
            content = response.read()
        except _NO_RESPONSE as exc:
            raise Unreachable(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        return int(response.status_code), httpx.Headers(list(response.items())), content

    @contextmanager
    def stream(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> Iterator[_Stream]:
        client, uri = self._split(url)
        try:
            stream = _Stream(client.request(method, uri, body=body, headers=dict(headers)))
        except _NO_RESPONSE as exc:
            raise Unreachable(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        try:
            yield stream
        except _NO_RESPONSE as exc:
            stream.discard()
            raise Unreachable(
                f"{method} {url}: stream broke: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            stream.discard()

    def close(self) -> None:
        """The pool belongs to the Locust session, which closes it."""
