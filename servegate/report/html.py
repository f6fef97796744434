"""The single-file HTML report: a conformance matrix (protocol × task × runtime), the profiles,
every failure with its exchange, and the load results found beside the reports, their plots
embedded. No script, no external asset: it opens from a CI artifact as it is."""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Iterable
from pathlib import Path
from string import Template
from typing import Any

from servegate import __version__
from servegate.features import protocol_of
from servegate.report.load import (
    MAX_PLOT_BYTES,
    LoadResult,
    Table,
    find_plots,
    read_load_results,
)
from servegate.report.matrix import implementations_html
from servegate.report.schema import OUTCOMES, Case, ConformanceReport, Counts, ExchangeRecord

#: cell colours by state; the rendering test looks for them in a screenshot
COLOURS = {
    "pass": "#1a7f37",
    "fail": "#cf222e",
    "deviation": "#bf8700",
    "unsupported": "#8c959f",
    "skipped": "#d0d7de",
    "none": "#f6f8fa",
    "header": "#24292f",
    "load_header": "#0b4f9c",
}
PROFILE_STATE = {"success": "pass", "partial": "deviation", "failure": "fail"}

CSS = Template(
    """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1f2328}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin:18px 0 6px}.meta{color:#59636e}
table{border-collapse:collapse;margin:6px 0 14px}
th,td{border:1px solid #d0d7de;padding:4px 9px;text-align:left;vertical-align:top}
td:first-child{white-space:nowrap}
th{background:${header};color:#fff}table.load th{background:${load_header}}
td.pass{background:${pass};color:#fff}td.fail{background:${fail};color:#fff}
td.deviation{background:${deviation};color:#fff}
td.unsupported{background:${unsupported};color:#fff}
td.skipped{background:${skipped}}td.none{background:${none};color:#8c959f}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:8px;white-space:pre-wrap;
word-break:break-all;max-height:320px;overflow:auto;margin:4px 0}
details{margin:4px 0}summary{cursor:pointer}
.invalid{background:#fff1f0;border:1px solid ${fail};padding:6px 10px;margin:6px 0}
img.plot{max-width:100%;border:1px solid #d0d7de;margin:6px 0}
"""
).substitute(COLOURS)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return _e(value)


def cell_state(counts: Counts) -> str:
    """The colour of a matrix cell: the worst outcome in it."""
    if counts.failed or counts.error:
        return "fail"
    if counts.expected_deviation:
        return "deviation"
    if counts.passed:
        return "pass"
    if counts.skipped:
        return "skipped"
    if counts.unsupported:
        return "unsupported"
    return "none"


def _cell_text(counts: Counts) -> str:
    parts = [f"{counts.get(o)} {o}" for o in OUTCOMES if counts.get(o)]
    return ", ".join(parts) or "-"


def matrix(reports: list[ConformanceReport]) -> dict[tuple[str, str], dict[str, list[Case]]]:
    """(protocol, task) -> target slot -> the checks there."""
    cells: dict[tuple[str, str], dict[str, list[Case]]] = {}
    for report in reports:
        for case in report.cases:
            key = (protocol_of(case.features), case.task or "-")
            cells.setdefault(key, {}).setdefault(report.implementation.slot, []).append(case)
    return dict(sorted(cells.items()))


def _matrix_html(reports: list[ConformanceReport]) -> list[str]:
    slots = [r.implementation.slot for r in reports]
    out = [
        "<table class='matrix'><tr><th>protocol</th><th>task</th>"
        + "".join(f"<th>{_e(s)}</th>" for s in slots)
        + "</tr>"
    ]
    for (protocol, task), by_slot in matrix(reports).items():
        row = f"<tr><td>{_e(protocol)}</td><td>{_e(task)}</td>"
        for slot in slots:
            cases = by_slot.get(slot, [])
            counts = Counts.of([c.outcome for c in cases])
            title = "\n".join(f"{c.name}: {c.outcome}" for c in cases)
            text = _e(_cell_text(counts))
            row += f"<td class='{cell_state(counts)}' title='{_e(title)}'>{text}</td>"
        out.append(row + "</tr>")
    out.append("</table>")
    return out


