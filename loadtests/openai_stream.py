"""OpenAI completions and chat completions with ``"stream": true``: TTFT, ITL, TPOT and E2E
measured here from the arrival of each SSE chunk (Locust alone would time only the headers).

    locust -f loadtests/openai_stream.py --host http://127.0.0.1:8080 \
        --model tiny-text-generation --max-tokens 32 --headless -u 8 -t 60s
    # one endpoint only: --tags completions  or  --tags chat
    # a token workload: --input-len 32 --output-len 32 --tokenizer MODEL_DIR (or --prompts FILE)
"""

from __future__ import annotations

import json
import time

from locust import FastHttpUser, tag, task
from locust.exception import StopUser

from servegate.errors import ServegateError
from servegate.load import preflight, workload_plugin
from servegate.load.locust_plugin import ProtocolUser, abort
from servegate.load.metrics import StreamTiming
from servegate.load.scenario import openai_body
from servegate.load.transport import FastHttpTransport
from servegate.load.workloads import Workload
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


def output_count(timing: StreamTiming, text: str, workload: Workload) -> tuple[int, str]:
    """Output tokens of one answer and where the count came from: the server's usage, else
    the tokenizer on the streamed text, else the content chunks."""
    if timing.usage_tokens is not None:
        return timing.usage_tokens, "usage"
    if workload.counter is not None:
        return workload.counter.count(text), "tokenizer"
    return len(timing.arrivals), "chunks"


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
        try:
            self.workload = workload_plugin.workload(
                self.environment, self.opts, self.endpoints()[0]
            )
        except ServegateError as exc:
            abort(self.environment, str(exc))
            raise StopUser() from None
        if self.workload is None:
            self.bodies = {
                ep: openai_body(ep, self.opts) for ep in ("completions", "chat/completions")
            }

    @classmethod
    def endpoints(cls) -> list[str]:
        """The endpoints whose tasks are kept (tags may drop one)."""
        kept = [ep for ep in _TASKS if any(t.__name__ == _TASKS[ep] for t in cls.tasks)]
        return kept or list(_TASKS)

    @classmethod
    def preflight(cls, environment, opts) -> None:  # type: ignore[no-untyped-def]
        endpoints = cls.endpoints()
        built = workload_plugin.workload(environment, opts, endpoints[0], probe=False)
        for endpoint in endpoints:
            if built is None:
                body = openai_body(endpoint, opts)
            else:
                body = built.body(endpoint, built.prompts[0], opts.need_model())
            preflight.openai(environment.host, opts, endpoint, body)
        # the target serves the scenario: now ask whether it holds output lengths
        workload_plugin.workload(environment, opts, endpoints[0])

    def stream(self, endpoint: str) -> None:
        chat = endpoint == "chat/completions"
        name = f"{'chat' if chat else 'completions'} stream {self.opts.model}"
        prompt = self.workload.take() if self.workload is not None else None
        if self.workload is not None:
            if prompt is None:
                raise StopUser()  # every prompt was sent once
            body = self.workload.body(endpoint, prompt, self.opts.need_model())
        else:
            body = self.bodies[endpoint]
        vllm_timing = workload_plugin.vllm_timing(self.environment)
        self.pace()
        sent = time.time()
        timing = StreamTiming.start()
        error = None
        text: list[str] = []
        prompt_tokens = None
        try:
            path = f"{self.openai.api_base}/{endpoint}"
            with self.openai.http.stream("POST", path, json=body) as reply:
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
                        if usage.get("prompt_tokens") is not None:
                            prompt_tokens = int(usage["prompt_tokens"])
                        content = chunk_content(chunk, chat)
                        if content or (vllm_timing and chunk.get("choices")):
                            timing.content(at=arrived)
                        if content:
                            text.append(content)
                    # vLLM's E2E ends at the last chunk with a choice, not after [DONE]
                    timing.end(at=timing.arrivals[-1] if vllm_timing and timing.arrivals else None)
                    if not done:
                        error = "stream ended without data: [DONE]"
                    elif not timing.arrivals:
                        error = "stream carried no content"
        except (ServegateError, ValueError) as exc:
            timing.end()
            error = f"{type(exc).__name__}: {exc}"
        self.fire_stream(name, timing, error)
        if prompt is not None and self.workload is not None:
            achieved, counted_by = output_count(timing, "".join(text), self.workload)
            workload_plugin.record(
                self.environment,
                prompt,
                sent=sent,
                achieved=achieved,
                counted_by=counted_by,
                server_input=prompt_tokens,
                error=error is not None,
            )

    @tag("openai", "openai-stream", "completions")
    @task
    def completions(self) -> None:
        self.stream("completions")

    @tag("openai", "openai-stream", "chat")
    @task
    def chat(self) -> None:
        self.stream("chat/completions")


_TASKS = {"completions": "completions", "chat/completions": "chat"}
