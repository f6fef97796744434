"""An in-process V2 gRPC server over TLS that demands a bearer token in the call metadata.

It records the metadata of every call, answers the health and metadata RPCs, echoes FP32 and
BYTES inputs from ModelInfer, and puts the metadata it received into the details of the error
for an unknown model (so a careless report would leak the token).
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from tests.servers.https_v2 import Certs

MODEL = "echo"


@dataclass
class GrpcTls:
    """A running server: its address and the metadata of every call it received."""

    address: str
    token: str | None
    seen: list[dict[str, str]] = field(default_factory=list)
    _server: grpc.Server | None = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)


def start_grpc_tls(certs: Certs, token: str | None = None) -> GrpcTls:
    """Serve the V2 gRPC service over TLS with ``certs`` on a free port."""
    state = GrpcTls(address="", token=token)

    def admit(context: grpc.ServicerContext) -> dict[str, str]:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        state.seen.append(metadata)
        if token and metadata.get("authorization") != f"Bearer {token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        return metadata

    class Servicer(pb_grpc.GRPCInferenceServiceServicer):
        def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
            admit(context)
            return pb.ServerLiveResponse(live=True)

        def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
            admit(context)
            return pb.ServerReadyResponse(ready=True)

        def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
            admit(context)
            return pb.ModelReadyResponse(ready=request.name == MODEL)

        def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
            admit(context)
            return pb.ServerMetadataResponse(name="grpc-tls-echo", version="1.0.0")

        def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
            metadata = admit(context)
            if request.name != MODEL:
                # echoes what it was sent: the token must still not be reported
                context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.name}; {metadata}")
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=MODEL,
                platform="echo",
                inputs=[tensor(name="fp32", datatype="FP32", shape=[-1, -1])],
                outputs=[tensor(name="fp32", datatype="FP32", shape=[-1, -1])],
            )

        def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
            admit(context)
            response = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
            for tensor in request.inputs:
                out = response.outputs.add(
                    name=tensor.name, datatype=tensor.datatype, shape=tensor.shape
                )
                out.contents.CopyFrom(tensor.contents)
            response.raw_output_contents.extend(request.raw_input_contents)
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
    credentials = grpc.ssl_server_credentials([(certs.key.read_bytes(), certs.cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    state.address = f"127.0.0.1:{port}"
    state._server = server
    return state
