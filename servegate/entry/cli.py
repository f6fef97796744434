"""The ``servegate`` command: serve a reference server, prepare envs and fixtures, run the suite."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from pathlib import Path

from servegate import __version__
from servegate.errors import ServegateError
from servegate.reference_servers.registry import RUNTIMES


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent.parent


def _conformance_dir() -> Path:
    for candidate in (Path.cwd() / "conformance", _repo_root() / "conformance"):
        if candidate.is_dir():
            return candidate
    raise ServegateError("no conformance/ folder found; run servegate from a servegate checkout")


def _log(message: str) -> None:
    print(f"[servegate] {message}", flush=True)


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
    # SIGTERM (a CI runner, kill) stops the server like Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        target = server.target
        model_args = " ".join(f"--model {m.name}={m.task}" for m in target.models.values())
        print(f"HTTP: {target.http_url}")
        print(f"gRPC: {target.grpc_address}")
        print(f"implementation: {target.implementation}")
        for model in target.models.values():
            print(f"model: {model.name} ({model.task})")
        print(f"log: {server.log_path}")
        print("check it from another shell with:")
        print(
            f"  pytest conformance/ --target={target.http_url} "
            f"--grpc-target={target.grpc_address} {model_args}"
        )
        print("Ctrl-C stops it.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _log(f"stopping {args.server}")
    finally:
        server.stop()
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from servegate.reference_servers.manager import prepare_env, prepare_fixtures

    state_dir = Path(args.state_dir)
    fixtures = prepare_fixtures(state_dir, _log)
    _log(f"fixtures: {fixtures.root} ({len(fixtures.models)} models)")
    for name in args.servers.split(","):
        python = prepare_env(name.strip(), state_dir, _log)
        _log(f"{name}: {python}")
    return 0


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    reports = Path(args.reports_dir)
    argv = [
        str(_conformance_dir()),
        f"--junitxml={reports / 'junit.xml'}",
        f"--reports-dir={reports}",
        *extra,
    ]
    _log("pytest " + " ".join(shlex.quote(a) for a in argv))
    return int(pytest.main(argv))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servegate",
        description="Conformance and load-testing gate for HuggingFace model-serving runtimes.",
    )
    parser.add_argument("--version", action="version", version=f"servegate {__version__}")
    parser.add_argument("--state-dir", default=".servegate",
                        help="server envs, fixtures and run files (default .servegate)")
    parser.add_argument("--reports-dir", default="reports", help="reports and logs (default reports)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start a reference server and print its URLs")
    serve.add_argument("server", choices=sorted(RUNTIMES))
    serve.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    serve.add_argument("--backend", choices=["local", "testcontainers", "kind"], default="local")
    serve.add_argument("--http-port", type=int, default=None)
    serve.add_argument("--grpc-port", type=int, default=None)
    serve.add_argument("--ready-timeout", type=float, default=240.0)
    serve.add_argument("--option", action="append", metavar="KEY=VALUE",
                       help="runtime option, e.g. parallel_workers=2, max_batch_size=8, "
                            "dtype=bfloat16 (repeatable)")

    prepare = sub.add_parser("prepare", help="create the server envs and build the fixtures")
    prepare.add_argument("--servers", default=",".join(RUNTIMES))

    sub.add_parser(
        "run",
        help="run the conformance suite (pytest conformance/) writing reports; "
             "further arguments go to pytest",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "prepare":
            return cmd_prepare(args)
        return cmd_run(args, extra)
    except ServegateError as exc:
        print(f"servegate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("servegate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
