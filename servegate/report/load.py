"""Load-test results as the reports, the HTML page and the gate read them.

Every ``reports/load-*.json`` is read through the load result model that its writer uses
(servegate.load.document): a load run (``kind: "load-run"``) field by field, any other result
(experiments, benchmarks, other tools' files) for the fields every reader relies on:

- ``validity.valid``: ``false`` marks a run whose figures cannot be trusted (client-bound), its
  ``flags`` say why. A gate with thresholds fails on such a run. (A top-level ``valid`` with
  ``invalid_reason`` is read too, for results written by other tools.)
- ``thresholds.passed``: ``false`` is the run's own threshold verdict; ``breaches`` says what
  broke. A ``false`` verdict always fails the gate.
- ``name`` or ``title``: a heading for the result.

Anything else is data: the thresholds file names it by path (:func:`resolve`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servegate.load.document import LoadDocument, LoadResultError, LoadRun, parse_document

LOAD_GLOB = "load-*.json"
#: plots bigger than this are listed, not embedded, so the HTML page stays a sane size
MAX_PLOT_BYTES = 8 * 1024 * 1024
MAX_ROWS = 200


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class LoadResult:
    path: Path
    data: Any = None
    #: why the file could not be read (then data and doc are None)
    error: str | None = None
    plots: list[Path] = field(default_factory=list)
    doc: LoadDocument | None = None

    @property
    def title(self) -> str:
        if self.doc is not None:
            for value in (self.doc.name, self.doc.title):
                if value:
                    return value
        return self.path.stem

    @property
    def run(self) -> LoadRun | None:
        """The load run, when the file is one."""
        return self.doc if isinstance(self.doc, LoadRun) else None

    @property
    def valid(self) -> bool | None:
        return None if self.doc is None else self.doc.is_valid()

    @property
    def invalid_reason(self) -> str:
        return "" if self.doc is None else self.doc.invalid_why()

    @property
    def own_verdict(self) -> bool | None:
        """The run's own threshold verdict, when it recorded one."""
        verdict = None if self.doc is None else self.doc.verdict()
        return None if verdict is None else verdict.passed

    @property
    def breaches(self) -> list[str]:
        verdict = None if self.doc is None else self.doc.verdict()
        return [] if verdict is None else verdict.lines()

    def tables(self) -> list[Table]:
        """The tables the HTML page shows: a load run's figures, else whatever the file holds."""
        if self.run is not None:
            return run_tables(self.run)
        return tables_of(self.data)


def read_load_results(reports_dir: Path, pattern: str = LOAD_GLOB) -> list[LoadResult]:
    """Every load result in ``reports_dir`` matching ``pattern``, each with its plots; a file
    that cannot be read as a load result is kept with its error, never raised."""
    plots = find_plots(reports_dir)
    out: list[LoadResult] = []
    for path in sorted(reports_dir.glob(pattern)):
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
            result = LoadResult(path, data=data, doc=parse_document(data, path.name))
        except (OSError, ValueError) as exc:
            result = LoadResult(path, error=f"{type(exc).__name__}: {exc}")
        except LoadResultError as exc:
            result = LoadResult(path, error=str(exc).removeprefix(f"{path.name}: "))
        result.plots = [p for p in plots if p.name.startswith(path.stem)]
        out.append(result)
    return out


def _summary_row(name: str, metric: str, s: Any) -> list[Any]:
    return [name, metric, s.count, s.mean, s.p50, s.p90, s.p99, s.max]


def _series_stats(values: list[float | None]) -> tuple[Any, Any, Any, Any]:
    seen = [v for v in values if v is not None and math.isfinite(v)]
    if not seen:
        return None, None, None, None
    return min(seen), sum(seen) / len(seen), max(seen), seen[-1]


def run_tables(run: LoadRun) -> list[Table]:
    """A load run's figures as the page shows them (raw series stay in the JSON and the plot)."""
    t = run.totals
    config = {k: v for k, v in run.config.items() if v not in (None, "", [])}
    summary: list[list[Any]] = [
        ["target", run.target.get("host")],
        ["model", run.target.get("model")],
        ["scenarios", ", ".join(run.target.get("scenarios") or [])],
        ["duration s", run.duration_s],
        *[[k, v if not isinstance(v, list | dict) else json.dumps(v)] for k, v in config.items()],
        ["valid", run.validity.valid],
        ["requests", t.requests],
        ["failures", t.failures],
        ["error rate", t.error_rate],
        ["req/s", t.requests_per_s],
        ["output tokens/s", t.output_tokens_per_s],
    ]
    tables = [Table("run", ["field", "value"], summary)]
    tables.append(
        Table(
            "requests (latency ms)",
            ["request", "requests", "failures", "req/s", "p50", "p90", "p99", "max"],
            [
                [
                    r.name,
                    r.requests,
                    r.failures,
                    r.requests_per_s,
                    r.latency_ms.p50,
                    r.latency_ms.p90,
                    r.latency_ms.p99,
                    r.latency_ms.max,
                ]
                for r in run.requests
            ],
        )
    )
    if run.streaming:
        rows = [
            _summary_row(name, metric.removesuffix("_ms").upper(), s)
            for name, metrics in run.streaming.items()
            for metric, s in metrics.items()
        ]
        tables.append(
            Table(
                "streaming (ms)",
                ["stream", "metric", "samples", "mean", "p50", "p90", "p99", "max"],
                rows,
            )
        )
    g = run.goodput
    if g is not None:
        slos = ", ".join(f"{m} < {v:g} ms" for m, v in g.slos_ms.items())
        rows = [
            ["SLOs (per request)", slos],
            ["good / all requests", f"{g.good_requests} / {g.requests}"],
            ["goodput fraction", g.fraction],
            ["goodput req/s", g.requests_per_s],
            *[[f"met {m}", n] for m, n in g.met.items()],
        ]
        tables.append(Table("goodput", ["field", "value"], rows))
    tel = run.telemetry
    if tel is not None:
        head = f"server telemetry: {tel.status}" + (f" ({tel.url})" if tel.url else "")
        if tel.note:
            head += f" — {tel.note}"
        rows = [
            [name, s.metric, sum(v is not None for v in s.values), *_series_stats(s.values)]
            for name, s in tel.series.items()
        ]
        tables.append(
            Table(head, ["series", "metric", "values", "min", "mean", "max", "last"], rows)
        )
    return tables


