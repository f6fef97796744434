"""``servegate prepare``: create the server envs and build the fixtures ahead of time."""

from __future__ import annotations

import argparse
from pathlib import Path

from servegate.entry.commands.common import log as _log
from servegate.reference_servers.registry import RUNTIMES


def register(sub: argparse._SubParsersAction) -> None:
    prepare = sub.add_parser("prepare", help="create the server envs and build the fixtures")
    prepare.add_argument(
        "--servers",
        default=",".join(RUNTIMES),
        help="comma-separated servers whose environments to create (default: all)",
    )
    prepare.set_defaults(func=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    from servegate.reference_servers.manager import prepare_env, prepare_fixtures

    state_dir = Path(args.state_dir)
    fixtures = prepare_fixtures(state_dir, _log)
    _log(f"fixtures: {fixtures.root} ({len(fixtures.models)} models)")
    for name in args.servers.split(","):
        python = prepare_env(name.strip(), state_dir, _log)
        _log(f"{name}: {python}")
    return 0
