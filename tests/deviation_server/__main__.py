"""Run the deviation server: ``python -m tests.deviation_server --http-port 8080 --grpc-port 8081``
(from the repository root). Switches start off; flip them through the control endpoint."""

from __future__ import annotations

import argparse

import uvicorn

from tests.deviation_server.app import build_app, build_grpc_server
from tests.deviation_server.switches import BOARD


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.deviation_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8081)
    parser.add_argument(
        "--on",
        action="append",
        default=[],
        metavar="SWITCH",
        help="a switch to turn on at start (repeatable)",
    )
    args = parser.parse_args(argv)
    app = build_app()
    BOARD.set(args.on)
    grpc_server = build_grpc_server(args.grpc_port, args.host)
    grpc_server.start()
    print(
        f"deviation server: http://{args.host}:{args.http_port} grpc {args.host}:{args.grpc_port}",
        flush=True,
    )
    try:
        uvicorn.run(app, host=args.host, port=args.http_port, log_level="warning", access_log=False)
    finally:
        grpc_server.stop(grace=None)


if __name__ == "__main__":
    main()
