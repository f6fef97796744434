"""OpenAI embeddings over REST, on Locust's FastHttp engine.

    locust -f loadtests/openai_embeddings.py --host http://127.0.0.1:8080 \
        --model tiny-feature-extraction --instances 8 --headless -u 8 -t 30s
"""

from __future__ import annotations

from locust import FastHttpUser, tag, task

from servegate.errors import ServegateError
from servegate.load import preflight
from servegate.load.locust_plugin import ProtocolUser
from servegate.load.scenario import openai_body
from servegate.load.transport import FastHttpTransport
from servegate.protocols.openai import OpenAIClient
from servegate.targets import Connection


class OpenAIEmbeddingsUser(FastHttpUser, ProtocolUser):
    protocol = "openai"

    def on_start(self) -> None:
        ProtocolUser.on_start(self)
        self.openai = OpenAIClient(
            self.host,
            Connection(headers=self.opts.headers),
            api_base=self.opts.openai_base,
            transport=FastHttpTransport(self.client, self.host),
        )
        self.body = openai_body("embeddings", self.opts)
        inputs = self.body["input"]
        self.name = (
            f"embeddings {self.opts.model} x{len(inputs) if isinstance(inputs, list) else 1}"
        )

    @classmethod
    def preflight(cls, environment, opts) -> None:  # type: ignore[no-untyped-def]
        preflight.openai(environment.host, opts, "embeddings", openai_body("embeddings", opts))

    @tag("openai", "openai-embeddings", "embeddings")
    @task
    def embeddings(self) -> None:
        self.pace()
        started = self.clock()
        try:
            reply = self.openai.embeddings(self.body)
        except ServegateError as exc:
            self.fire(self.name, self.elapsed_ms(started), error=str(exc))
            return
        ms = self.elapsed_ms(started)
        self.fire(self.name, ms, len(reply.content), preflight.embeddings_reply_error(reply))
