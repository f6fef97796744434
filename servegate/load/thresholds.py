"""The one thresholds file format, read by the Locust run (``--thresholds``: a breach exits 1)
and by ``servegate gate --thresholds`` alike, through :func:`load_thresholds`.

YAML or JSON; every key is optional::

    # limits on a load run's own figures (kind "load-run")
    min_throughput_rps: 20        # all requests per second, over the run
    max_p99_ms: 800               # p99 latency over all requests
    max_error_rate: 0.01          # failed / all requests
    min_goodput_fraction: 0.95    # good / all requests, under the run's --slo
    min_goodput_rps: 10           # good requests per second, under the run's --slo
    metrics:                      # per streaming metric: max_p50|p90|p95|p99_ms
      ttft: {max_p99_ms: 300}
      itl: {max_p50_ms: 40}
    baseline: reports/baseline/load-v2-rest.json   # a previous load-<name>.json
    max_regression_pct: 10        # throughput may drop, and p99 rise, by at most this much
    allow_invalid: false          # an invalid run (client-bound) fails (default)

    # any figure of any load result, by dotted path (servegate.report.load.resolve)
    thresholds:
      - metric: "points[users=8].p99_ms"
        max: 800
        files: "load-experiment-*.json"   # only these results (the gate; a run: its own file)

    # the gate only: which results to read, and whether none at all fails
    files: "load-*.json"
    require: true

Paths in the file are relative to the file itself.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from servegate.errors import ServegateError
from servegate.report.load import LOAD_GLOB, resolve

StreamMetric = Literal["ttft", "itl", "tpot", "e2e"]


class ThresholdsError(ServegateError):
    """A thresholds file that cannot be read or names unknown figures."""


class _Strict(BaseModel):
    # a misspelt key must not pass silently as "no limit"
    model_config = ConfigDict(extra="forbid")


class StreamLimits(_Strict):
    max_p50_ms: float | None = None
    max_p90_ms: float | None = None
    max_p95_ms: float | None = None
    max_p99_ms: float | None = None

    def items(self) -> list[tuple[str, float]]:
        """(statistic, limit) pairs that are set, e.g. ("p99", 300.0)."""
        return [
            (key.removeprefix("max_").removesuffix("_ms"), float(value))
            for key, value in self.model_dump().items()
            if value is not None
        ]


class PathLimit(_Strict):
    """A limit on any figure of a load result, named by dotted path."""

    metric: str
    min: float | None = None
    max: float | None = None
    files: str | None = None

    @model_validator(mode="after")
    def _bound(self) -> PathLimit:
        if self.min is None and self.max is None:
            raise ValueError(f"threshold {self.metric!r} needs min or max")
        return self

    def applies_to(self, filename: str) -> bool:
        return self.files is None or fnmatch.fnmatch(filename, self.files)

    def check(self, value: float) -> tuple[bool, str]:
        """Whether ``value`` holds, and the detail a report shows."""
        if self.min is not None and value < self.min:
            return False, f"{value:g} < min {self.min:g}"
        if self.max is not None and value > self.max:
            return False, f"{value:g} > max {self.max:g}"
        bounds = [f">= {self.min:g}" if self.min is not None else ""]
        bounds.append(f"<= {self.max:g}" if self.max is not None else "")
        return True, f"{value:g} " + " and ".join(b for b in bounds if b)


class Thresholds(_Strict):
    """A thresholds file. ``source`` is the file it was read from."""

    min_throughput_rps: float | None = None
    max_p99_ms: float | None = None
    max_error_rate: float | None = Field(default=None, ge=0)
    min_goodput_fraction: float | None = Field(default=None, ge=0, le=1)
    min_goodput_rps: float | None = None
    metrics: dict[StreamMetric, StreamLimits] = {}
    baseline: str | None = None
    max_regression_pct: float | None = Field(default=None, ge=0)
    allow_invalid: bool = False
    thresholds: list[PathLimit] = []
    files: str = LOAD_GLOB
    require: bool = True
    source: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _regression_needs_baseline(self) -> Thresholds:
        if self.max_regression_pct is not None and not self.baseline:
            raise ValueError("max_regression_pct needs a baseline")
        return self

    def run_limits(self) -> list[str]:
        """The names of the limits set on a load run's own figures."""
        names = [
            k
            for k in (
                "min_throughput_rps",
                "max_p99_ms",
                "max_error_rate",
                "min_goodput_fraction",
                "min_goodput_rps",
                "baseline",
            )
            if getattr(self, k) is not None
        ]
        return names + [f"metrics.{m}" for m in self.metrics]


