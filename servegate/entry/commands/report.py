"""``servegate report``: rebuild summary.md and report.html from the reports on disk (after a
load run added its results, say), validating each report against the schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from servegate.errors import ServegateError
from servegate.report.conformance import write_overviews
from servegate.report.schema import ConformanceReport, find_reports, read_report, write_yaml


def register(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser(
        "report",
        help="rebuild summary.md and report.html from the reports in the reports folder",
        description="Read conformance-*.json (or the given files), validate them, and write "
        "summary.md, report.html (with any load-*.json and PNG plots found beside them) and "
        "a YAML copy of each report.",
    )
    rep.add_argument("files", nargs="*", type=Path, help="reports to read (default: all)")
    rep.add_argument(
        "--schema",
        action="store_true",
        help="print the JSON schema of a conformance report and exit",
    )
    rep.add_argument("--reports-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    rep.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    if args.schema:
        print(json.dumps(ConformanceReport.model_json_schema(by_alias=True), indent=2))
        return 0
    reports_dir = Path(args.reports_dir)
    paths = list(args.files) or find_reports(reports_dir)
    if not paths:
        raise ServegateError(f"no conformance report in {reports_dir}/; run the suite first")
    reports = [read_report(p) for p in paths]
    reports_dir.mkdir(parents=True, exist_ok=True)
    for path, report in zip(paths, reports, strict=True):
        if path.suffix == ".json":
            write_yaml(report, path.with_name(path.stem + ".yaml"))
    for written in write_overviews(reports_dir, reports):
        print(f"[servegate] report: {written}")
    return 0
