"""The promotion gate: every requested profile succeeds on every target, no check that belongs
to no profile failed (checks of profiles not gated do not count), and the load thresholds hold.

The thresholds file is the one format of servegate.load.thresholds, shared with the Locust
run's ``--thresholds``: its limits on a load run's own figures apply to every load run read
(``kind: "load-run"``), its path limits (``thresholds: [{metric, min, max, files}]``) to any load
result. A path no file has fails the gate (a typo must not pass silently); so does a run marked
invalid (``validity.valid: false``) unless the file says ``allow_invalid: true``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from servegate.features import PROFILES, case_features
from servegate.load.thresholds import Thresholds, ThresholdsError, evaluate, load_thresholds
from servegate.report.load import LOAD_GLOB, LoadResult, read_load_results, resolve
from servegate.report.profiles import evaluate_profile
from servegate.report.schema import ConformanceReport


def read_thresholds(path: Path) -> Thresholds:
    """Read a thresholds file; ServegateError naming the file and the problem."""
    return load_thresholds(path)


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
    invalid: list[LoadResult] = []
    for r in results:
        if r.error:
            continue
        if r.valid is False and not thresholds.allow_invalid:
            invalid.append(r)
            findings.append(
                Finding(False, f"load {r.path.name}", f"run marked invalid: {r.invalid_reason}")
            )
            continue
        usable.append(r)
    if usable or not invalid:
        # (runs read but all invalid already failed above; "no run" would only repeat it)
        findings += _run_limits(usable, thresholds)
    for limit in thresholds.thresholds:
        pool = [r for r in usable if limit.applies_to(r.path.name)]
        seen = 0
        for r in pool:
            for where, value in resolve(r.data, limit.metric):
                subject = f"load {r.path.name} {where}"
                if isinstance(value, bool) or not isinstance(value, int | float):
                    findings.append(Finding(False, subject, f"not a number: {value!r}"))
                    continue
                seen += 1
                ok, detail = limit.check(float(value))
                findings.append(Finding(ok, subject, detail))
        if not seen and not any(limit.applies_to(r.path.name) for r in invalid):
            # (a figure of an invalid run only: the run already failed above)
            findings.append(
                Finding(
                    False,
                    f"load metric {limit.metric}",
                    f"found in no load result ({len(pool)} read)",
                )
            )
    return findings


def _run_limits(usable: list[LoadResult], thresholds: Thresholds) -> list[Finding]:
    """The limits on load runs' own figures, through the evaluator the Locust run uses."""
    names = thresholds.run_limits()
    if not names:
        return []
    runs = [r for r in usable if r.run is not None]
    if not runs:
        return [
            Finding(
                False,
                "load runs",
                f"{', '.join(names)} need a load run (kind load-run); none among "
                f"{len(usable)} usable result(s)",
            )
        ]
    findings = []
    for r in runs:
        subject = f"load {r.path.name}"
        try:
            breaches = evaluate(r.data, thresholds, validity=False, paths=False)
        except ThresholdsError as exc:
            findings.append(Finding(False, subject, str(exc)))
            continue
        findings += [Finding(False, subject, b.message) for b in breaches]
        if not breaches:
            findings.append(Finding(True, subject, f"{', '.join(names)} hold"))
    return findings


def run_gate(
    reports: list[ConformanceReport],
    reports_dir: Path,
    *,
    profiles: Iterable[str] = (),
    thresholds: Thresholds | None = None,
) -> GateResult:
    return GateResult(gate_profiles(reports, profiles) + gate_load(reports_dir, thresholds))
