"""A calibrated test server: known streaming delays and a null inference endpoint.

Standard library only (asyncio), one process, one event loop, HTTP/1.1 keep-alive.

- OpenAI ``/openai/v1/completions`` and ``/chat/completions`` with ``"stream": true`` send the
  response headers at once (chat also sends its role chunk at once, as vLLM does; it carries no
  content, so a correct client does not count it as the first token), then the first token
  ``--ttft-ms`` after the request arrived and one more every ``--itl-ms``. Every send is
  scheduled against the request's arrival time, so delays do not accumulate. The token count is
  the request's ``max_tokens``, else ``--tokens``.
- V2 ``/v2/models/{m}/infer``, KServe V1 ``/v1/models/{m}:predict`` and OpenAI
  ``/embeddings`` answer at once with a small fixed body (``--null-delay-ms`` adds a delay):
  the "null" endpoint whose only cost is HTTP itself.
- Health, metadata and model lists for each protocol, so a client's preflight checks pass.
  Unknown models get 404; ``--protocols`` leaves protocols out, to test "wrong protocol".

Run: ``python loadtests/calibration/server.py --port 8099 --ttft-ms 100 --itl-ms 20``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import Any

PROTOCOLS = ("v2", "v1", "openai")
MAX_BODY = 64 * 1024 * 1024


class Config:
    def __init__(self, args: argparse.Namespace):
        self.ttft = args.ttft_ms / 1000.0
        self.itl = args.itl_ms / 1000.0
        self.tokens = args.tokens
        self.null_delay = args.null_delay_ms / 1000.0
        self.models = set(args.model)
        self.protocols = set(args.protocols.split(","))
        self.openai_base = "/" + args.openai_base.strip("/")
        self.hidden = args.embedding_size


def _response(status: int, body: bytes, ctype: str = "application/json") -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
        f"content-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _json(status: int, payload: Any) -> bytes:
    return _response(status, json.dumps(payload, separators=(",", ":")).encode())


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _event(payload: Any) -> bytes:
    return _chunk(b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n")


LAST_CHUNK = _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"

NULL_V2 = {
    "model_name": "null",
    "id": "0",
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [1], "data": [0.0]}],
}


class HttpProtocol(asyncio.Protocol):
    """One connection: parse requests (content-length bodies) and answer them in order."""

    def __init__(self, config: Config):
        self.config = config
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a streamed response is in progress: hold the next request
        self.null_v2 = _json(200, NULL_V2)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._drain()

    def _drain(self) -> None:
        while not self.busy and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            try:
                method, target, _ = lines[0].split(" ", 2)
            except ValueError:
                self.transport.write(_json(400, {"error": "bad request line"}))
                self.transport.close()
                return
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length > MAX_BODY:
                self.transport.close()
                return
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self._handle(method, target.split("?", 1)[0], body)

    # routing ---------------------------------------------------------------------------

    def _handle(self, method: str, path: str, body: bytes) -> None:
        assert self.transport is not None
        cfg = self.config
        if path.startswith("/v2") and "v2" in cfg.protocols:
            out = self._v2(method, path)
        elif path.startswith("/v1/") and "v1" in cfg.protocols:
            out = self._v1(method, path, body)
        elif path.startswith(cfg.openai_base + "/") and "openai" in cfg.protocols:
            out = self._openai(method, path[len(cfg.openai_base) :], body)
        else:
            out = _json(404, {"error": f"no route {path}"})
        if out is None:
            return  # a streamed response has taken over
        if cfg.null_delay and method == "POST":
            self.busy = True
            asyncio.get_running_loop().call_later(cfg.null_delay, self._send_later, out)
        else:
            self.transport.write(out)

    def _send_later(self, out: bytes) -> None:
        self.busy = False
        if self.transport is not None:
            self.transport.write(out)
            self._drain()

    def _unknown(self, model: str) -> bytes:
        return _json(404, {"error": f"Model {model} not found"})

    def _v2(self, method: str, path: str) -> bytes | None:
        parts = path.strip("/").split("/")
        if path in ("/v2/health/live", "/v2/health/ready"):
            return _json(200, {})
        if path == "/v2":
            return _json(200, {"name": "calibration", "version": "1", "extensions": []})
        if len(parts) >= 3 and parts[1] == "models":
            model = parts[2]
            if model not in self.config.models:
                return self._unknown(model)
            rest = parts[3:]
            if rest == ["infer"] and method == "POST":
                return self.null_v2
            if rest == ["ready"]:
                return _json(200, {"name": model, "ready": True})
            if not rest:
                return _json(
                    200,
                    {
                        "name": model,
                        "platform": "calibration",
                        "versions": [],
                        "inputs": [],
                        "outputs": [],
                    },
                )
        return _json(404, {"error": f"no route {path}"})

    def _v1(self, method: str, path: str, body: bytes) -> bytes:
        if path == "/v1/models":
            return _json(200, {"models": sorted(self.config.models)})
        name = path[len("/v1/models/") :] if path.startswith("/v1/models/") else ""
        predict = name.endswith(":predict")
        model = name[: -len(":predict")] if predict else name
        if not model:
            return _json(404, {"error": f"no route {path}"})
        if model not in self.config.models:
            return self._unknown(model)
        if not predict:
            return _json(200, {"name": model, "ready": True})
        try:
            instances = json.loads(body).get("instances", [])
        except (ValueError, AttributeError):
            return _json(400, {"error": "body is not a JSON object"})
        return _json(200, {"predictions": [0 for _ in instances]})

    def _openai(self, method: str, path: str, body: bytes) -> bytes | None:
        if path == "/models":
            return _json(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "owned_by": "calibration"}
                        for m in sorted(self.config.models)
                    ],
                },
            )
        if method != "POST":
            return _json(
                405,
                {
                    "error": {
                        "message": "use POST",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
        try:
            request = json.loads(body)
        except ValueError:
            return _json(
                400,
                {
                    "error": {
                        "message": "body is not JSON",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
        model = request.get("model")
        if model not in self.config.models:
            return _json(
                404,
                {
                    "error": {
                        "message": f"model {model} not found",
                        "type": "invalid_request_error",
                        "param": "model",
                        "code": None,
                    }
                },
            )
        if path == "/embeddings":
            inputs = request.get("input")
            items = inputs if isinstance(inputs, list) else [inputs]
            vector = [1.0] + [0.0] * (self.config.hidden - 1)
            return _json(
                200,
                {
                    "object": "list",
                    "model": model,
                    "data": [
                        {"object": "embedding", "index": i, "embedding": vector}
                        for i in range(len(items))
                    ],
                    "usage": {"prompt_tokens": len(items), "total_tokens": len(items)},
                },
            )
        if path not in ("/completions", "/chat/completions"):
            return _json(404, {"error": f"no route {path}"})
        chat = path == "/chat/completions"
        tokens = int(request.get("max_tokens") or self.config.tokens)
        if not request.get("stream"):
            text = " tok" * tokens
            if chat:
                choice: dict[str, Any] = {
                    "index": 0,
                    "finish_reason": "length",
                    "message": {"role": "assistant", "content": text},
                }
            else:
                choice = {"index": 0, "text": text, "finish_reason": "length"}
            return _json(
                200,
                {
                    "id": "cal",
                    "object": "chat.completion" if chat else "text_completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [choice],
                    "usage": {
                        "prompt_tokens": 1,
                        "completion_tokens": tokens,
                        "total_tokens": tokens + 1,
                    },
                },
            )
        usage = bool((request.get("stream_options") or {}).get("include_usage"))
        self.busy = True
        asyncio.get_running_loop().create_task(self._stream(model, chat, tokens, usage))
        return None

    async def _stream(self, model: str, chat: bool, tokens: int, usage: bool) -> None:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        kind = "chat.completion.chunk" if chat else "text_completion"
        base = {"id": "cal", "object": kind, "created": int(time.time()), "model": model}

        def choice(text: str | None, finish: str | None = None) -> dict[str, Any]:
            if chat:
                delta = {} if text is None else {"content": text}
                return {"index": 0, "delta": delta, "finish_reason": finish}
            return {"index": 0, "text": text or "", "finish_reason": finish}

        try:
            out = STREAM_HEAD
            if chat:
                out += _event(
                    {
                        **base,
                        "choices": [
                            {"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}
                        ],
                    }
                )
            self._write(out)
            for i in range(tokens):
                due = arrived + self.config.ttft + i * self.config.itl
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                last = i == tokens - 1
                self._write(
                    _event({**base, "choices": [choice(" tok", "length" if last else None)]})
                )
            if usage:
                self._write(
                    _event(
                        {
                            **base,
                            "choices": [],
                            "usage": {
                                "prompt_tokens": 1,
                                "completion_tokens": tokens,
                                "total_tokens": tokens + 1,
                            },
                        }
                    )
                )
            self._write(LAST_CHUNK)
        finally:
            self.busy = False
            if self.transport is not None:
                self._drain()

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--ttft-ms", type=float, default=100.0)
    parser.add_argument("--itl-ms", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=16, help="tokens when max_tokens is absent")
    parser.add_argument("--null-delay-ms", type=float, default=0.0)
    parser.add_argument("--embedding-size", type=int, default=8)
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="model names served (repeatable; default: null, calibrated)",
    )
    parser.add_argument(
        "--protocols",
        default=",".join(PROTOCOLS),
        help="comma-separated subset of v2,v1,openai to serve",
    )
    parser.add_argument("--openai-base", default="/openai/v1")
    return parser


async def serve(args: argparse.Namespace) -> None:
    config = Config(args)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpProtocol(config), args.host, args.port, backlog=1024
    )
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    print(
        f"calibration server on http://{args.host}:{args.port} ttft={args.ttft_ms}ms "
        f"itl={args.itl_ms}ms tokens={args.tokens} models={sorted(config.models)}",
        flush=True,
    )
    async with server:
        await stop


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.model = args.model or ["null", "calibrated"]
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
