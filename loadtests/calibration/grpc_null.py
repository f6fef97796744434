"""A null V2 gRPC server: answers ModelInfer at once with one small tensor.

Run: ``python loadtests/calibration/grpc_null.py --port 8101 [--model null]``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc


class NullInference(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, models: set[str]):
        self.models = models

    def ServerLive(self, request, context):  # noqa: N802 (gRPC method names)
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):  # noqa: N802
        return pb.ServerReadyResponse(ready=True)

    def ModelReady(self, request, context):  # noqa: N802
        if request.name not in self.models:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Model {request.name} not found")
        return pb.ModelReadyResponse(ready=True)

    def ModelInfer(self, request, context):  # noqa: N802
        if request.model_name not in self.models:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Model {request.model_name} not found")
        out = pb.ModelInferResponse.InferOutputTensor(name="output", datatype="FP32", shape=[1])
        out.contents.fp32_contents.append(0.0)
        return pb.ModelInferResponse(model_name=request.model_name, id=request.id, outputs=[out])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--model", action="append", default=None)
    args = parser.parse_args(argv)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(
        NullInference(set(args.model or ["null", "calibrated"])), server
    )
    server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    print(f"null gRPC server on {args.host}:{args.port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1)


if __name__ == "__main__":
    main()
