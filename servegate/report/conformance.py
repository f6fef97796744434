"""The conformance report: per target, every check with its outcome, written as JSON and
Markdown (a CI step summary), plus one summary across targets."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from servegate import __version__
from servegate.features import UNSUPPORTED_PREFIX
from servegate.redaction import redact_text
from servegate.targets import Target

OUTCOMES = ("passed", "failed", "expected-deviation", "unsupported", "skipped", "error")
#: longest failure message kept per case
MESSAGE_LIMIT = 4000


@dataclass
class CaseResult:
    nodeid: str
    name: str
    target: str
    task: str | None
    features: tuple[str, ...]
    rule: str
    outcome: str
    message: str
    duration: float

    @classmethod
    def from_report(
        cls,
        report: pytest.TestReport,
        *,
        target: str,
        task: str | None,
        features: tuple[str, ...],
        rule: str,
    ) -> CaseResult:
        message = ""
        if hasattr(report, "wasxfail"):
            outcome = "expected-deviation"
            message = str(report.wasxfail)
        elif report.skipped:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            reason = reason.removeprefix("Skipped: ")
            outcome = "unsupported" if reason.startswith(UNSUPPORTED_PREFIX) else "skipped"
            message = reason
        elif report.failed:
            outcome = "failed" if report.when == "call" else "error"
            message = _failure_text(report)
        else:
            outcome = "passed"
        name = report.nodeid.split("::")[-1]
        return cls(
            nodeid=report.nodeid,
            name=name,
            target=target,
            task=task,
            features=features,
            rule=rule,
            outcome=outcome,
            message=redact_text(message)[:MESSAGE_LIMIT],
            duration=round(report.duration, 3),
        )


def _failure_text(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return str(crash.message)
    return str(report.longrepr)


def _target_info(target: Target | None, slot: str) -> dict[str, Any]:
    if target is None:
        return {"name": slot, "implementation": "unknown (never reached)"}
    return {
        "name": target.name,
        "implementation": target.implementation,
        "http_url": target.http_url,
        "grpc_address": target.grpc_address,
        "features": sorted(target.features),
        "models": {
            m.name: {"task": m.task, "task_source": m.task_source} for m in target.models.values()
        },
    }


def build_report(
    slot: str, target: Target | None, results: list[CaseResult], started: float
) -> dict[str, Any]:
    counts = Counter(r.outcome for r in results)
    by_task: dict[str, Counter[str]] = {}
    for r in results:
        by_task.setdefault(r.task or "-", Counter())[r.outcome] += 1
    return {
        "report_version": 1,
        "suite": {"name": "servegate", "version": __version__},
        "date": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "implementation": _target_info(target, slot),
        "result": "failure" if counts["failed"] or counts["error"] else "success",
        "counts": {o: counts.get(o, 0) for o in OUTCOMES},
        "tasks": {t: {o: c.get(o, 0) for o in OUTCOMES} for t, c in sorted(by_task.items())},
        "cases": [asdict(r) for r in results],
    }


def render_markdown(report: dict[str, Any]) -> str:
    impl = report["implementation"]
    lines = [
        f"## servegate conformance: {impl['name']}",
        "",
        f"- implementation: {impl['implementation']}",
        f"- url: {impl.get('http_url', '-')}  gRPC: {impl.get('grpc_address') or '-'}",
        f"- date: {report['date']}  suite: servegate {report['suite']['version']}",
        f"- result: **{report['result']}**  "
        + ", ".join(f"{k} {v}" for k, v in report["counts"].items()),
        "",
        "| task | " + " | ".join(OUTCOMES) + " |",
        "|---|" + "---|" * len(OUTCOMES),
    ]
    for task, counts in report["tasks"].items():
        lines.append(f"| {task} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
    failures = [c for c in report["cases"] if c["outcome"] in ("failed", "error")]
    if failures:
        lines += ["", "### Failures", ""]
        for case in failures:
            lines += [f"**{case['name']}** ({case['rule'] or 'no rule text'})", "", "```"]
            lines += [case["message"].strip(), "```", ""]
    unsupported = [c for c in report["cases"] if c["outcome"] == "unsupported"]
    if unsupported:
        lines += ["", "### Unsupported", ""]
        lines += [f"- {c['name']}: {c['message']}" for c in unsupported]
    return "\n".join(lines) + "\n"


def write_reports(
    reports_dir: Path,
    results: list[CaseResult],
    targets: dict[str, Target],
    *,
    started: float,
) -> list[Path]:
    """Write conformance-<target>.json/.md per target and summary.md; return the paths."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    slots = list(dict.fromkeys(r.target for r in results))
    written: list[Path] = []
    summary = ["# servegate conformance summary", ""]
    for slot in slots:
        report = build_report(slot, targets.get(slot), [r for r in results if r.target == slot],
                              started)
        json_path = reports_dir / f"conformance-{slot}.json"
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        md = render_markdown(report)
        md_path = reports_dir / f"conformance-{slot}.md"
        md_path.write_text(md)
        written += [json_path, md_path]
        summary.append(md)
    summary_path = reports_dir / "summary.md"
    summary_path.write_text("\n".join(summary))
    written.append(summary_path)
    return written
