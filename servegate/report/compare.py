"""Two conformance reports side by side (say the image in production and the candidate), and
what changed between them: profiles, counts, and each check whose outcome moved."""

from __future__ import annotations

import html
from dataclasses import dataclass

from servegate.report.html import CSS, PROFILE_STATE
from servegate.report.markdown import MARK
from servegate.report.schema import OUTCOMES, ConformanceReport

#: how good an outcome is, to tell a regression from a fix
RANK = {
    "passed": 3,
    "expected-deviation": 2,
    "unsupported": 1,
    "skipped": 1,
    "failed": 0,
    "error": 0,
}


@dataclass(frozen=True)
class CheckChange:
    check: str
    before: str | None
    after: str | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "regression" if self.after in ("failed", "error") else "new"
        if self.after is None:
            return "removed"
        if RANK[self.after] < RANK[self.before]:
            return "regression"
        if RANK[self.after] > RANK[self.before]:
            return "fix"
        return "changed"


@dataclass(frozen=True)
class ProfileChange:
    name: str
    before: str | None
    after: str | None


@dataclass
class Comparison:
    base: ConformanceReport
    candidate: ConformanceReport
    profiles: list[ProfileChange]
    changes: list[CheckChange]

    @property
    def regressions(self) -> list[CheckChange]:
        return [c for c in self.changes if c.kind == "regression"]

    @property
    def profile_regressions(self) -> list[ProfileChange]:
        order = {"success": 2, "partial": 1, "failure": 0, None: -1}
        return [
            p for p in self.profiles if p.before is not None and order[p.after] < order[p.before]
        ]


def compare(base: ConformanceReport, candidate: ConformanceReport) -> Comparison:
    """What changed from ``base`` to ``candidate``, checks matched by their target-free id."""
    before = {c.check: c.outcome for c in base.cases}
    after = {c.check: c.outcome for c in candidate.cases}
    changes = [
        CheckChange(check, before.get(check), after.get(check))
        for check in sorted(set(before) | set(after))
        if before.get(check) != after.get(check)
    ]
    names = list(
        dict.fromkeys([p.name for p in base.profiles] + [p.name for p in candidate.profiles])
    )
    profiles = []
    for name in names:
        b, a = base.profile(name), candidate.profile(name)
        profiles.append(ProfileChange(name, b.result if b else None, a.result if a else None))
    return Comparison(base, candidate, profiles, changes)


def identity_problems(cmp: Comparison, base_name: str, candidate_name: str) -> list[str]:
    """One line per check that did not end the same way in both reports (its id, then each
    side's outcome), and per profile whose result differs: empty when the two runs agree on
    every check. For two runs of one implementation (local processes and containers, say)."""
    lines = [
        f"{ch.check}: {base_name} {ch.before or 'not run'}, "
        f"{candidate_name} {ch.after or 'not run'}"
        for ch in cmp.changes
    ]
    lines += [
        f"profile {p.name}: {base_name} {p.before or 'absent'}, "
        f"{candidate_name} {p.after or 'absent'}"
        for p in cmp.profiles
        if p.before != p.after
    ]
    return lines


def _label(report: ConformanceReport) -> str:
    impl = report.implementation
    return impl.image or impl.description or impl.slot


def render_markdown(cmp: Comparison) -> str:
    b, c = cmp.base, cmp.candidate
    lines = [
        "## servegate comparison",
        "",
        "| | base | candidate |",
        "|---|---|---|",
        f"| implementation | {_label(b)} | {_label(c)} |",
        f"| target | {b.implementation.slot} | {c.implementation.slot} |",
        f"| date | {b.date} | {c.date} |",
        f"| checks | {b.result} | {c.result} |",
    ]
    for outcome in OUTCOMES:
        lines.append(f"| {outcome} | {b.counts.get(outcome)} | {c.counts.get(outcome)} |")
    for p in cmp.profiles:
        before = f"{MARK[p.before]} {p.before}" if p.before else "-"
        after = f"{MARK[p.after]} {p.after}" if p.after else "-"
        lines.append(f"| profile {p.name} | {before} | {after} |")
    lines.append("")
    if not cmp.changes:
        lines += ["No check changed its outcome.", ""]
    else:
        lines += [
            f"{len(cmp.changes)} check(s) changed, {len(cmp.regressions)} regression(s):",
            "",
            "| change | check | base | candidate |",
            "|---|---|---|---|",
        ]
        order = {"regression": 0, "fix": 1, "changed": 2, "new": 3, "removed": 4}
        for ch in sorted(cmp.changes, key=lambda x: (order[x.kind], x.check)):
            lines.append(f"| {ch.kind} | {ch.check} | {ch.before or '-'} | {ch.after or '-'} |")
        lines.append("")
    return "\n".join(lines)


def render_html(cmp: Comparison) -> str:
    """The comparison as a single HTML page, base and candidate in two columns."""
    e = html.escape
    b, c = cmp.base, cmp.candidate
    rows = [
        ("implementation", _label(b), _label(c)),
        ("target", b.implementation.slot, c.implementation.slot),
        ("date", b.date, c.date),
        ("checks", b.result, c.result),
        *[(o, str(b.counts.get(o)), str(c.counts.get(o))) for o in OUTCOMES],
    ]
    body = [
        "<h1>servegate comparison</h1>",
        "<table><tr><th></th><th>base</th><th>candidate</th></tr>",
        *[f"<tr><td>{e(k)}</td><td>{e(x)}</td><td>{e(y)}</td></tr>" for k, x, y in rows],
    ]
    for p in cmp.profiles:
        cells = [
            f"<td class='{PROFILE_STATE[r]}'>{e(r)}</td>" if r else "<td class='none'>-</td>"
            for r in (p.before, p.after)
        ]
        body.append(f"<tr><td>profile {e(p.name)}</td>{''.join(cells)}</tr>")
    body.append("</table>")
    state = {
        "regression": "fail",
        "fix": "pass",
        "changed": "skipped",
        "new": "none",
        "removed": "unsupported",
    }
    body.append(f"<h2>Changed checks ({len(cmp.changes)})</h2>")
    body.append("<table><tr><th>change</th><th>check</th><th>base</th><th>candidate</th></tr>")
    for ch in cmp.changes:
        body.append(
            f"<tr><td class='{state[ch.kind]}'>{e(ch.kind)}</td><td>{e(ch.check)}</td>"
            f"<td>{e(ch.before or '-')}</td><td>{e(ch.after or '-')}</td></tr>"
        )
    body.append("</table>")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>servegate comparison</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
