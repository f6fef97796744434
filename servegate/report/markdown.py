"""Markdown renderings of conformance reports, sized for a CI step summary (GitHub's limit is
1 MiB per step): bodies are cut short and long failure lists are capped."""

from __future__ import annotations

from servegate.report.schema import (
    OUTCOMES,
    Case,
    ConformanceReport,
    DecisionRecord,
    ExchangeRecord,
)

MARK = {"success": "✅", "partial": "🟡", "failure": "❌"}
#: failures shown in full per target; the rest are listed by name
FAILURES_SHOWN = 25
#: characters of a request or response body a Markdown summary keeps
BODY_LIMIT = 800


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _cut(text: str, limit: int = BODY_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + f" … ({len(text) - limit} more)"


def _fence(text: str) -> list[str]:
    fence = "````" if "```" in text else "```"
    return [fence, text.rstrip(), fence]


def render_exchange(exchange: ExchangeRecord) -> list[str]:
    lines = [f"request: `{exchange.method} {exchange.url}`"]
    if exchange.request_body:
        lines += _fence(_cut(exchange.request_body))
    ctype = exchange.response_headers.get("content-type", "")
    status = "none" if exchange.status is None else str(exchange.status)
    lines.append(f"response: `{status}`" + (f" ({ctype})" if ctype else ""))
    if exchange.response_body:
        lines += _fence(_cut(exchange.response_body))
    return lines


def render_failure(case: Case) -> list[str]:
    failure = case.failure
    rule = failure.rule if failure else case.rule
    lines = [f"<details><summary><b>{case.name}</b>: {_cell(rule or 'no rule text')}</summary>", ""]
    if failure is not None:
        lines += [f"problem: {failure.problem}", ""]
        if failure.exchange is not None:
            lines += [*render_exchange(failure.exchange), ""]
        elif case.message:
            lines += [*_fence(_cut(case.message, 2 * BODY_LIMIT)), ""]
    else:
        lines += [*_fence(_cut(case.message, 2 * BODY_LIMIT)), ""]
    lines += ["</details>", ""]
    return lines


def render_decision(decision: DecisionRecord) -> str:
    """One discovery decision as a table row: feature, verdict, how, first evidence."""
    verdict = (
        ("supported (broken)" if decision.broken else "supported")
        if decision.supported
        else "unsupported"
    )
    seen = "; ".join(
        f"`{e.request}` → {e.status if e.status is not None else 'no response'}"
        + (f" {_cut(e.excerpt, 120)}" if e.excerpt else "")
        for e in decision.evidence[:2]
    )
    return f"| {decision.feature} | {verdict} | {_cell(decision.how)} | {_cell(seen or '-')} |"


def render_markdown(report: ConformanceReport, *, heading: str = "##") -> str:
    """One target's report."""
    impl = report.implementation
    counts = report.counts
    lines = [
        f"{heading} servegate conformance: {impl.slot}",
        "",
        f"- implementation: {impl.description}",
    ]
    if impl.image:
        lines.append(f"- image: `{impl.image}`")
    lines += [
        f"- url: {impl.url or '-'}  gRPC: {impl.grpc_address or '-'}",
        f"- date: {report.date}  suite: servegate {report.suite.version}",
        f"- checks: **{report.result}**; " + ", ".join(f"{o} {counts.get(o)}" for o in OUTCOMES),
        "",
    ]
    if report.error is not None:
        lines += [
            f"**Not tested** ({report.error.kind}, exit code {report.error.exit_code}): "
            f"{_cell(report.error.message)}",
            "",
        ]
    if report.profiles:
        lines += [
            "| profile | result | passed | failed | expected-deviation | unsupported | why |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in report.profiles:
            c = p.counts
            name = f"**{p.name}**" if p.requested else p.name
            lines.append(
                f"| {name} | {MARK[p.result]} {p.result} | {c.passed} | {c.failed + c.error} | "
                f"{c.expected_deviation} | {c.unsupported} | {_cell(p.reason or '-')} |"
            )
        lines.append("")
    if report.tasks:
        lines += ["| task | " + " | ".join(OUTCOMES) + " |", "|---|" + "---|" * len(OUTCOMES)]
        for task, tc in report.tasks.items():
            lines.append(f"| {task} | " + " | ".join(str(tc.get(o)) for o in OUTCOMES) + " |")
        lines.append("")
    failures = [c for c in report.cases if c.outcome in ("failed", "error")]
    if failures:
        lines += [f"{heading}# Failures ({len(failures)})", ""]
        for case in failures[:FAILURES_SHOWN]:
            lines += render_failure(case)
        rest = failures[FAILURES_SHOWN:]
        if rest:
            lines += [f"and {len(rest)} more: " + ", ".join(c.name for c in rest), ""]
    deviations = [c for c in report.cases if c.outcome == "expected-deviation"]
    if deviations:
        lines += [f"{heading}# Expected deviations ({len(deviations)})", ""]
        lines += [f"- {c.name}: {_cell(c.message)}" for c in deviations]
        lines.append("")
    unsupported = [c for c in report.cases if c.outcome == "unsupported"]
    if unsupported:
        lines += [
            f"<details><summary>Unsupported ({len(unsupported)})</summary>",
            "",
            *[f"- {c.name}: {_cell(c.message)}" for c in unsupported],
            "",
            "</details>",
            "",
        ]
    if impl.discovery:
        lines += [
            f"<details><summary>Discovery: why each feature is supported or not "
            f"({len(impl.discovery)})</summary>",
            "",
            "| feature | verdict | how | evidence |",
            "|---|---|---|---|",
            *[render_decision(d) for d in impl.discovery],
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines) + "\n"


def render_summary(reports: list[ConformanceReport]) -> str:
    """Every target of a run in one page: an overview table, then each target's report."""
    lines = ["# servegate conformance summary", ""]
    if not reports:
        return "\n".join(lines + ["No conformance report.", ""])
    lines += [
        "| target | implementation | checks | profiles | passed | failed | unsupported |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        profiles = ", ".join(f"{MARK[p.result]} {p.name}" for p in r.profiles) or "-"
        c = r.counts
        lines.append(
            f"| {r.implementation.slot} | {_cell(r.implementation.description)} | {r.result} | "
            f"{profiles} | {c.passed} | {c.failed + c.error} | {c.unsupported} |"
        )
    lines.append("")
    for r in reports:
        lines.append(render_markdown(r))
    return "\n".join(lines)
