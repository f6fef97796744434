"""V2 (Open Inference Protocol) inference over gRPC, with grpc's gevent support.

    locust -f loadtests/v2_grpc.py --host http://127.0.0.1:8080 --grpc-host 127.0.0.1:8081 \
        --model tiny-fill-mask --task fill-mask --headless -u 8 -t 30s
"""

from __future__ import annotations

from urllib.parse import urlsplit

import grpc.experimental.gevent as grpc_gevent
from locust import tag, task

from servegate.errors import ServegateError
from servegate.load import preflight
from servegate.load.locust_plugin import ProtocolUser
from servegate.load.scenario import ScenarioOptions, count_rows, grpc_request, v2_request
from servegate.protocols.v2_grpc import V2GrpcClient

# grpc's own threads would block the gevent loop; this makes its calls cooperative
grpc_gevent.init_gevent()

DEFAULT_GRPC_PORT = 8081


def grpc_address(host: str | None, opts: ScenarioOptions) -> str:
    if opts.grpc_host:
        return opts.grpc_host
    hostname = urlsplit(host or "").hostname or "127.0.0.1"
    return f"{hostname}:{DEFAULT_GRPC_PORT}"


class V2GrpcUser(ProtocolUser):
    protocol = "v2-grpc"

    def on_start(self) -> None:
        super().on_start()
        self.model = self.opts.need_model()
        self.v2 = V2GrpcClient(
            grpc_address(self.host, self.opts), metadata=tuple(self.opts.headers.items())
        )
        body = v2_request(self.opts)
        self.request = grpc_request(self.model, body)
        self.name = f"ModelInfer {self.model} x{count_rows(body)}"

    def on_stop(self) -> None:
        if hasattr(self, "v2"):
            self.v2.close()

    @classmethod
    def preflight(cls, environment, opts) -> None:  # type: ignore[no-untyped-def]
        preflight.v2_grpc(grpc_address(environment.host, opts), opts, v2_request(opts))

    @tag("v2-grpc", "v2", "infer")
    @task
    def infer(self) -> None:
        self.pace()
        started = self.clock()
        try:
            reply = self.v2.infer(self.request)
        except ServegateError as exc:
            self.fire(self.name, self.elapsed_ms(started), error=str(exc))
            return
        ms = self.elapsed_ms(started)
        if reply.ok:
            self.fire(self.name, ms, reply.message.ByteSize())
        else:
            self.fire(self.name, ms, error=f"{reply.code.name}: {reply.details[:300]}")
