"""The result files of a load run or an experiment: JSON, CSV, Markdown (and raw samples).

Every file is ``<reports>/load-<name>.<ext>``; the JSON carries ``schema_version`` and is the one
the report and gate builders read. Fields are documented in the README ("Load tests").
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from servegate.load import goodput
from servegate.load.document import SCHEMA_VERSION, LoadRun, dump_run
from servegate.load.metrics import PERCENTILES, STREAM_METRICS, Samples, rate, summarize

#: a metric name "<request name>:<ttft|itl|tpot|e2e>" is a streaming metric of that request
STREAM_SEPARATOR = ":"

MACHINE_NOTE = (
    "load generator and server(s) share this machine's {cpus} CPU core(s): figures are "
    "those of a shared machine, not of the server alone"
)


def stream_metric_name(request: str, metric: str) -> str:
    return f"{request}{STREAM_SEPARATOR}{metric}"


def split_metric_name(name: str) -> tuple[str, str | None]:
    """(request name, streaming metric or None)."""
    base, sep, metric = name.rpartition(STREAM_SEPARATOR)
    if sep and metric in STREAM_METRICS:
        return base, metric
    return name, None


def machine() -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    return {
        "cpu_count": cpus,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "note": MACHINE_NOTE.format(cpus=cpus),
    }


def _clean(value: Any) -> Any:
    """NaN and infinities as null: JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def build_run_result(
    name: str,
    samples: Samples,
    *,
    started: float,
    ended: float,
    target: Mapping[str, Any],
    config: Mapping[str, Any],
    validity: Mapping[str, Any],
    slos: Mapping[str, float] | None = None,
    telemetry: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document of one load run (kind "load-run"), checked against the model the
    gate reads it with; ``slos`` (per request, ms) add the goodput, ``telemetry`` the
    server's scraped series."""
    duration = max(ended - started, 1e-9)
    requests: list[dict[str, Any]] = []
    streaming: dict[str, dict[str, Any]] = {}
    all_latencies: list[float] = []
    total_ok = total_failed = 0
    for metric_name in samples.names():
        values = samples.values.get(metric_name, [])
        failures = samples.failures.get(metric_name, 0)
        request, metric = split_metric_name(metric_name)
        if metric is not None:
            streaming.setdefault(request, {})[f"{metric}_ms"] = summarize(values)
            continue
        count = len(values) + failures
        total_ok += len(values)
        total_failed += failures
        all_latencies.extend(values)
        requests.append(
            {
                "name": metric_name,
                "requests": count,
                "failures": failures,
                "error_rate": failures / count if count else 0.0,
                "requests_per_s": rate(count, duration),
                "latency_ms": summarize(values),
                "last_error": samples.last_error.get(metric_name),
            }
        )
    total = total_ok + total_failed
    totals = {
        "requests": total,
        "failures": total_failed,
        "error_rate": total_failed / total if total else 0.0,
        "requests_per_s": rate(total, duration),
        "ok_requests_per_s": rate(total_ok, duration),
        "latency_ms": summarize(all_latencies),
        "output_tokens": samples.output_tokens,
        "output_tokens_per_s": rate(samples.output_tokens, duration),
    }
    document = _clean(
        {
            "schema_version": SCHEMA_VERSION,
            "kind": "load-run",
            "name": name,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "started": started,
            "duration_s": duration,
            "target": dict(target),
            "config": dict(config),
            "machine": machine(),
            "validity": dict(validity),
            "totals": totals,
            "requests": requests,
            "streaming": streaming,
            "thresholds": None,
            "goodput": goodput.compute(samples.per_request, slos, duration) if slos else None,
            "telemetry": dict(telemetry) if telemetry is not None else None,
        }
    )
    return dump_run(LoadRun.model_validate(document))


def paths_for(reports_dir: Path, name: str) -> dict[str, Path]:
    stem = Path(reports_dir) / f"load-{name}"
    return {ext: stem.with_suffix(f".{ext}") for ext in ("json", "csv", "md", "png")} | {
        "samples": Path(f"{stem}.samples.csv")
    }


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    if document.get("kind") == "load-run":
        # what the gate will read back: a field the model refuses fails here, not there
        LoadRun.model_validate(_clean(dict(document)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(_clean(dict(document)), indent=2, sort_keys=False) + "\n", encoding="utf-8"
    )


SUMMARY_FIELDS = ("count", "mean", "min", "max", *(f"p{q}" for q in PERCENTILES))


def run_csv_rows(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per request name and per streaming metric."""
    rows = []
    for item in document["requests"]:
        lat = item["latency_ms"]
        rows.append(
            {
                "name": item["name"],
                "metric": "latency_ms",
                "requests": item["requests"],
                "failures": item["failures"],
                "requests_per_s": item["requests_per_s"],
                **{k: lat.get(k) for k in SUMMARY_FIELDS},
            }
        )
    for request, metrics in document["streaming"].items():
        for metric, summary in metrics.items():
            rows.append(
                {
                    "name": request,
                    "metric": metric,
                    "requests": "",
                    "failures": "",
                    "requests_per_s": "",
                    **{k: summary.get(k) for k in SUMMARY_FIELDS},
                }
            )
    return rows


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt_csv(v) for k, v in row.items()})


def _fmt_csv(value: Any) -> Any:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return "" if value is None else value


def write_samples_csv(path: Path, samples: Samples, started: float) -> None:
    """Every raw sample: metric, seconds since the start, value in ms."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["metric", "t_s", "value_ms"])
        for name in sorted(samples.values):
            for at, value in zip(samples.stamps.get(name, []), samples.values[name], strict=False):
                writer.writerow([name, f"{at - started:.4f}", f"{value:.4f}"])


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        # ratios and relative errors need more than one decimal
        return f"{value:.{digits}f}" if abs(value) >= 10 or value == 0 else f"{value:.3g}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def validity_lines(validity: Mapping[str, Any]) -> list[str]:
    if validity.get("valid", True):
        return ["Run validity: **valid** (no client-side flag raised)."]
    lines = [
        "Run validity: **INVALID** — the load generator limited this run; its figures "
        "describe the client, not the server:"
    ]
    lines += [f"- `{f['name']}`: {f['detail']}" for f in validity.get("flags", [])]
    return lines


def goodput_lines(block: Mapping[str, Any] | None) -> list[str]:
    if not block:
        return []
    slos = ", ".join(f"{m} < {v:g} ms" for m, v in block["slos_ms"].items())
    met = ", ".join(f"{m} {n}" for m, n in block.get("met", {}).items())
    return [
        "",
        f"Goodput (per-request SLOs {slos}): **{fmt(block['requests_per_s'])} req/s**, "
        f"{block['good_requests']} of {block['requests']} requests "
        f"({fmt(100 * block['fraction'])} %) met every SLO (met each: {met}).",
    ]


def telemetry_lines(block: Mapping[str, Any] | None) -> list[str]:
    if not block:
        return []
    where = f" from {block['url']}" if block.get("url") else ""
    out = [
        "",
        f"Server telemetry{where}: {block['status']}"
        + (f" — {block['note']}" if block.get("note") else "")
        + ".",
    ]
    rows = []
    for name, series in (block.get("series") or {}).items():
        seen = [v for v in series.get("values", []) if v is not None]
        if seen:
            rows.append(
                [name, series["metric"], len(seen), min(seen), sum(seen) / len(seen), max(seen)]
            )
    if rows:
        out += ["", markdown_table(["series", "metric", "values", "min", "mean", "max"], rows)]
    return out


def run_markdown(document: Mapping[str, Any]) -> str:
    t = document["totals"]
    out = [f"## Load run `{document['name']}`", ""]
    target = document.get("target", {})
    out.append(
        f"Target: {target.get('host', '?')} — model `{target.get('model', '?')}`, "
        f"scenario(s) {', '.join(target.get('scenarios', [])) or '?'}; "
        f"{fmt(document['duration_s'])} s, {document['config'].get('users', '?')} users."
    )
    out.append(f"_{document['machine']['note']}._")
    out.append("")
    out += validity_lines(document["validity"])
    out.append("")
    out.append(
        f"Throughput **{fmt(t['requests_per_s'])} req/s**, error rate "
        f"{fmt(100 * t['error_rate'], 2)} %, latency p50/p90/p99 "
        f"{fmt(t['latency_ms']['p50'])}/{fmt(t['latency_ms']['p90'])}/"
        f"{fmt(t['latency_ms']['p99'])} ms"
        + (f", {fmt(t['output_tokens_per_s'])} output tokens/s" if t.get("output_tokens") else "")
        + "."
    )
    out.append("")
    rows = [
        [
            r["name"],
            r["requests"],
            r["failures"],
            r["requests_per_s"],
            r["latency_ms"]["p50"],
            r["latency_ms"]["p90"],
            r["latency_ms"]["p99"],
        ]
        for r in document["requests"]
    ]
    out.append(
        markdown_table(
            ["request", "requests", "failures", "req/s", "p50 ms", "p90 ms", "p99 ms"], rows
        )
    )
    if document["streaming"]:
        out.append("")
        srows = []
        for request, metrics in document["streaming"].items():
            for metric in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"):
                s = metrics.get(metric)
                if s:
                    srows.append(
                        [
                            request,
                            metric.removesuffix("_ms").upper(),
                            s["count"],
                            s["p50"],
                            s["p90"],
                            s["p99"],
                        ]
                    )
        out.append(
            markdown_table(["stream", "metric", "samples", "p50 ms", "p90 ms", "p99 ms"], srows)
        )
    out += goodput_lines(document.get("goodput"))
    out += telemetry_lines(document.get("telemetry"))
    if document.get("workload"):
        from servegate.load.workloads import markdown_lines

        out += ["", *markdown_lines(document["workload"])]
    th = document.get("thresholds")
    if th:
        out.append("")
        if th["passed"]:
            out.append(f"Thresholds ({th['file']}): **passed**.")
        else:
            out.append(f"Thresholds ({th['file']}): **breached**:")
            out += [f"- {b['message']}" for b in th["breaches"]]
    return "\n".join(out) + "\n"


def write_run(reports_dir: Path, document: Mapping[str, Any], samples: Samples) -> dict[str, Path]:
    """Write JSON, CSV, Markdown and the raw samples of a run; returns the paths."""
    paths = paths_for(reports_dir, document["name"])
    write_json(paths["json"], document)
    write_csv(paths["csv"], run_csv_rows(document))
    paths["md"].write_text(run_markdown(document), encoding="utf-8")
    write_samples_csv(paths["samples"], samples, document["started"])
    return paths
