"""Sweeps against any target: one load run per rate or concurrency, then the knee and the
saturation point.

Each point is a headless Locust run (a child process, so gevent never patches this one) of one
scenario at one load level, with the load options of servegate.load.arrivals. The sweep keeps
each point's offered and achieved load, throughput and latency, and locates:

- **Saturation point**: the lowest load level at which the target stops keeping up. A rate
  sweep's level is saturated when the answered throughput falls short of the rate the schedule
  offered by more than ``shortfall`` (default 10 %); any level (rate or concurrency) is saturated
  when its throughput is less than ``1 + plateau`` (default 5 %) times the best throughput of the
  lower levels, i.e. more load no longer buys throughput. The saturation throughput is the best
  throughput seen.
- **Knee**: the last load level before latency starts rising faster than throughput. For each
  step from level *i-1* to level *i*, with throughput T and p50 latency L, the knee is level
  *i-1* of the first step where ``L_i/L_(i-1) - 1 > max(T_i/T_(i-1) - 1, noise)``: latency grew
  by more, relatively, than throughput did, and by more than ``noise`` (default 10 %, so jitter
  on a flat latency does not count). Up to the knee, more load mostly buys throughput; past it,
  mostly waiting. For a closed loop with concurrency doubling per step this is where latency
  grows by more than about 1.41x per step (Little's law: T = N / L).

Points the load generator limited (``cpu_warning`` or ``loop_lag``: client-bound) are kept in the
tables but left out of both rules while at least two others remain (else every point is read and
the result says it is indicative only); a point whose only flag is ``late_sends`` because the
schedule found no free sender is the target's saturation showing, and counts.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from servegate.errors import ServegateError
from servegate.load import plots, results
from servegate.load.arrivals import DEFAULT_OPEN_LOOP_USERS, ArrivalError, LoadOptions

#: scenario name -> (locustfile in loadtests/, user class)
SCENARIOS: dict[str, tuple[str, str]] = {
    "v2-rest": ("v2_rest.py", "V2RestUser"),
    "v2-grpc": ("v2_grpc.py", "V2GrpcUser"),
    "v1": ("kserve_v1.py", "KServeV1User"),
    "openai-stream": ("openai_stream.py", "OpenAIStreamUser"),
    "embeddings": ("openai_embeddings.py", "OpenAIEmbeddingsUser"),
}

SHORTFALL = 0.10
PLATEAU = 0.05
NOISE = 0.10
#: validity flags that say the load generator, not the target, limited a point
CLIENT_FLAGS = ("cpu_warning", "loop_lag")


@dataclass(frozen=True)
class SweepPlan:
    """What to sweep: ``kind`` "rate" or "concurrency", its levels, and the rest of a run."""

    kind: str
    levels: Sequence[float]
    host: str
    scenario: str = "v2-rest"
    #: arrival, seed, num_requests and max_concurrency of every point (rate/concurrency unset)
    base: LoadOptions = field(default_factory=LoadOptions)
    run_time_s: int = 10
    #: more locust options for every point (--model, --task, --tags ...)
    locust_args: Sequence[str] = ()
    name: str = ""
    shortfall: float = SHORTFALL
    plateau: float = PLATEAU
    noise: float = NOISE

    def __post_init__(self) -> None:
        if self.kind not in ("rate", "concurrency"):
            raise ArrivalError(f"a sweep is over rate or concurrency, not {self.kind!r}")
        if self.scenario not in SCENARIOS:
            raise ArrivalError(
                f"--scenario {self.scenario!r}: expected one of {', '.join(SCENARIOS)}"
            )
        if not self.levels:
            raise ArrivalError("a sweep needs at least one level")
        if self.kind == "concurrency" and self.base.max_concurrency is not None:
            raise ArrivalError("--max-concurrency caps a rate sweep, not a concurrency sweep")

    @property
    def sweep_name(self) -> str:
        return self.name or f"sweep-{self.kind}-{self.scenario}"

    def load_at(self, level: float) -> LoadOptions:
        """The load options of one point."""
        if self.kind == "rate":
            return replace(self.base, rate=float(level), concurrency=None)
        return replace(self.base, rate=None, concurrency=int(level), max_concurrency=None)


def run_point(
    loadtests: Path,
    scratch: Path,
    plan: SweepPlan,
    load: LoadOptions,
    name: str,
) -> dict[str, Any]:
    """One headless Locust run at ``load``; its load-run JSON."""
    locustfile, user = SCENARIOS[plan.scenario]
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(loadtests / locustfile),
        user,
        "--headless",
        "-t",
        f"{plan.run_time_s}s",
        "--host",
        plan.host,
        "--report-name",
        name,
        "--reports-dir",
        str(scratch),
        "--only-summary",
        "--stop-timeout",
        "10",
        *load.locust_args(),
        *plan.locust_args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=plan.run_time_s + 120)
    path = scratch / f"load-{name}.json"
    if done.returncode not in (0, 1) or not path.exists():
        lines = (done.stdout + done.stderr).splitlines()
        # the plugin's own reason (target down, missing model, bad option) says it in one line
        reasons = [
            line.split("servegate: ", 1)[1]
            for line in lines
            if "servegate: " in line and "/ERROR/" in line
        ]
        stopped = [r for r in reasons if "stopping the run" in r]
        if stopped or reasons:
            raise ServegateError(f"sweep point {name}: {(stopped or reasons)[-1]}")
        tail = "\n".join(lines[-15:])
        raise ServegateError(f"locust run {name} failed (exit {done.returncode}):\n{tail}")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _stream(document: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """The streamed request with the most TTFT samples (a sweep reads one)."""
    best: tuple[str | None, Mapping[str, Any]] = (None, {})
    for request, metrics in (document.get("streaming") or {}).items():
        count = (metrics.get("ttft_ms") or {}).get("count") or 0
        if count > ((best[1].get("ttft_ms") or {}).get("count") or 0):
            best = (request, metrics)
    return best


def point_of(document: Mapping[str, Any], kind: str, level: float) -> dict[str, Any]:
    """The figures a sweep keeps of one run."""
    t = document["totals"]
    config = document.get("config") or {}
    schedule = config.get("schedule") or {}
    validity = document["validity"]
    flags = [f["name"] for f in validity.get("flags", [])]
    row: dict[str, Any] = {
        "load": level,
        "offered_rate": level if kind == "rate" else None,
        "scheduled_rate": schedule.get("scheduled_rate"),
        "achieved_rate": schedule.get("achieved_rate"),
        "concurrency": level if kind == "concurrency" else None,
        "requests": t["requests"],
        "error_rate": t["error_rate"],
        "throughput": t["ok_requests_per_s"],
        "p50_ms": t["latency_ms"]["p50"],
        "p99_ms": t["latency_ms"]["p99"],
        "output_tokens_per_s": t.get("output_tokens_per_s"),
        "late_sends": schedule.get("late_sends"),
        "waited_for_sender": schedule.get("waited_for_sender"),
        "unsent_due": schedule.get("unsent_due"),
        "valid": validity["valid"],
        "validity_flags": flags,
        "client_bound": any(f in CLIENT_FLAGS for f in flags),
    }
    request, metrics = _stream(document)
    if request is not None:
        row["stream"] = request
        for metric in ("ttft", "itl", "tpot"):
            summary = metrics.get(f"{metric}_ms") or {}
            row[f"{metric}_p50_ms"] = summary.get("p50")
            row[f"{metric}_p99_ms"] = summary.get("p99")
    return row


# ---- analysis --------------------------------------------------------------------------------


def _usable(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The points the rules read: the target-bound ones, or, when fewer than two are, every
    point (the result then says it is indicative only)."""
    ordered = [p for p in sorted(points, key=lambda p: p["load"]) if p.get("throughput")]
    target_bound = [p for p in ordered if not p.get("client_bound")]
    return target_bound if len(target_bound) >= 2 else ordered