def _profiles_html(reports: list[ConformanceReport]) -> list[str]:
    names = list(dict.fromkeys(p.name for r in reports for p in r.profiles))
    if not names:
        return ["<p class='meta'>No profile applies to these targets.</p>"]
    out = [
        "<table class='profiles'><tr><th>profile</th>"
        + "".join(f"<th>{_e(r.implementation.slot)}</th>" for r in reports)
        + "</tr>"
    ]
    for name in names:
        row = f"<tr><td>{_e(name)}</td>"
        for r in reports:
            p = r.profile(name)
            if p is None:
                row += "<td class='none'>not evaluated</td>"
                continue
            c = p.counts
            text = (
                f"{p.result}: {c.passed} passed, {c.failed + c.error} failed, "
                f"{c.expected_deviation} expected-deviation, {c.unsupported} unsupported"
            )
            row += f"<td class='{PROFILE_STATE[p.result]}' title='{_e(p.reason)}'>{_e(text)}"
            row += f"<br><small>{_e(p.reason)}</small></td>" if p.reason else "</td>"
        out.append(row + "</tr>")
    out.append("</table>")
    return out


def _exchange_html(exchange: ExchangeRecord) -> list[str]:
    request = f"{exchange.method} {exchange.url}"
    headers = "\n".join(f"{k}: {v}" for k, v in exchange.request_headers.items())
    out = [f"<div>request: <code>{_e(request)}</code></div>"]
    if headers or exchange.request_body:
        out.append(
            f"<pre>{_e(headers)}{chr(10) * 2 if headers else ''}{_e(exchange.request_body)}</pre>"
        )
    status = "none" if exchange.status is None else exchange.status
    out.append(f"<div>response: <code>{_e(status)}</code></div>")
    if exchange.response_body:
        out.append(f"<pre>{_e(exchange.response_body)}</pre>")
    return out


def _discovery_html(report: ConformanceReport) -> list[str]:
    """Why each feature is supported or not: the decision, how it was found, the evidence;
    and each unsupported check with the features it lacked."""
    decisions = report.implementation.discovery
    if not decisions:
        return []
    out = [
        f"<details><summary><b>{_e(report.implementation.slot)}</b>: "
        f"{sum(d.supported for d in decisions)} of {len(decisions)} features supported</summary>",
        "<table class='discovery'><tr><th>feature</th><th>verdict</th><th>how</th>"
        "<th>evidence</th></tr>",
    ]
    for d in decisions:
        state = ("fail" if d.broken else "pass") if d.supported else "unsupported"
        verdict = ("supported, broken" if d.broken else "supported") if d.supported else "no"
        evidence = "<br>".join(
            f"<code>{_e(e.request)}</code> → {_e('no response' if e.status is None else e.status)}"
            + (f" <small>{_e(e.excerpt)}</small>" if e.excerpt else "")
            for e in d.evidence
        )
        out.append(
            f"<tr><td>{_e(d.feature)}</td><td class='{state}'>{_e(verdict)}</td>"
            f"<td>{_e(d.how)}</td><td>{evidence or '-'}</td></tr>"
        )
    out.append("</table>")
    unsupported = [c for c in report.cases if c.outcome == "unsupported"]
    if unsupported:
        out.append(f"<p>unsupported checks ({len(unsupported)}):</p><ul>")
        for case in unsupported:
            lacks = ", ".join(case.unsupported.features) if case.unsupported else ""
            out.append(
                f"<li>{_e(case.name)}: {_e(case.message)}"
                + (f" <small>(lacks {_e(lacks)})</small>" if lacks else "")
                + "</li>"
            )
        out.append("</ul>")
    out.append("</details>")
    return out


def _failures_html(report: ConformanceReport) -> list[str]:
    cases = [c for c in report.cases if c.outcome in ("failed", "error", "expected-deviation")]
    if not cases:
        return []
    out = [f"<h3>{_e(report.implementation.slot)}: failures and expected deviations</h3>"]
    for case in cases:
        rule = case.failure.rule if case.failure else case.rule
        out.append(
            f"<details><summary><b>{_e(case.name)}</b> ({_e(case.outcome)}): {_e(rule)}</summary>"
        )
        if case.failure is not None:
            out.append(f"<div>problem: {_e(case.failure.problem)}</div>")
            if case.failure.exchange is not None:
                out += _exchange_html(case.failure.exchange)
        if case.message:
            out.append(f"<pre>{_e(case.message)}</pre>")
        out.append("</details>")
    return out


