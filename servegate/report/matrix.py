"""The side-by-side part of the HTML page: for a user choosing among implementations, what each
one passes, where they differ check by check, the upstream deviations each one is known for (with
the reference cited), and what each one does not support and why discovery said so."""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from servegate.features import PROFILES, case_features
from servegate.report.schema import Case, ConformanceReport

#: outcomes from worst to best: a cell shows the worst outcome among its cases
_RANK = ("failed", "error", "expected-deviation", "passed", "unsupported", "skipped")
#: outcome -> the CSS class of html.py's cells
_STATE = {
    "failed": "fail",
    "error": "fail",
    "expected-deviation": "deviation",
    "passed": "pass",
    "unsupported": "unsupported",
    "skipped": "skipped",
}


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _function(case: Case) -> str:
    """A check's function name, without its parameters: the row of the differences table."""
    return case.check.split("[", 1)[0].rsplit("::", 1)[-1]


@dataclass
class Cell:
    """The cases of one check function on one implementation."""

    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def worst(self) -> str:
        return next((o for o in _RANK if self.outcomes[o]), "skipped")

    def text(self) -> str:
        total = sum(self.outcomes.values())
        if self.outcomes["passed"] == total:
            return f"{total} passed" if total > 1 else "passed"
        return ", ".join(f"{n} {o}" for o in _RANK if (n := self.outcomes[o]))


def _offered(report: ConformanceReport, case: Case) -> bool:
    """Whether the case belongs to a profile the implementation offers (its core supported):
    a check of a protocol it does not speak says nothing a user choosing it needs."""
    needed = case_features(case.features, case.task)
    return any(
        p.name in PROFILES and PROFILES[p.name].covers(needed) and not p.missing_core
        for p in report.profiles
    )


def differences(reports: list[ConformanceReport]) -> dict[str, dict[str, Cell]]:
    """check function -> implementation slot -> cell, over the checks of the protocols each
    implementation offers, for the functions where something failed or deviated, or where the
    implementations that ran it did not all end the same way."""
    table: dict[str, dict[str, Cell]] = defaultdict(dict)
    for report in reports:
        slot = report.implementation.slot
        for case in report.cases:
            if not _offered(report, case):
                continue
            cell = table[_function(case)].setdefault(slot, Cell())
            cell.outcomes[case.outcome] += 1
    return {
        name: cells
        for name, cells in sorted(table.items())
        if any(c.worst in ("failed", "error", "expected-deviation") for c in cells.values())
        or len({c.text() for c in cells.values()}) > 1
    }


def _summary_html(reports: list[ConformanceReport]) -> list[str]:
    head = "".join(
        f"<th>{_e(r.implementation.slot)}<br><small>{_e(r.implementation.description)}</small></th>"
        for r in reports
    )
    rows = [f"<table class='side'><tr><th></th>{head}</tr>"]
    lines = (
        ("passed", "passed", "pass"),
        ("failed", "failed", "fail"),
        ("expected deviations (cited)", "expected_deviation", "deviation"),
        ("unsupported (with evidence)", "unsupported", "unsupported"),
    )
    for label, attr, css in lines:
        cells = ""
        for r in reports:
            n = int(getattr(r.counts, attr)) + (r.counts.error if attr == "failed" else 0)
            cells += f"<td class='{css if n else 'none'}'>{n}</td>"
        rows.append(f"<tr><td>{_e(label)}</td>{cells}</tr>")
    for name in dict.fromkeys(p.name for r in reports for p in r.profiles):
        cells = ""
        for r in reports:
            p = r.profile(name)
            if p is None or (not p.counts.passed and not p.counts.failed and p.missing_core):
                cells += "<td class='none'>not offered</td>"
                continue
            state = {"success": "pass", "partial": "deviation", "failure": "fail"}[p.result]
            cells += f"<td class='{state}' title='{_e(p.reason)}'>{_e(p.result)}</td>"
        rows.append(f"<tr><td>profile {_e(name)}</td>{cells}</tr>")
    rows.append("</table>")
    return rows


def _differences_html(reports: list[ConformanceReport]) -> list[str]:
    rows = differences(reports)
    if not rows:
        return ["<p class='meta'>Every check has the same outcome on every implementation.</p>"]
    slots = [r.implementation.slot for r in reports]
    out = [
        "<table class='diff'><tr><th>check</th>"
        + "".join(f"<th>{_e(s)}</th>" for s in slots)
        + "</tr>"
    ]
    for name, cells in rows.items():
        row = f"<tr><td>{_e(name)}</td>"
        for slot in slots:
            cell = cells.get(slot)
            if cell is None:
                row += "<td class='none'>-</td>"
            else:
                row += f"<td class='{_STATE[cell.worst]}'>{_e(cell.text())}</td>"
        out.append(row + "</tr>")
    out.append("</table>")
    return out


def _deviations_html(report: ConformanceReport) -> list[str]:
    """The expected deviations of one implementation, one line per cited entry."""
    entries: dict[str, tuple[str, str, list[str]]] = {}
    for case in report.cases:
        record = getattr(case, "deviation", None)
        if case.outcome != "expected-deviation" or record is None:
            continue
        _, _, checks = entries.setdefault(record.id, (record.reference, record.reason, []))
        checks.append(case.name)
    if not entries:
        return []
    out = ["<ul class='deviations'>"]
    for entry_id, (reference, reason, checks) in sorted(entries.items()):
        link = (
            f"<a href='{_e(reference)}'>{_e(reference)}</a>"
            if reference.startswith("http")
            else _e(reference)
        )
        out.append(
            f"<li><b>{_e(entry_id)}</b> ({len(checks)} check{'s' if len(checks) > 1 else ''}): "
            f"{_e(reason)}<br><small>{link}</small></li>"
        )
    out.append("</ul>")
    return out


def _unsupported_html(report: ConformanceReport) -> list[str]:
    """Features discovery found absent, with how it decided."""
    decisions = [d for d in getattr(report.implementation, "discovery", []) if not d.supported]
    if not decisions:
        return []
    out = ["<ul class='absent'>"]
    for decision in decisions:
        evidence = "; ".join(
            f"{ev.request} → {ev.status if ev.status is not None else 'no answer'}"
            for ev in decision.evidence[:2]
        )
        out.append(
            f"<li><b>{_e(decision.feature)}</b>: {_e(decision.how)}"
            + (f"<br><small>{_e(evidence)}</small>" if evidence else "")
            + "</li>"
        )
    out.append("</ul>")
    return out


def implementations_html(reports: list[ConformanceReport]) -> list[str]:
    """The side-by-side sections; empty for a run over a single implementation."""
    if len(reports) < 2:
        return []
    out = [
        "<h2>Implementations side by side</h2>",
        "<p class='meta'>Each column is one implementation; a profile it does not offer at all "
        "(its core feature absent) reads 'not offered'.</p>",
        *_summary_html(reports),
        "<h3>Where they differ</h3>",
        "<p class='meta'>Checks that failed or deviated somewhere, or ended differently on the "
        "implementations that ran them; a cell counts the check's cases there, '-' where the "
        "implementation does not offer the check's protocol.</p>",
        *_differences_html(reports),
    ]
    for report in reports:
        deviations = _deviations_html(report)
        absent = _unsupported_html(report)
        if not deviations and not absent:
            continue
        out.append(
            f"<h3>{_e(report.implementation.slot)}: {_e(report.implementation.description)}</h3>"
        )
        if deviations:
            out += ["<div>Known upstream deviations:</div>", *deviations]
        if absent:
            out += ["<div>Not supported, as discovery found:</div>", *absent]
    return out
