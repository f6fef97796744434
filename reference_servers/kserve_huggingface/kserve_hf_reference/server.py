"""Start kserve's ModelServer on a list of loaded models, named for what it really is."""

from __future__ import annotations

import argparse
from typing import Any

import grpc
import kserve
from kserve.protocol.grpc import server as grpc_server_module


class _AioOnAddress:
    """Stands in for ``grpc.aio`` inside kserve's gRPC server module so that the server it
    creates listens on one address instead of every interface (``[::]``)."""

    def __init__(self, host: str):
        self.host = host

    def server(self, *args: Any, **kwargs: Any) -> Any:
        srv = grpc.aio.server(*args, **kwargs)
        add_port = srv.add_insecure_port
        srv.add_insecure_port = lambda address: add_port(address.replace("[::]", self.host, 1))
        return srv

    def __getattr__(self, name: str) -> Any:
        return getattr(grpc.aio, name)


def serve(
    models: list[Any], args: argparse.Namespace, server_name: str, server_version: str
) -> None:
    """Register ``models`` and serve REST (V1, V2, OpenAI) and gRPC until a signal stops it."""
    server = kserve.ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=args.workers,
        max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=args.enable_grpc,
        enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format,
    )
    # GET /v2 and gRPC ServerMetadata say which implementation answers
    server.dataplane._server_name = server_name
    server.dataplane._server_version = server_version
    if args.bind_address:
        server._rest_server._server.config.host = args.bind_address
        grpc_server_module.aio = _AioOnAddress(args.bind_address)
    server.start(models)
