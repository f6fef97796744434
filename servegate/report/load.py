"""Load-test results as the reports, the HTML page and the gate read them.

The load tests write ``reports/load-*.json`` (and PNG plots) in a format of their own, so this
module assumes no schema: any JSON is shown as tables, and only these fields mean something:

- ``valid``: ``false`` marks a run whose figures cannot be trusted (client-bound); the reason is
  read from ``invalid_reason``, ``invalid_reasons`` or ``reason``. A gate with thresholds fails
  on such a run.
- ``passed``: ``false`` is the run's own threshold verdict; ``breaches`` (a list of texts or
  objects) says what broke. Also read under a ``gate`` or ``thresholds`` object. A ``false``
  verdict fails the gate.
- ``name`` or ``title``: a heading for the result.

Anything else is data: the thresholds file names it by path (servegate.report.gate).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    #: why the file could not be read (then data is None)
    error: str | None = None
    plots: list[Path] = field(default_factory=list)

    @property
    def title(self) -> str:
        if isinstance(self.data, dict):
            for key in ("name", "title"):
                if isinstance(self.data.get(key), str):
                    return str(self.data[key])
        return self.path.stem

    @property
    def valid(self) -> bool | None:
        value = self.data.get("valid") if isinstance(self.data, dict) else None
        return value if isinstance(value, bool) else None

    @property
    def invalid_reason(self) -> str:
        if not isinstance(self.data, dict):
            return ""
        for key in ("invalid_reason", "invalid_reasons", "reason"):
            value = self.data.get(key)
            if isinstance(value, list):
                return "; ".join(map(str, value))
            if value:
                return str(value)
        return ""

    def _verdict_holder(self) -> dict[str, Any] | None:
        if not isinstance(self.data, dict):
            return None
        if isinstance(self.data.get("passed"), bool):
            return self.data
        for key in ("gate", "thresholds"):
            inner = self.data.get(key)
            if isinstance(inner, dict) and isinstance(inner.get("passed"), bool):
                return inner
        return None

    @property
    def own_verdict(self) -> bool | None:
        """The run's own threshold verdict, when it recorded one."""
        holder = self._verdict_holder()
        return None if holder is None else bool(holder["passed"])

    @property
    def breaches(self) -> list[str]:
        holder = self._verdict_holder() or (self.data if isinstance(self.data, dict) else {})
        value = holder.get("breaches") if isinstance(holder, dict) else None
        if not isinstance(value, list):
            return []
        return [v if isinstance(v, str) else json.dumps(v, default=str) for v in value]


def read_load_results(reports_dir: Path, pattern: str = LOAD_GLOB) -> list[LoadResult]:
    """Every load result in ``reports_dir`` matching ``pattern``, each with its plots; a file
    that is not JSON is kept with its error, never raised."""
    plots = find_plots(reports_dir)
    out: list[LoadResult] = []
    for path in sorted(reports_dir.glob(pattern)):
        if not path.is_file():
            continue
        try:
            result = LoadResult(path, data=json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            result = LoadResult(path, error=f"{type(exc).__name__}: {exc}")
        result.plots = [p for p in plots if p.name.startswith(path.stem)]
        out.append(result)
    return out


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
