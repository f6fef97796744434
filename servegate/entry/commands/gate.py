"""``servegate gate``: exit 0 only when every requested profile succeeds on every target and
the load thresholds hold; the reason for any other exit is the first line printed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from servegate.errors import ServegateError
from servegate.features import PROFILES, parse_profiles
from servegate.report.gate import read_thresholds, run_gate
from servegate.report.schema import find_reports, read_report

#: exit statuses: the gate held, it did not, or its inputs could not be read
PASSED, FAILED, BAD_INPUT = 0, 1, 2


def register(sub: argparse._SubParsersAction) -> None:
    gate = sub.add_parser(
        "gate",
        help="exit 0 only when every requested profile succeeds and load thresholds hold",
        description="Read the conformance reports of a run (conformance-*.json in the reports "
        "folder, or --report files), the load results (load-*.json) and a thresholds file, "
        "and decide. Exit 0: every condition holds; 1: one does not (the first line says "
        "which); 2: the inputs could not be read.",
    )
    gate.add_argument(
        "--profile",
        default=None,
        metavar="LIST",
        help=f"profiles that must succeed ({', '.join(PROFILES)}); default: those the run "
        "was given with --profile, else every profile a report shows",
    )
    gate.add_argument(
        "--report",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a conformance report (JSON or YAML), repeatable; default: every "
        "conformance-*.json in the reports folder",
    )
    gate.add_argument(
        "--thresholds",
        type=Path,
        default=None,
        metavar="FILE",
        help="load thresholds (YAML or JSON; see the README); without it load results only "
        "fail the gate when they record their own breach",
    )
    gate.add_argument(
        "--summary",
        type=Path,
        default=None,
        metavar="FILE",
        help="append the verdict as Markdown to FILE (e.g. $GITHUB_STEP_SUMMARY)",
    )
    gate.add_argument("--reports-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    gate.set_defaults(func=cmd_gate)


def cmd_gate(args: argparse.Namespace) -> int:
    reports_dir = Path(args.reports_dir)
    try:
        profiles = parse_profiles(args.profile)
    except ValueError as exc:
        print(f"servegate gate: ERROR: --profile: {exc}")
        return BAD_INPUT
    try:
        paths = list(args.report) or find_reports(reports_dir)
        if not paths:
            raise ServegateError(
                f"no conformance report in {reports_dir}/ (run the suite first, or pass --report)"
            )
        reports = [read_report(p) for p in paths]
        thresholds = read_thresholds(args.thresholds) if args.thresholds else None
    except ServegateError as exc:
        print(f"servegate gate: ERROR: {exc}")
        return BAD_INPUT
    result = run_gate(reports, reports_dir, profiles=profiles, thresholds=thresholds)
    print(f"servegate gate: {result.headline()}", flush=True)
    for finding in result.findings:
        print(f"  {'ok  ' if finding.ok else 'FAIL'}  {finding.line()}")
    if args.summary is not None:
        try:
            with args.summary.open("a", encoding="utf-8") as out:
                out.write(result.markdown())
        except OSError as exc:
            print(f"servegate gate: cannot write --summary {args.summary}: {exc}", file=sys.stderr)
    return PASSED if result.passed else FAILED
