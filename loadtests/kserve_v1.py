"""KServe V1 predict (``{"instances": [...]}``) over REST, on Locust's FastHttp engine.

    locust -f loadtests/kserve_v1.py --host http://127.0.0.1:8080 \
        --model tiny-text-classification --task text-classification --instances 8 --headless
"""

from __future__ import annotations

from locust import FastHttpUser, tag, task

from servegate.errors import ServegateError
from servegate.load import preflight
from servegate.load.locust_plugin import ProtocolUser
from servegate.load.scenario import count_rows, v1_request
from servegate.load.transport import FastHttpTransport
from servegate.protocols.v1 import V1Client
from servegate.targets import Connection


class KServeV1User(FastHttpUser, ProtocolUser):
    protocol = "v1"

    def on_start(self) -> None:
        ProtocolUser.on_start(self)
        self.model = self.opts.need_model()
        self.v1 = V1Client(
            self.host,
            Connection(headers=self.opts.headers),
            transport=FastHttpTransport(self.client, self.host),
        )
        self.body = v1_request(self.opts)
        self.name = f"predict {self.model} x{count_rows(self.body)}"

    @classmethod
    def preflight(cls, environment, opts) -> None:  # type: ignore[no-untyped-def]
        preflight.v1(environment.host, opts, v1_request(opts))

    @tag("v1", "kserve-v1", "predict")
    @task
    def predict(self) -> None:
        self.pace()
        started = self.clock()
        try:
            reply = self.v1.predict(self.model, self.body)
        except ServegateError as exc:
            self.fire(self.name, self.elapsed_ms(started), error=str(exc))
            return
        ms = self.elapsed_ms(started)
        self.fire(self.name, ms, len(reply.content), preflight.v1_reply_error(reply))