def _table_html(table: Table, css: str = "load") -> list[str]:
    out = [f"<div class='meta'>{_e(table.title)}</div><table class='{css}'><tr>"]
    out[0] += "".join(f"<th>{_e(c)}</th>" for c in table.columns) + "</tr>"
    for row in table.rows:
        out.append("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return out


def _plot_html(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_PLOT_BYTES:
            return f"<p class='meta'>{_e(path.name)}: {size} bytes, too big to embed</p>"
        data = base64.b64encode(path.read_bytes()).decode()
    except OSError as exc:
        return f"<p class='meta'>{_e(path.name)}: cannot read ({_e(exc)})</p>"
    return (
        f"<figure><img class='plot' alt='{_e(path.name)}' src='data:image/png;base64,{data}'>"
        f"<figcaption class='meta'>{_e(path.name)}</figcaption></figure>"
    )


def _load_html(results: list[LoadResult], plots: Iterable[Path]) -> list[str]:
    attached = {p for r in results for p in r.plots}
    loose = [p for p in plots if p not in attached]
    if not results and not loose:
        return []
    out = ["<h2>Load results</h2>"]
    for result in results:
        out.append(
            f"<h3>{_e(result.title)} <span class='meta'>({_e(result.path.name)})</span></h3>"
        )
        if result.error:
            out.append(f"<p class='invalid'>cannot read: {_e(result.error)}</p>")
            continue
        if result.valid is False:
            out.append(
                f"<p class='invalid'>invalid run: {_e(result.invalid_reason or 'no reason given')}"
                "; its figures are not the server's</p>"
            )
        if result.own_verdict is False:
            out.append(
                f"<p class='invalid'>thresholds breached: {_e('; '.join(result.breaches))}</p>"
            )
        for table in result.tables():
            out += _table_html(table)
        out += [_plot_html(p) for p in result.plots]
    if loose:
        out.append("<h3>Plots</h3>")
        out += [_plot_html(p) for p in loose]
    return out


def render_html(reports: list[ConformanceReport], reports_dir: Path | None = None) -> str:
    """The page for ``reports``, with the load results and plots in ``reports_dir``."""
    results = read_load_results(reports_dir) if reports_dir else []
    plots = find_plots(reports_dir) if reports_dir else []
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    body = [
        "<h1>servegate report</h1>",
        f"<div class='meta'>written {_e(now)} by servegate {_e(__version__)}</div>",
        "<h2>Targets</h2>",
        "<table class='targets'><tr><th>target</th><th>implementation</th><th>image</th>"
        "<th>url</th><th>run</th><th>checks</th></tr>",
    ]
    for r in reports:
        impl = r.implementation
        state = "pass" if r.result == "success" else "fail"
        checks = (
            f"not tested ({r.error.kind}, exit {r.error.exit_code}): {r.error.message}"
            if r.error
            else f"{r.result}: {_cell_text(r.counts)}"
        )
        body.append(
            f"<tr><td>{_e(impl.slot)}</td><td>{_e(impl.description)}</td><td>{_e(impl.image)}</td>"
            f"<td>{_e(impl.url)}</td><td>{_e(r.date)}</td>"
            f"<td class='{state}'>{_e(checks)}</td></tr>"
        )
    body.append("</table>")
    if reports:
        body += ["<h2>Profiles</h2>", *_profiles_html(reports)]
        body += implementations_html(reports)
        body += [
            "<h2>Conformance matrix</h2>",
            "<p class='meta'>protocol × task × runtime; hover a cell for its checks</p>",
            *_matrix_html(reports),
        ]
        failures = [line for r in reports for line in _failures_html(r)]
        if failures:
            body += ["<h2>Failures</h2>", *failures]
        discovery = [line for r in reports for line in _discovery_html(r)]
        if discovery:
            body += [
                "<h2>Discovery</h2>",
                "<p class='meta'>what each target was found to support, how, and the exchanges "
                "seen; a feature answered with a 5xx is supported and broken, never "
                "unsupported</p>",
                *discovery,
            ]
    else:
        body.append("<p class='meta'>No conformance report.</p>")
    body += _load_html(results, plots)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>servegate report</title>"
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_html(reports: list[ConformanceReport], reports_dir: Path, path: Path) -> Path:
    path.write_text(render_html(reports, reports_dir), encoding="utf-8")
    return path