def basis(points: Sequence[Mapping[str, Any]]) -> str:
    """Which points the knee and saturation were read from."""
    client = sum(1 for p in points if p.get("client_bound"))
    if not client:
        return "every point"
    if len([p for p in points if not p.get("client_bound") and p.get("throughput")]) >= 2:
        return f"the target-bound points ({client} client-bound point(s) left out)"
    return "every point, though client-bound: indicative only (the load generator limited them)"


def saturation(
    points: Sequence[Mapping[str, Any]],
    kind: str,
    shortfall: float = SHORTFALL,
    plateau: float = PLATEAU,
) -> dict[str, Any]:
    """The saturation point (module docstring): the first level that no longer keeps up."""
    usable = _usable(points)
    best = max((p["throughput"] for p in usable), default=None)
    found: dict[str, Any] = {
        "load": None,
        "reached": False,
        "reason": "not reached in this sweep",
        "max_throughput": best,
    }
    best_below = 0.0
    for p in usable:
        offered = p.get("scheduled_rate") or p.get("offered_rate")
        if kind == "rate" and offered and p["throughput"] < (1 - shortfall) * offered:
            found |= {
                "load": p["load"],
                "reached": True,
                "reason": f"answered {p['throughput']:.3g} req/s of the {offered:.3g} offered "
                f"(short by over {100 * shortfall:g} %)",
            }
            return found
        if best_below and p["throughput"] < (1 + plateau) * best_below:
            found |= {
                "load": p["load"],
                "reached": True,
                "reason": f"throughput {p['throughput']:.3g} req/s, under {100 * plateau:g} % "
                f"above the best at lower load ({best_below:.3g})",
            }
            return found
        best_below = max(best_below, p["throughput"])
    return found


