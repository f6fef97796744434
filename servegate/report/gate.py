"""The promotion gate: every requested profile succeeds on every target, no check that belongs
to no profile failed (checks of profiles not gated do not count), and the load thresholds hold.

The thresholds file (YAML or JSON) names figures of the load results by path
(servegate.report.load.resolve)::

    files: "load-*.json"        # which load results to read (default), in the reports folder
    require: true               # no load result at all fails the gate (default true)
    allow_invalid: false        # a run marked "valid": false fails the gate (default)
    thresholds:
      - metric: summary.requests_per_second
        min: 20
      - metric: "scenarios.*.p99_ms"     # every scenario's p99
        max: 800
      - metric: summary.error_rate
        max: 0.01
        files: "load-v2*.json"            # only these results

A metric is checked in every file that has it; a metric no file has fails the gate (a typo must
not pass silently).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from servegate.errors import ServegateError
from servegate.features import PROFILES, case_features
from servegate.report.load import LOAD_GLOB, LoadResult, read_load_results, resolve
from servegate.report.profiles import evaluate_profile
from servegate.report.schema import ConformanceReport


class Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str
    min: float | None = None
    max: float | None = None
    files: str | None = None

    @model_validator(mode="after")
    def _bound(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError(f"threshold {self.metric!r} needs min or max")
        return self


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: str = LOAD_GLOB
    require: bool = True
    allow_invalid: bool = False
    thresholds: list[Threshold] = []


def read_thresholds(path: Path) -> Thresholds:
    """Read a thresholds file; ServegateError naming the file and the problem."""
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ServegateError(f"thresholds file {path}: {exc}") from None
    if isinstance(data, list):
        data = {"thresholds": data}
    try:
        return Thresholds.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ServegateError(f"thresholds file {path}: {problems}") from None


@dataclass(frozen=True)
class Finding:
    ok: bool
    subject: str
    detail: str

    def line(self) -> str:
        return f"{self.subject}: {self.detail}"


@dataclass
class GateResult:
    findings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.findings) and all(f.ok for f in self.findings)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def headline(self) -> str:
        """The one line a CI log shows first."""
        if not self.findings:
            return "FAIL: nothing to gate on (no profile, no threshold)"
        if self.passed:
            return f"PASS: {len(self.findings)} condition(s) hold"
        first, rest = self.failures[0], len(self.failures) - 1
        return "FAIL: " + first.line() + (f" (and {rest} more problem(s))" if rest else "")

    def markdown(self) -> str:
        lines = [
            f"### servegate gate: {self.headline()}",
            "",
            "| | condition | detail |",
            "|---|---|---|",
        ]
        for f in self.findings:
            detail = f.detail.replace("|", "\\|")
            lines.append(f"| {'✅' if f.ok else '❌'} | {f.subject} | {detail} |")
        return "\n".join(lines) + "\n"


def gate_profiles(reports: list[ConformanceReport], profiles: Iterable[str] = ()) -> list[Finding]:
    """A finding per (target, profile): the profiles asked for, else those the run requested,
    else every profile the report shows; plus failed checks that belong to no profile."""
    asked = list(profiles)
    findings: list[Finding] = []
    for report in reports:
        slot = report.implementation.slot
        if report.error is not None:
            # checks never ran: say why first, whatever the profiles would say
            findings.append(
                Finding(
                    False,
                    f"target {slot}",
                    f"not tested ({report.error.kind}, exit {report.error.exit_code}): "
                    f"{report.error.message}",
                )
            )
            continue
        names = asked or report.requested_profiles or [p.name for p in report.profiles]
        if not names:
            findings.append(Finding(False, f"target {slot}", "no profile applies to it"))
        for name in names:
            subject = f"profile {name} on {slot}"
            if name in PROFILES:
                result = evaluate_profile(
                    PROFILES[name], report.cases, report.implementation.features, requested=True
                )
            else:
                stored = report.profile(name)
                if stored is None:
                    findings.append(Finding(False, subject, "unknown profile, not in the report"))
                    continue
                result = stored
            c = result.counts
            detail = result.result + (
                f": {result.reason}"
                if result.reason
                else f" ({c.passed} passed, {c.expected_deviation} expected-deviation, "
                f"{c.unsupported} unsupported)"
            )
            findings.append(Finding(result.result == "success", subject, detail))
        outside = [
            c
            for c in report.cases
            if c.outcome in ("failed", "error")
            and not any(p.covers(case_features(c.features, c.task)) for p in PROFILES.values())
        ]
        if outside:
            shown = ", ".join(c.name for c in outside[:3])
            findings.append(
                Finding(
                    False,
                    f"checks on {slot}",
                    f"{len(outside)} failed that belong to no profile: {shown}",
                )
            )
    return findings


def _check(threshold: Threshold, name: str, where: str, value: float) -> Finding:
    subject = f"load {name} {where}"
    if threshold.min is not None and value < threshold.min:
        return Finding(False, subject, f"{value:g} < min {threshold.min:g}")
    if threshold.max is not None and value > threshold.max:
        return Finding(False, subject, f"{value:g} > max {threshold.max:g}")
    bounds = " and ".join(
        b
        for b in (
            f">= {threshold.min:g}" if threshold.min is not None else "",
            f"<= {threshold.max:g}" if threshold.max is not None else "",
        )
        if b
    )
    return Finding(True, subject, f"{value:g} {bounds}")


def gate_load(reports_dir: Path, thresholds: Thresholds | None) -> list[Finding]:
    """Findings for the load results: their own verdicts always; validity and the thresholds
    when a thresholds file is given."""
    findings: list[Finding] = []
    results = read_load_results(reports_dir, thresholds.files if thresholds else LOAD_GLOB)
    for r in results:
        if r.error and thresholds is not None:
            findings.append(Finding(False, f"load {r.path.name}", f"unreadable: {r.error}"))
        if r.own_verdict is False:
            why = "; ".join(r.breaches) or "no breach named"
            findings.append(Finding(False, f"load {r.path.name}", f"its thresholds broke: {why}"))
    if thresholds is None:
        return findings
    if not results and thresholds.require:
        findings.append(
            Finding(False, "load", f"no load result matches {reports_dir / thresholds.files}")
        )
        return findings
    usable: list[LoadResult] = []
    for r in results:
        if r.error:
            continue
        if r.valid is False and not thresholds.allow_invalid:
            findings.append(
                Finding(
                    False,
                    f"load {r.path.name}",
                    f"run marked invalid: {r.invalid_reason or 'no reason given'}",
                )
            )
            continue
        usable.append(r)
    for threshold in thresholds.thresholds:
        pool = [r for r in usable if threshold.files is None or r.path.match(threshold.files)]
        seen = 0
        for r in pool:
            for where, value in resolve(r.data, threshold.metric):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    findings.append(
                        Finding(False, f"load {r.path.name} {where}", f"not a number: {value!r}")
                    )
                    continue
                seen += 1
                findings.append(_check(threshold, r.path.name, where, float(value)))
        if not seen:
            findings.append(
                Finding(
                    False,
                    f"load metric {threshold.metric}",
                    f"found in no load result ({len(pool)} read)",
                )
            )
    return findings


def run_gate(
    reports: list[ConformanceReport],
    reports_dir: Path,
    *,
    profiles: Iterable[str] = (),
    thresholds: Thresholds | None = None,
) -> GateResult:
    return GateResult(gate_profiles(reports, profiles) + gate_load(reports_dir, thresholds))
