"""``servegate serve``: start one reference server, print how to aim the suite at it."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from servegate.entry.commands.common import log as _log
from servegate.errors import ServegateError
from servegate.reference_servers.registry import RUNTIMES
from servegate.targets import DEFAULT_OPENAI_BASE


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="start a reference server and print its URLs")
    serve.add_argument("server", choices=sorted(RUNTIMES), help="the reference server to start")
    serve.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="where the models run"
    )
    serve.add_argument(
        "--backend",
        choices=["local", "testcontainers", "kind"],
        default="local",
        help="a local process, a container, or a kind cluster",
    )
    serve.add_argument("--http-port", type=int, default=None, help="HTTP port (default: free)")
    serve.add_argument("--grpc-port", type=int, default=None, help="gRPC port (default: free)")
    serve.add_argument(
        "--ready-timeout", type=float, default=240.0, help="seconds to wait until it is ready"
    )
    serve.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="runtime option, e.g. parallel_workers=2, max_batch_size=8, "
        "dtype=bfloat16 (repeatable)",
    )
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from servegate.reference_servers.manager import start_reference

    options = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ServegateError(f"--option {item!r}: expected KEY=VALUE")
        options[key] = value
    server = start_reference(
        args.server,
        state_dir=Path(args.state_dir),
        logs_dir=Path(args.reports_dir) / "logs",
        device=args.device,
        backend=args.backend,
        options=options,
        ready_timeout=args.ready_timeout,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        log=_log,
    )
    # SIGTERM (a CI runner, kill) stops the server like Ctrl-C does; so does SIGINT even when
    # the shell started us in the background, where SIGINT arrives ignored and Python then
    # never turns it into KeyboardInterrupt
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        target = server.target
        model_args = " ".join(f"--model {m.name}={m.task}" for m in target.models.values())
        print(f"HTTP: {target.http_url}")
        if target.grpc_address:
            print(f"gRPC: {target.grpc_address}")
        print(f"implementation: {target.implementation}")
        for model in target.models.values():
            print(f"model: {model.name} ({model.task})")
        print(f"log: {server.log_path}")
        print("check it from another shell with:")
        grpc = f"--grpc-target={target.grpc_address} " if target.grpc_address else ""
        base = ""
        if target.openai_base != DEFAULT_OPENAI_BASE:
            base = f"--openai-base={target.openai_base} "
        print(f"  pytest conformance/ --target={target.http_url} {grpc}{base}{model_args}")
        print("Ctrl-C stops it.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _log(f"stopping {args.server}")
    finally:
        server.stop()
    return 0
