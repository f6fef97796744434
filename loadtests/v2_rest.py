"""V2 (Open Inference Protocol) inference over REST, on Locust's FastHttp engine.

    locust -f loadtests/v2_rest.py --host http://127.0.0.1:8080 --model tiny-fill-mask \
        --task fill-mask --headless -u 8 -t 30s
"""

from __future__ import annotations

from locust import FastHttpUser, tag, task

from servegate.errors import ServegateError
from servegate.load import preflight
from servegate.load.locust_plugin import ProtocolUser
from servegate.load.scenario import count_rows, v2_request
from servegate.load.transport import FastHttpTransport
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import Connection


class V2RestUser(FastHttpUser, ProtocolUser):
    protocol = "v2-rest"

    def on_start(self) -> None:
        ProtocolUser.on_start(self)
        self.model = self.opts.need_model()
        self.v2 = V2RestClient(
            self.host,
            Connection(headers=self.opts.headers),
            transport=FastHttpTransport(self.client, self.host),
        )
        self.body = v2_request(self.opts)
        self.name = f"infer {self.model} x{count_rows(self.body)}"

    @classmethod
    def preflight(cls, environment, opts) -> None:  # type: ignore[no-untyped-def]
        preflight.v2_rest(environment.host, opts, v2_request(opts))

    @tag("v2-rest", "v2", "infer")
    @task
    def infer(self) -> None:
        self.pace()
        started = self.clock()
        try:
            reply = self.v2.infer(self.model, self.body)
        except ServegateError as exc:
            self.fire(self.name, self.elapsed_ms(started), error=str(exc))
            return
        ms = self.elapsed_ms(started)
        error = preflight.v2_reply_error(reply)
        self.fire(self.name, ms, len(reply.content), error)
