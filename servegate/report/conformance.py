"""The conformance report of a run: each check's outcome (with the exchange behind a failure)
per target, the profiles' results, and the files written at the end of the run."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from servegate import __version__
from servegate.deviations import Verdict
from servegate.protocols.exchange import Exchange
from servegate.redaction import redact_data, redact_text
from servegate.report.html import write_html
from servegate.report.markdown import render_markdown, render_summary
from servegate.report.profiles import evaluate_profiles
from servegate.report.schema import (
    Case,
    ConformanceReport,
    Counts,
    DecisionRecord,
    DeviationRecord,
    EvidenceRecord,
    ExchangeRecord,
    Failure,
    Implementation,
    ModelRecord,
    Suite,
    TargetError,
    UnsupportedRecord,
    write_json,
    write_yaml,
)
from servegate.targets import Decision, Target
from servegate.unsupported import Unsupported

#: longest failure message kept per case
MESSAGE_LIMIT = 4000


def outcome_of(report: pytest.TestReport, exc: BaseException | None = None) -> tuple[str, str]:
    """The report outcome of a pytest phase and its message (skip reason, failure text); a skip
    raised as :class:`Unsupported` is the *unsupported* outcome."""
    if hasattr(report, "wasxfail"):
        return "expected-deviation", str(report.wasxfail)
    if report.skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        if isinstance(exc, Unsupported):
            return "unsupported", exc.reason
        return "skipped", reason
    if report.failed:
        return ("failed" if report.when == "call" else "error"), _failure_text(report)
    return "passed", ""


def _failure_text(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return str(crash.message)
    return str(report.longrepr)


def exchange_record(exchange: Exchange, secrets: Iterable[str] = ()) -> ExchangeRecord:
    """An exchange as the report keeps it: headers and bodies redacted."""
    return ExchangeRecord.model_validate(redact_data(exchange.to_dict(), secrets))


def failure_of(
    exc: BaseException | None, rule: str, message: str, secrets: Iterable[str] = ()
) -> Failure:
    """The rule, problem and exchange of a failed check, from its exception when it has them
    (servegate.checks.RuleViolation carries the reply it judged as ``evidence``)."""
    secrets = tuple(secrets)
    evidence = getattr(exc, "evidence", None)
    exchange = getattr(evidence, "exchange", None) or getattr(exc, "exchange", None)
    problem = getattr(exc, "problem", None) or (message.strip().splitlines() or [""])[0]
    return Failure(
        rule=redact_text(str(getattr(exc, "rule", None) or rule), secrets),
        problem=redact_text(str(problem), secrets)[:MESSAGE_LIMIT],
        exchange=exchange_record(exchange, secrets) if isinstance(exchange, Exchange) else None,
    )


def make_case(
    report: pytest.TestReport,
    *,
    check: str,
    task: str | None,
    features: tuple[str, ...],
    rule: str,
    exc: BaseException | None = None,
    secrets: Iterable[str] = (),
    deviation: Verdict | None = None,
) -> Case:
    """One check's result from the pytest report of its call (or failed setup), with the
    expected-deviation entry that judged it, if one did."""
    secrets = tuple(secrets)
    outcome, message = outcome_of(report, exc)
    if deviation is not None and deviation.kind == "unmatched":
        message = f"{deviation.message}\n{message}"
    failure = None
    if outcome in ("failed", "error", "expected-deviation"):
        failure = failure_of(exc, rule, message, secrets)
    missing = None
    if outcome == "unsupported" and isinstance(exc, Unsupported):
        missing = UnsupportedRecord(
            features=list(exc.features),
            reason=redact_text(exc.reason, secrets),
            decisions=[decision_record(d, secrets) for d in exc.decisions],
        )
    return Case(
        check=check,
        nodeid=report.nodeid,
        name=report.nodeid.split("::")[-1],
        task=task,
        features=list(features),
        rule=rule,
        outcome=outcome,  # type: ignore[arg-type]
        message=redact_text(message, secrets)[:MESSAGE_LIMIT],
        duration=round(report.duration, 3),
        failure=failure,
        deviation=_deviation_record(deviation),
        unsupported=missing,
    )


def _deviation_record(verdict: Verdict | None) -> DeviationRecord | None:
    if verdict is None or verdict.deviation is None:
        return None
    entry = verdict.deviation
    return DeviationRecord(
        id=entry.id,
        verdict=verdict.kind,  # type: ignore[arg-type]
        reference=entry.reference,
        reason=entry.reason,
        source=entry.source,
    )


def decision_record(decision: Decision, secrets: Iterable[str] = ()) -> DecisionRecord:
    """A discovery decision as the report keeps it (excerpts redacted)."""
    secrets = tuple(secrets)
    return DecisionRecord(
        feature=decision.feature,
        supported=decision.supported,
        how=redact_text(decision.how, secrets),
        broken=decision.broken,
        evidence=[
            EvidenceRecord(
                request=redact_text(e.request, secrets),
                status=e.status,
                excerpt=redact_text(e.excerpt, secrets),
            )
            for e in decision.evidence
        ],
    )


_NAME_VERSION = re.compile(r"^([A-Za-z][\w .+-]*?)\s+v?(\d+(?:\.\d+)+)")
_VERSION = re.compile(r"\d+(?:\.\d+)+")


def _name_version(description: str) -> tuple[str | None, str | None]:
    match = _NAME_VERSION.match(description)
    if match:
        return match.group(1).strip(), match.group(2)
    version = _VERSION.search(description)
    return None, version.group(0) if version else None


def implementation_of(
    slot: str,
    target: Target | None,
    features: Iterable[str],
    image: str | None,
    secrets: Iterable[str] = (),
) -> Implementation:
    if target is None:
        return Implementation(slot=slot, description="unknown (never reached)", image=image)
    name, version = _name_version(target.implementation)
    return Implementation(
        slot=slot,
        description=target.implementation,
        name=name,
        version=version,
        image=image,
        url=redact_text(target.http_url),
        grpc_address=target.grpc_address,
        features=sorted(features),
        discovered_features=sorted(target.features),
        models={
            m.name: ModelRecord(
                task=m.task, task_source=m.task_source, encodings=sorted(m.encodings)
            )
            for m in target.models.values()
        },
        discovery=[decision_record(d, secrets) for d in target.discovery],
    )


def build_report(
    slot: str,
    target: Target | None,
    cases: list[Case],
    started: float,
    *,
    features: Iterable[str] | None = None,
    image: str | None = None,
    requested_profiles: Iterable[str] = (),
    error: TargetError | None = None,
    secrets: Iterable[str] = (),
) -> ConformanceReport:
    """The report of one target. ``features`` are those the checks ran against (default: the
    target's discovered ones); ``error`` says why it could not be tested, if it could not."""
    have = sorted(features if features is not None else (target.features if target else ()))
    by_task: dict[str, list[str]] = {}
    for case in cases:
        by_task.setdefault(case.task or "-", []).append(case.outcome)
    counts = Counts.of([c.outcome for c in cases])
    requested = list(requested_profiles)
    return ConformanceReport(
        suite=Suite(version=__version__),
        date=dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        implementation=implementation_of(slot, target, have, image, secrets),
        result="failure" if counts.failed or counts.error or error else "success",
        error=error,
        counts=counts,
        requested_profiles=requested,
        profiles=evaluate_profiles(cases, have, requested, error=error.message if error else ""),
        tasks={t: Counts.of(o) for t, o in sorted(by_task.items())},
        cases=cases,
    )


@dataclass
class TargetRun:
    """What the report of one target is made from."""

    slot: str
    target: Target | None
    cases: list[Case]
    features: frozenset[str] | None = None
    #: why the target could not be tested, when it could not
    error: TargetError | None = None


def write_reports(
    reports_dir: Path,
    runs: list[TargetRun],
    *,
    started: float,
    image: str | None = None,
    requested_profiles: Iterable[str] = (),
    secrets: Iterable[str] = (),
) -> tuple[list[ConformanceReport], list[Path]]:
    """Write conformance-<target>.json/.yaml/.md per target, summary.md and report.html;
    return the reports and the paths written."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    requested = list(requested_profiles)
    written: list[Path] = []
    reports: list[ConformanceReport] = []
    for run in runs:
        report = build_report(
            run.slot,
            run.target,
            run.cases,
            started,
            features=run.features,
            image=image,
            requested_profiles=requested,
            error=run.error,
            secrets=secrets,
        )
        reports.append(report)
        # the slot may hold dots (a host name), so no Path.with_suffix here
        stem = f"conformance-{run.slot}"
        written.append(write_json(report, reports_dir / f"{stem}.json"))
        written.append(write_yaml(report, reports_dir / f"{stem}.yaml"))
        md_path = reports_dir / f"{stem}.md"
        md_path.write_text(render_markdown(report))
        written.append(md_path)
    written += write_overviews(reports_dir, reports)
    return reports, written


def write_overviews(reports_dir: Path, reports: list[ConformanceReport]) -> list[Path]:
    """summary.md and report.html over ``reports`` (and the load results in the folder)."""
    summary_path = reports_dir / "summary.md"
    summary_path.write_text(render_summary(reports))
    html_path = write_html(reports, reports_dir, reports_dir / "report.html")
    return [summary_path, html_path]


def check_id(nodeid: str, params: dict[str, Any]) -> str:
    """A check's id that is the same on every target: the node id without the target
    parameter, the other parameters spelt name=value."""
    base = nodeid.split("[", 1)[0]
    rest = [f"{k}={_short(v)}" for k, v in params.items() if k != "target"]
    return base + (f"[{','.join(rest)}]" if rest else "")


#: longest parameter value an id spells out (a bad-input case may carry megabytes)
PARAM_LIMIT = 80


def _short(value: Any) -> str:
    # str(), not repr(): a case object names itself by its id there, where its repr may hold
    # a function's memory address, which differs from run to run and would make one check
    # two different checks to a comparison of two runs
    text = str(value)
    if len(text) > PARAM_LIMIT:
        return text[:PARAM_LIMIT] + f"...<{len(text)} chars>"
    return text
