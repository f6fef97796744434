"""``servegate compare``: two conformance reports side by side (production and candidate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from servegate.report.compare import compare, identity_problems, render_html, render_markdown
from servegate.report.schema import read_report


def register(sub: argparse._SubParsersAction) -> None:
    cmp = sub.add_parser(
        "compare",
        help="two conformance reports side by side and what changed between them",
        description="Compare a base report (e.g. the image in production) with a candidate's. "
        "Prints Markdown; exit 1 with --fail-on-regression when a check or a profile got worse.",
    )
    cmp.add_argument("base", type=Path, help="the report to compare against (JSON or YAML)")
    cmp.add_argument("candidate", type=Path, help="the new report (JSON or YAML)")
    cmp.add_argument(
        "--html",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the comparison as a single HTML page",
    )
    cmp.add_argument(
        "--markdown",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the Markdown to FILE instead of printing it",
    )
    cmp.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when a check's outcome or a profile's result got worse",
    )
    cmp.add_argument(
        "--fail-on-change",
        action="store_true",
        help="exit 1 when any check ended differently (two runs of one implementation, e.g. "
        "local processes and containers, must agree on every check); lists each",
    )
    cmp.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    result = compare(read_report(args.base), read_report(args.candidate))
    text = render_markdown(result)
    if args.markdown is not None:
        args.markdown.write_text(text, encoding="utf-8")
    else:
        print(text)
    if args.html is not None:
        args.html.write_text(render_html(result), encoding="utf-8")
    if args.fail_on_change:
        problems = identity_problems(result, "base", "candidate")
        if problems:
            print(f"servegate compare: {len(problems)} difference(s):")
            for line in problems:
                print(f"  {line}")
            return 1
    regressions = len(result.regressions) + len(result.profile_regressions)
    if args.fail_on_regression and regressions:
        first = (result.profile_regressions or result.regressions)[0]
        what = getattr(first, "check", None) or f"profile {getattr(first, 'name', '')}"
        print(
            f"servegate compare: {regressions} regression(s), first: {what} "
            f"{first.before} -> {first.after}"
        )
        return 1
    return 0
