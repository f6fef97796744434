"""``servegate run``: the conformance suite with its reports; other arguments go to pytest."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from servegate.entry.commands.common import conformance_dir as _conformance_dir
from servegate.entry.commands.common import log as _log


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="run the conformance suite (pytest conformance/) writing reports; "
        "further arguments go to pytest",
    )
    run.set_defaults(func=cmd_run, passes_extra=True)


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