@dataclass(frozen=True)
class Breach:
    figure: str
    limit: float | None
    measured: float | None
    message: str


def _problems(exc: ValidationError) -> str:
    out = []
    for e in exc.errors()[:3]:
        where = ".".join(map(str, e["loc"])) or "(file)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            owners: dict[str, type[BaseModel]] = {"metrics": StreamLimits, "thresholds": PathLimit}
            owner = owners.get(str(e["loc"][0]) if len(e["loc"]) > 1 else "", Thresholds)
            known = sorted(set(owner.model_fields) - {"source"})
            msg = f"unknown key; known: {', '.join(known)}"
        out.append(f"{where}: {msg}")
    return "; ".join(out)


def load_thresholds(path: str | Path) -> Thresholds:
    """Read and check a thresholds file (the baseline path resolved against it); one-line
    ThresholdsError naming the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ThresholdsError(f"thresholds file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ThresholdsError(f"thresholds file {path} is not YAML/JSON: {first}") from None
    if isinstance(data, list):
        # a bare list is the path limits alone
        data = {"thresholds": data}
    if data is not None and not isinstance(data, dict):
        raise ThresholdsError(f"thresholds file {path}: expected a mapping at the top")
    try:
        th = Thresholds.model_validate(data or {})
    except ValidationError as exc:
        raise ThresholdsError(f"thresholds file {path}: {_problems(exc)}") from None
    if th.baseline:
        baseline = Path(th.baseline)
        th.baseline = str(baseline if baseline.is_absolute() else path.parent / baseline)
    th.source = str(path)
    return th


def _stream_summary(document: Mapping[str, Any], metric: str, stat: str) -> float | None:
    """The worst value of a streaming metric's statistic over the run's streams."""
    values = [
        m[f"{metric}_ms"][stat]
        for m in (document.get("streaming") or {}).values()
        if m.get(f"{metric}_ms") and m[f"{metric}_ms"].get(stat) is not None
    ]
    return max(values) if values else None


def _ms(value: float | None) -> str:
    return "none measured" if value is None else f"{value:.1f} ms"


def evaluate(
    document: Mapping[str, Any],
    th: Thresholds,
    *,
    validity: bool = True,
    paths: bool = True,
    filename: str | None = None,
) -> list[Breach]:
    """Every breached threshold of one load-run document, each naming its figure.

    ``validity``: an invalid run is a breach unless the file allows it; ``paths``: the path
    limits that apply to ``filename`` (default the run's own ``load-<name>.json``) are checked
    too, a path that leads nowhere being a breach (a typo must not pass).
    """
    totals = document["totals"]
    rps = totals["requests_per_s"]
    p99 = totals["latency_ms"]["p99"]
    err = totals["error_rate"]
    out: list[Breach] = []
    run_validity = document.get("validity") or {}
    if validity and not th.allow_invalid and run_validity.get("valid") is False:
        why = "; ".join(f["detail"] for f in run_validity.get("flags", [])) or "no reason given"
        out.append(Breach("validity", None, None, f"run marked invalid (client-bound): {why}"))
    if th.min_throughput_rps is not None and rps < th.min_throughput_rps:
        limit = th.min_throughput_rps
        out.append(
            Breach(
                "throughput_rps",
                limit,
                rps,
                f"throughput {rps:.2f} req/s is below the minimum {limit:g} req/s",
            )
        )
    if th.max_p99_ms is not None and (p99 is None or p99 > th.max_p99_ms):
        limit = th.max_p99_ms
        out.append(
            Breach(
                "p99_ms", limit, p99, f"p99 latency {_ms(p99)} is above the maximum {limit:g} ms"
            )
        )
    if th.max_error_rate is not None and err > th.max_error_rate:
        limit = th.max_error_rate
        out.append(
            Breach(
                "error_rate",
                limit,
                err,
                f"error rate {100 * err:.2f} % is above the maximum {100 * limit:g} %",
            )
        )
    out += _goodput(document, th)
    for metric, limits in th.metrics.items():
        for stat, limit in limits.items():
            value = _stream_summary(document, metric, stat)
            if value is None or value > limit:
                out.append(
                    Breach(
                        f"{metric}_{stat}_ms",
                        limit,
                        value,
                        f"{metric.upper()} {stat} {_ms(value)} is above the maximum {limit:g} ms",
                    )
                )
    if th.baseline:
        out += _against_baseline(rps, p99, th)
    if paths:
        own = filename or f"load-{document.get('name', 'run')}.json"
        for path_limit in th.thresholds:
            if path_limit.applies_to(own):
                out += _path_breaches(document, path_limit)
    return out


def _path_breaches(document: Mapping[str, Any], limit: PathLimit) -> list[Breach]:
    found = resolve(document, limit.metric)
    if not found:
        return [Breach(limit.metric, None, None, f"{limit.metric}: not in this result")]
    out = []
    for where, value in found:
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.append(Breach(where, None, None, f"{where}: not a number: {value!r}"))
            continue
        ok, detail = limit.check(float(value))
        if not ok:
            bound = limit.min if limit.min is not None and value < limit.min else limit.max
            out.append(Breach(where, bound, float(value), f"{where}: {detail}"))
    return out


def _goodput(document: Mapping[str, Any], th: Thresholds) -> list[Breach]:
    if th.min_goodput_fraction is None and th.min_goodput_rps is None:
        return []
    goodput = document.get("goodput")
    if not goodput:
        return [
            Breach(
                "goodput",
                th.min_goodput_fraction
                if th.min_goodput_fraction is not None
                else th.min_goodput_rps,
                None,
                "goodput not measured: the run had no --slo",
            )
        ]
    slos = ", ".join(f"{m}<{v:g}ms" for m, v in goodput["slos_ms"].items())
    out = []
    fraction, good_rps = goodput["fraction"], goodput["requests_per_s"]
    if th.min_goodput_fraction is not None and fraction < th.min_goodput_fraction:
        out.append(
            Breach(
                "goodput_fraction",
                th.min_goodput_fraction,
                fraction,
                f"goodput {100 * fraction:.1f} % of requests met every SLO ({slos}), below the "
                f"minimum {100 * th.min_goodput_fraction:g} %",
            )
        )
    if th.min_goodput_rps is not None and good_rps < th.min_goodput_rps:
        out.append(
            Breach(
                "goodput_rps",
                th.min_goodput_rps,
                good_rps,
                f"goodput {good_rps:.2f} req/s meeting every SLO ({slos}) is below the minimum "
                f"{th.min_goodput_rps:g} req/s",
            )
        )
    return out


def _against_baseline(rps: float, p99: float | None, th: Thresholds) -> list[Breach]:
    path = Path(th.baseline or "")
    try:
        base = json.loads(path.read_text(encoding="utf-8"))["totals"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ThresholdsError(f"baseline {path} is not a readable load-run JSON: {exc}") from None
    allowed = th.max_regression_pct or 0.0
    out = []
    base_rps = base["requests_per_s"]
    floor = base_rps * (1 - allowed / 100)
    if base_rps and rps < floor:
        drop = 100 * (1 - rps / base_rps)
        out.append(
            Breach(
                "throughput_rps_vs_baseline",
                floor,
                rps,
                f"throughput {rps:.2f} req/s is {drop:.1f} % below the baseline "
                f"{base_rps:.2f} req/s (allowed {allowed:g} %)",
            )
        )
    base_p99 = base["latency_ms"]["p99"]
    if base_p99 and p99 is not None:
        ceiling = base_p99 * (1 + allowed / 100)
        if p99 > ceiling:
            rise = 100 * (p99 / base_p99 - 1)
            out.append(
                Breach(
                    "p99_ms_vs_baseline",
                    ceiling,
                    p99,
                    f"p99 latency {p99:.1f} ms is {rise:.1f} % above the baseline "
                    f"{base_p99:.1f} ms (allowed {allowed:g} %)",
                )
            )
    return out


def result_block(th: Thresholds, breaches: list[Breach]) -> dict[str, Any]:
    """The ``thresholds`` field of a load-run document."""
    return {
        "file": th.source,
        "passed": not breaches,
        "breaches": [asdict(b) for b in breaches],
    }
