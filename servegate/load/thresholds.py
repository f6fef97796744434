"""A thresholds file that turns a load run into a pass/fail gate.

YAML or JSON::

    min_throughput_rps: 20        # all requests per second, over the run
    max_p99_ms: 800               # p99 latency over all requests
    max_error_rate: 0.01          # failed / all requests
    metrics:                      # optional, per streaming metric (p50/p90/p99 limits)
      ttft: {max_p99_ms: 300}
      itl: {max_p50_ms: 40}
    baseline: reports/baseline/load-v2-rest.json   # optional: a previous load-<name>.json
    max_regression_pct: 10        # throughput may drop, and p99 rise, by at most this much

Paths in the file are relative to the file itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from servegate.errors import ServegateError
from servegate.load.metrics import STREAM_METRICS

TOP_KEYS = {
    "min_throughput_rps",
    "max_p99_ms",
    "max_error_rate",
    "metrics",
    "baseline",
    "max_regression_pct",
}
METRIC_KEYS = {"max_p50_ms", "max_p90_ms", "max_p99_ms"}


class ThresholdsError(ServegateError):
    """A thresholds file that cannot be read or names unknown figures."""


@dataclass(frozen=True)
class Breach:
    figure: str
    limit: float
    measured: float | None
    message: str


def load_thresholds(path: str | Path) -> dict[str, Any]:
    """Read and check a thresholds file; the baseline path resolved against it."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ThresholdsError(f"thresholds file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ThresholdsError(f"thresholds file {path} is not YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ThresholdsError(f"thresholds file {path}: expected a mapping at the top")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ThresholdsError(
            f"thresholds file {path}: unknown key(s) {sorted(unknown)}; known: {sorted(TOP_KEYS)}"
        )
    for metric, limits in (data.get("metrics") or {}).items():
        if (
            metric not in STREAM_METRICS
            or not isinstance(limits, dict)
            or set(limits) - METRIC_KEYS
        ):
            raise ThresholdsError(
                f"thresholds file {path}: metrics.{metric}: expected one of {list(STREAM_METRICS)} "
                f"with limits among {sorted(METRIC_KEYS)}"
            )
    for key in ("min_throughput_rps", "max_p99_ms", "max_error_rate", "max_regression_pct"):
        if key in data and not isinstance(data[key], int | float):
            raise ThresholdsError(f"thresholds file {path}: {key} must be a number")
    if data.get("baseline"):
        baseline = Path(data["baseline"])
        data["baseline"] = str(baseline if baseline.is_absolute() else path.parent / baseline)
    data["file"] = str(path)
    return data


def _stream_summary(document: Mapping[str, Any], metric: str, stat: str) -> float | None:
    """The worst value of a streaming metric's statistic over the run's streams."""
    values = [
        m[f"{metric}_ms"][stat]
        for m in document.get("streaming", {}).values()
        if m.get(f"{metric}_ms") and m[f"{metric}_ms"].get(stat) is not None
    ]
    return max(values) if values else None


def evaluate(document: Mapping[str, Any], thresholds: Mapping[str, Any]) -> list[Breach]:
    """Every breached threshold of a load-run document, each naming its figure."""
    totals = document["totals"]
    rps = totals["requests_per_s"]
    p99 = totals["latency_ms"]["p99"]
    err = totals["error_rate"]
    out: list[Breach] = []
    if "min_throughput_rps" in thresholds and rps < thresholds["min_throughput_rps"]:
        limit = float(thresholds["min_throughput_rps"])
        out.append(
            Breach(
                "throughput_rps",
                limit,
                rps,
                f"throughput {rps:.2f} req/s is below the minimum {limit:g} req/s",
            )
        )
    if "max_p99_ms" in thresholds:
        limit = float(thresholds["max_p99_ms"])
        if p99 is None or p99 > limit:
            out.append(
                Breach(
                    "p99_ms",
                    limit,
                    p99,
                    f"p99 latency {_ms(p99)} is above the maximum {limit:g} ms",
                )
            )
    if "max_error_rate" in thresholds and err > thresholds["max_error_rate"]:
        limit = float(thresholds["max_error_rate"])
        out.append(
            Breach(
                "error_rate",
                limit,
                err,
                f"error rate {100 * err:.2f} % is above the maximum {100 * limit:g} %",
            )
        )
    for metric, limits in (thresholds.get("metrics") or {}).items():
        for key, limit in limits.items():
            stat = key.removeprefix("max_").removesuffix("_ms")
            value = _stream_summary(document, metric, stat)
            if value is None or value > limit:
                out.append(
                    Breach(
                        f"{metric}_{stat}_ms",
                        float(limit),
                        value,
                        f"{metric.upper()} {stat} {_ms(value)} is above the maximum {limit:g} ms",
                    )
                )
    if thresholds.get("baseline"):
        out += _against_baseline(rps, p99, thresholds)
    return out


def _against_baseline(rps: float, p99: float | None, thresholds: Mapping[str, Any]) -> list[Breach]:
    path = Path(thresholds["baseline"])
    try:
        base = json.loads(path.read_text(encoding="utf-8"))["totals"]
    except (OSError, ValueError, KeyError) as exc:
        raise ThresholdsError(f"baseline {path} is not a readable load-run JSON: {exc}") from None
    allowed = float(thresholds.get("max_regression_pct", 0.0))
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


def _ms(value: float | None) -> str:
    return "none measured" if value is None else f"{value:.1f} ms"


def result_block(thresholds: Mapping[str, Any], breaches: list[Breach]) -> dict[str, Any]:
    """The ``thresholds`` field of a load-run document."""
    return {
        "file": thresholds.get("file"),
        "passed": not breaches,
        "breaches": [asdict(b) for b in breaches],
    }