def find_plots(reports_dir: Path) -> list[Path]:
    """PNG files in reports/ and its direct sub-folders (server logs excepted, and a sweep's
    per-point runs: the sweep's own plot draws them)."""
    if not reports_dir.is_dir():
        return []
    found = [*reports_dir.glob("*.png"), *reports_dir.glob("*/*.png")]
    return sorted(p for p in found if p.is_file() and p.parent.name not in ("logs", "sweep-runs"))


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and all(_scalar(v) for v in value.values()) and prefix == "":
            out.update(_flatten(value, name + "."))
        elif _scalar(value):
            out[name] = value
        else:
            text = json.dumps(value, default=str)
            out[name] = text if len(text) <= 80 else text[:77] + "..."
    return out


def _rows_table(title: str, rows: list[dict[str, Any]], first: str | None = None) -> Table:
    flat = [_flatten(r) for r in rows[:MAX_ROWS]]
    columns: list[str] = [first] if first else []
    for row in flat:
        columns += [k for k in row if k not in columns]
    return Table(title, columns, [[row.get(c) for c in columns] for row in flat])


def tables_of(data: Any, title: str = "", depth: int = 0) -> list[Table]:
    """Whatever tables a JSON document holds: its scalars as name/value rows, lists of objects
    as row tables, objects of objects as one row each."""
    tables: list[Table] = []
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return [_rows_table(title or "rows", data)]
    if not isinstance(data, dict) or depth > 3:
        return tables
    scalars = [[k, v] for k, v in data.items() if _scalar(v)]
    if scalars:
        tables.append(Table(title or "run", ["field", "value"], scalars))
    for key, value in data.items():
        name = f"{title}.{key}" if title else str(key)
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            tables.append(_rows_table(name, value))
        elif (
            isinstance(value, dict)
            and value
            and all(
                isinstance(v, dict) and all(_scalar(x) for x in v.values()) for v in value.values()
            )
        ):
            rows = [{"name": k, **v} for k, v in value.items()]
            tables.append(_rows_table(name, rows, first="name"))
        elif isinstance(value, dict):
            tables += tables_of(value, name, depth + 1)
    return tables


_SELECTOR = re.compile(r"^(?P<key>[^\[\]]*)(?:\[(?P<sel>[^\]]+)\])?$")


def resolve(data: Any, path: str) -> list[tuple[str, Any]]:
    """The values at a dotted ``path``: ``a.b`` for keys, ``a.0`` for list items,
    ``rows[users=8].p99`` for the items whose field has that value, ``*`` for every key or
    item. Returns (concrete path, value) pairs; none when the path leads nowhere."""
    found: list[tuple[str, Any]] = [("", data)]
    for part in [p for p in path.split(".") if p]:
        match = _SELECTOR.match(part)
        if match is None:
            return []
        key, sel = match.group("key"), match.group("sel")
        step: list[tuple[str, Any]] = []
        for where, value in found:
            for name, child in _children(value, key):
                step.append((f"{where}.{name}" if where else name, child))
        if sel is not None:
            field_name, _, wanted = sel.partition("=")
            step = [
                (f"{w}.{i}[{sel}]", item)
                for w, v in step
                if isinstance(v, list)
                for i, item in enumerate(v)
                if isinstance(item, dict) and str(item.get(field_name.strip())) == wanted.strip()
            ]
        found = step
    return found


def _children(value: Any, key: str) -> list[tuple[str, Any]]:
    if key == "":
        return [("", value)]
    if key == "*":
        if isinstance(value, dict):
            return [(str(k), v) for k, v in value.items()]
        if isinstance(value, list):
            return [(str(i), v) for i, v in enumerate(value)]
        return []
    if isinstance(value, dict) and key in value:
        return [(key, value[key])]
    if isinstance(value, list) and key.isdigit() and int(key) < len(value):
        return [(key, value[int(key)])]
    return []