def knee(
    points: Sequence[Mapping[str, Any]],
    latency: str = "p50_ms",
    noise: float = NOISE,
) -> dict[str, Any]:
    """The knee (module docstring): the last level before latency grows faster than
    throughput."""
    usable = [p for p in _usable(points) if p.get(latency)]
    for before, after in zip(usable, usable[1:], strict=False):
        gain = after["throughput"] / before["throughput"] - 1
        growth = after[latency] / before[latency] - 1
        if growth > max(gain, noise):
            return {
                "load": before["load"],
                "reached": True,
                "reason": f"from {before['load']:g} to {after['load']:g} {latency} grew "
                f"{100 * growth:.0f} % while throughput grew {100 * gain:.0f} %",
            }
    return {
        "load": None,
        "reached": False,
        "reason": f"{latency} never grew faster than throughput in this sweep",
    }


# ---- the sweep -------------------------------------------------------------------------------


def sweep(
    plan: SweepPlan,
    loadtests: Path,
    reports_dir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every point of ``plan``, analyse, write ``load-<sweep name>.*``; the document."""
    scratch = reports_dir / "sweep-runs"
    points: list[dict[str, Any]] = []
    target: dict[str, Any] = {}
    for level in plan.levels:
        load = plan.load_at(level)
        # no dot in the name: the result files' suffixes would eat "0.5"'s ".5"
        name = f"{plan.sweep_name}-{level:g}".replace(".", "_")
        log(f"sweep: {plan.kind}={level:g} ({plan.scenario}, {plan.run_time_s} s)")
        document = run_point(loadtests, scratch, plan, load, name)
        target = target or dict(document.get("target") or {})
        row = point_of(document, plan.kind, level)
        row["run"] = str(scratch / f"load-{name}.json")
        points.append(row)
        log(
            f"  throughput {row['throughput']:.4g} req/s, p50 {results.fmt(row['p50_ms'])} ms, "
            f"p99 {results.fmt(row['p99_ms'])} ms"
            + (
                f", achieved {results.fmt(row['achieved_rate'])} req/s sent"
                if row["achieved_rate"] is not None and plan.kind == "rate"
                else ""
            )
            + ("" if row["valid"] else f" (INVALID: {', '.join(row['validity_flags'])})")
        )
    document = build_document(plan, points, target)
    write(reports_dir, document)
    return document


def build_document(
    plan: SweepPlan, points: list[dict[str, Any]], target: Mapping[str, Any]
) -> dict[str, Any]:
    """The sweep's JSON document (kind "sweep"), analysis included."""
    sat = saturation(points, plan.kind, plan.shortfall, plan.plateau)
    kn = knee(points, noise=plan.noise)
    return {
        "schema_version": results.SCHEMA_VERSION,
        "kind": "sweep",
        "name": plan.sweep_name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sweep": plan.kind,
        "scenario": plan.scenario,
        "host": plan.host,
        "arrival": str(plan.base.arrival) if plan.kind == "rate" else None,
        "seed": plan.base.seed if plan.kind == "rate" else None,
        "num_requests": plan.base.num_requests,
        "max_concurrency": (
            plan.base.max_concurrency or DEFAULT_OPEN_LOOP_USERS if plan.kind == "rate" else None
        ),
        "run_time_s_per_point": plan.run_time_s,
        "knee_load": kn["load"],
        "saturation_load": sat["load"],
        "max_throughput": sat["max_throughput"],
        "invalid_points": sum(1 for p in points if not p["valid"]),
        "client_bound_points": sum(1 for p in points if p["client_bound"]),
        "knee": kn,
        "saturation": sat,
        "basis": basis(points),
        "rules": {"shortfall": plan.shortfall, "plateau": plan.plateau, "noise": plan.noise},
        "target": dict(target),
        "machine": results.machine(),
        "points": points,
    }


CSV_FIELDS = (
    "load",
    "offered_rate",
    "scheduled_rate",
    "achieved_rate",
    "concurrency",
    "requests",
    "error_rate",
    "throughput",
    "p50_ms",
    "p99_ms",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "tpot_p50_ms",
    "tpot_p99_ms",
    "output_tokens_per_s",
    "late_sends",
    "waited_for_sender",
    "unsent_due",
    "valid",
    "client_bound",
    "validity_flags",
)


def write(reports_dir: Path, document: Mapping[str, Any]) -> dict[str, Path]:
    """``load-<name>.json``, ``.csv`` (one row per point), ``.md`` and ``.png``."""
    paths = results.paths_for(reports_dir, document["name"])
    results.write_json(paths["json"], document)
    rows = []
    for p in document["points"]:
        row = {k: p.get(k) for k in CSV_FIELDS}
        row["validity_flags"] = ";".join(p.get("validity_flags") or [])
        rows.append(row)
    results.write_csv(paths["csv"], rows)
    paths["md"].write_text(sweep_markdown(document), encoding="utf-8")
    # matplotlib is optional: the tables say it all
    with contextlib.suppress(ImportError):
        plots.sweep_plot(paths["png"], document)
    return {k: v for k, v in paths.items() if k != "samples"}


def sweep_markdown(doc: Mapping[str, Any]) -> str:
    kind = doc["sweep"]
    streams = any("ttft_p50_ms" in p for p in doc["points"])
    out = [
        f"## Sweep `{doc['name']}`: {kind} against {doc['host']} ({doc['scenario']})",
        "",
        f"_{doc['machine']['note']}; {doc['run_time_s_per_point']} s per point"
        + (f", arrivals {doc['arrival']} (seed {doc['seed']})" if kind == "rate" else "")
        + "._",
        "",
        f"- Knee: **{_at(doc['knee'])}** ({doc['knee']['reason']}).",
        f"- Saturation: **{_at(doc['saturation'])}** ({doc['saturation']['reason']}); "
        "best throughput "
        f"{results.fmt(doc['max_throughput'])} req/s.",
    ]
    out.append(f"- Read from {doc['basis']}.")
    if doc["invalid_points"]:
        out.append(
            f"- {doc['invalid_points']} point(s) invalid, {doc['client_bound_points']} of them "
            "client-bound."
        )
    out.append("")
    headers = [kind, "sent req/s", "answered req/s", "errors %", "p50 ms", "p99 ms"]
    if streams:
        headers += ["TTFT p50", "TTFT p99", "ITL p50", "ITL p99"]
    headers += ["late", "valid"]
    rows = []
    for p in doc["points"]:
        row = [
            f"{p['load']:g}",
            p["achieved_rate"],
            p["throughput"],
            100 * p["error_rate"],
            p["p50_ms"],
            p["p99_ms"],
        ]
        if streams:
            row += [p.get("ttft_p50_ms"), p.get("ttft_p99_ms")]
            row += [p.get("itl_p50_ms"), p.get("itl_p99_ms")]
        flags = ",".join(p["validity_flags"])
        row += [p["late_sends"], "yes" if p["valid"] else f"no ({flags})"]
        rows.append(row)
    out.append(results.markdown_table(headers, rows))
    return "\n".join(out) + "\n"


def _at(found: Mapping[str, Any]) -> str:
    return f"{found['load']:g}" if found["reached"] else "not reached"
