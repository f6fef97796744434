"""OpenAI completions and chat completions with ``"stream": true``: TTFT, ITL, TPOT and E2E
measured here from the arrival of each SSE chunk (Locust alone would time only the headers).

    locust -f loadtests/openai_stream.py --host http://127.0.0.1:8080 \
        --model tiny-text-generation --max-tokens 32 --headless -u 8 -t 60s
    # one endpoint only: --tags completions  or  --tags chat
"""

from __future__ import annotations

import json

from locust import FastHttpUser, tag, task

from servegate.errors import ServegateError
from servegate.load import preflight
from servegate.load.locust_plugin import ProtocolUser
from servegate.load.metrics import StreamTiming
from servegate.load.scenario import openai_body
from servegate.load.transport import FastHttpTransport
from servegate.protocols.openai import DONE, OpenAIClient
from servegate.protocols.sse import parse_events
from servegate.targets import Connection


def chunk_content(chunk: dict, chat: bool) -> str:
    """The text a streamed chunk carries ("" for role-only, usage-only or final chunks)."""
    choices = chunk.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ""
    if chat:
        return (choices[0].get("delta") or {}).get("content") or ""
    return choices[0].get("text") or ""


class OpenAIStreamUser(FastHttpUser, ProtocolUser):
    protocol = "openai-stream"

    def on_start(self) -> None:
        ProtocolUser.on_start(self)
        self.openai = OpenAIClient(
            self.host,
            Connection(headers=self.opts.headers),
            api_base=self.opts.openai_base,
            transport=FastHttpTransport(self.client, self.host),
        )
        self.bodies = {ep: openai_body(ep, self.opts) for ep in ("completions", "chat/completions")}

    @classmethod
    def preflight(cls, environment, opts) -> None:  # type: ignore[no-untyped-def]
        for endpoint in ("completions", "chat/completions"):
            if any(t.__name__ == _TASKS[endpoint] for t in cls.tasks):  # tags may drop one
                preflight.openai(environment.host, opts, endpoint, openai_body(endpoint, opts))

    def stream(self, endpoint: str) -> None:
        chat = endpoint == "chat/completions"
        name = f"{'chat' if chat else 'completions'} stream {self.opts.model}"
        self.pace()
        timing = StreamTiming.start()
        error = None
        try:
            path = f"{self.openai.api_base}/{endpoint}"
            with self.openai.http.stream("POST", path, json=self.bodies[endpoint]) as reply:
                if reply.status != 200:
                    body = reply.read()
                    timing.end()
                    error = f"HTTP {reply.status}: {body[:300]!r}"
                else:
                    done = False
                    for event in parse_events(reply.iter_bytes()):
                        if event.data == DONE:
                            done = True
                            continue
                        arrived = self.clock()
                        chunk = json.loads(event.data)
                        if not isinstance(chunk, dict):
                            raise ValueError(
                                f"a chunk that is not a JSON object: {event.data[:80]}"
                            )
                        usage = chunk.get("usage") or {}
                        if usage.get("completion_tokens") is not None:
                            timing.usage_tokens = int(usage["completion_tokens"])
                        if chunk_content(chunk, chat):
                            timing.content(at=arrived)
                    timing.end()
                    if not done:
                        error = "stream ended without data: [DONE]"
                    elif not timing.arrivals:
                        error = "stream carried no content"
        except (ServegateError, ValueError) as exc:
            timing.end()
            error = f"{type(exc).__name__}: {exc}"
        self.fire_stream(name, timing, error)

    @tag("openai", "openai-stream", "completions")
    @task
    def completions(self) -> None:
        self.stream("completions")

    @tag("openai", "openai-stream", "chat")
    @task
    def chat(self) -> None:
        self.stream("chat/completions")


_TASKS = {"completions": "completions", "chat/completions": "chat"}
