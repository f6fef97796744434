"""The ``servegate`` command; each subcommand lives in servegate/entry/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys

from servegate import __version__
from servegate.entry.commands import COMMANDS
from servegate.errors import ServegateError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servegate",
        description="Conformance and load-testing gate for HuggingFace model-serving runtimes.",
    )
    parser.add_argument("--version", action="version", version=f"servegate {__version__}")
    parser.add_argument(
        "--state-dir",
        default=".servegate",
        help="server envs, fixtures and run files (default .servegate)",
    )
    parser.add_argument(
        "--reports-dir", default="reports", help="reports and logs (default reports)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if getattr(args, "passes_extra", False):
            return int(args.func(args, extra))
        return int(args.func(args))
    except ServegateError as exc:
        print(f"servegate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("servegate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
