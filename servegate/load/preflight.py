"""Checks made once before a load run, so a bad target fails in a second with a clear message
(down, no such model, wrong protocol for the model) instead of hammering errors for minutes.

Each check uses the project's protocol clients and raises PreflightError.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from servegate.errors import ServegateError, Unreachable
from servegate.load.scenario import ScenarioOptions, grpc_request
from servegate.protocols.exchange import excerpt
from servegate.protocols.http import Reply
from servegate.protocols.openai import OpenAIClient
from servegate.protocols.v1 import V1Client
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import Connection

PREFLIGHT_TIMEOUT = 60.0


class PreflightError(ServegateError):
    """The target cannot serve the scenario; the message says why."""


def _connection(opts: ScenarioOptions) -> Connection:
    return Connection(headers=opts.headers, timeout=PREFLIGHT_TIMEOUT)


def _need_host(host: str | None) -> str:
    if not host:
        raise PreflightError("no --host given: the target's base URL, e.g. http://127.0.0.1:8080")
    return host


@contextmanager
def _reachable(host: str) -> Iterator[None]:
    try:
        yield
    except Unreachable as exc:
        raise PreflightError(f"target {host} is down or unreachable: {exc}") from None


def _said(reply: Reply) -> str:
    return f"HTTP {reply.status}: {excerpt(reply.content, 300)}"


def _list_reply_error(reply: Reply, field: str, *, non_empty: bool = False) -> str | None:
    """Why a reply is not a 200 JSON object carrying a ``field`` list (None when it is)."""
    if reply.status != 200:
        return _said(reply)
    try:
        body = reply.json()
    except AssertionError:
        return "response is not JSON"
    value = body.get(field) if isinstance(body, dict) else None
    if not isinstance(value, list) or (non_empty and not value):
        return f"response has no {field} list"
    return None


def v2_reply_error(reply: Reply) -> str | None:
    """Why a V2 inference reply is not a success (None when it is)."""
    return _list_reply_error(reply, "outputs")


def v1_reply_error(reply: Reply) -> str | None:
    """Why a V1 predict reply is not a success (None when it is)."""
    return _list_reply_error(reply, "predictions")


def embeddings_reply_error(reply: Reply) -> str | None:
    """Why an OpenAI embeddings reply is not a success (None when it is)."""
    return _list_reply_error(reply, "data", non_empty=True)


def v2_rest(host: str | None, opts: ScenarioOptions, body: dict[str, Any]) -> None:
    host = _need_host(host)
    model = opts.need_model()
    client = V2RestClient(host, _connection(opts))
    try:
        with _reachable(host):
            client.live()
            meta = client.model_metadata(model)
            if meta.status == 404:
                raise PreflightError(
                    f"model {model!r} not found on {host} (V2 metadata 404)"
                    + _v2_models_hint(client)
                )
            probe = client.infer(model, body)
        error = v2_reply_error(probe)
        if error:
            raise PreflightError(
                f"one probe request to {model!r} over V2 REST failed ({error}); is V2 the right "
                "protocol for this model, and --task/--payload/--dialect the right encoding?"
            )
    finally:
        client.close()


def _v2_models_hint(client: V2RestClient) -> str:
    try:
        reply = client.repository_index()
        names = [m.get("name") for m in reply.json()] if reply.status == 200 else []
    except (ServegateError, AssertionError, AttributeError, TypeError):
        names = []
    return f"; models there: {', '.join(map(str, names))}" if names else ""


def v1(host: str | None, opts: ScenarioOptions, body: dict[str, Any]) -> None:
    host = _need_host(host)
    model = opts.need_model()
    client = V1Client(host, _connection(opts))
    try:
        with _reachable(host):
            listing = client.models()
            if listing.status == 404:
                raise PreflightError(
                    f"{host} has no KServe V1 routes (GET /v1/models is 404): "
                    "wrong protocol for this target"
                )
            try:
                names = listing.json().get("models", [])
            except (AssertionError, AttributeError):
                names = []
            if model not in names:
                raise PreflightError(
                    f"model {model!r} not found on {host}; V1 models there: "
                    f"{', '.join(map(str, names)) or 'none'}"
                )
            probe = client.predict(model, body)
        error = v1_reply_error(probe)
        if error:
            raise PreflightError(
                f"one probe request to {model!r} over KServe V1 failed "
                f"({error}); is V1 the right protocol for this model?"
            )
    finally:
        client.close()


def openai(host: str | None, opts: ScenarioOptions, endpoint: str, body: dict[str, Any]) -> None:
    host = _need_host(host)
    model = opts.need_model()
    client = OpenAIClient(host, _connection(opts), api_base=opts.openai_base)
    try:
        with _reachable(host):
            listing = client.models()
            if listing.status == 404:
                raise PreflightError(
                    f"{host} has no OpenAI routes under {opts.openai_base} "
                    "(models list is 404): wrong protocol for this target"
                )
            try:
                names = [m.get("id") for m in listing.json().get("data", [])]
            except (AssertionError, AttributeError):
                names = []
            if model not in names:
                raise PreflightError(
                    f"model {model!r} not found on {host}; OpenAI models there: "
                    f"{', '.join(map(str, names)) or 'none'}"
                )
            if endpoint == "embeddings":
                error = embeddings_reply_error(client.embeddings(body))
            else:
                stream = client.stream_all(endpoint, body)
                error = None
                if stream.reply.status != 200:
                    error = (
                        f"HTTP {stream.reply.status}: {stream.reply.exchange.response_body[:300]}"
                    )
                elif not stream.chunks:
                    error = "the stream carried no chunk"
        if error:
            raise PreflightError(
                f"one probe request to {model!r} on {endpoint} failed ({error});"
                f" does this model serve {endpoint}?"
            )
    finally:
        client.close()


def v2_grpc(address: str, opts: ScenarioOptions, body: dict[str, Any]) -> None:
    from servegate.protocols.v2_grpc import V2GrpcClient

    model = opts.need_model()
    client = V2GrpcClient(address, timeout=PREFLIGHT_TIMEOUT)
    try:
        try:
            live = client.live()
        except Unreachable as exc:
            raise PreflightError(f"gRPC target {address} is down or unreachable: {exc}") from None
        if not live.ok:
            raise PreflightError(
                f"gRPC target {address} is down or unreachable: {live.code.name} {live.details}"
            )
        ready = client.model_ready(model)
        if not ready.ok or not ready.message.ready:
            raise PreflightError(
                f"model {model!r} not found or not ready on gRPC {address} "
                f"({ready.code.name} {ready.details})"
            )
        probe = client.infer(grpc_request(model, body))
        if not probe.ok:
            raise PreflightError(
                f"one probe ModelInfer to {model!r} failed ({probe.code.name}: "
                f"{probe.details[:300]}); is V2 the right protocol for this "
                "model, and --task/--payload/--dialect the right encoding?"
            )
    finally:
        client.close()
