"""servegate's streaming figures beside ``vllm bench serve``'s on the same server and workload:
one table (TTFT, ITL, TPOT and E2E at p50 and p99, request and output-token throughput), the
ratio of each, and for each figure outside the ±10% goal what the recorded data say about why.

The servegate side is a load-run result with a ``workload`` block (its throughput is read over
the first send to the last answer, as vLLM times its run); the vLLM side is
:class:`~servegate.load.vllm_bench.VllmFigures`.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from servegate.errors import ServegateError
from servegate.load import results
from servegate.load.vllm_bench import METRICS, PERCENTILES, VllmFigures

GOAL = 0.10
KIND = "vs-vllm"

#: the definitions both sides use here (servegate runs with --stream-timing vllm); servegate's
#: own differ only where said
DEFINITIONS = {
    "ttft": "first SSE chunk carrying a choice, even with empty text, from just before the "
    "request is written (servegate's own default waits for a chunk with text).",
    "itl": "gaps between consecutive chunks carrying a choice, pooled over all requests; a chunk "
    "may hold several tokens when the server's output queue runs behind (servegate's own "
    "default counts only chunks with text).",
    "tpot": "(E2E - TTFT) / (output tokens - 1) per request, tokens from usage.completion_tokens.",
    "e2e": "to the last chunk carrying a choice (servegate's own default: to the end of the "
    "stream, after the usage chunk and [DONE]).",
    "throughput": "answered requests and usage output tokens over the first send to the last "
    "answer (vLLM's benchmark duration; servegate's workload span).",
}

LABELS = {"ttft": "TTFT", "itl": "ITL", "tpot": "TPOT", "e2e": "E2E"}


class SideBySideError(ServegateError):
    """Results that cannot be put side by side."""


def servegate_figures(document: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of a servegate load run with a workload (one stream)."""
    streams = document.get("streaming") or {}
    if len(streams) != 1:
        raise SideBySideError(
            f"servegate run {document.get('name')!r}: expected one stream, found "
            f"{', '.join(streams) or 'none'}"
        )
    ((stream_name, stream),) = streams.items()
    block = document.get("workload")
    if not block:
        raise SideBySideError(f"servegate run {document.get('name')!r} has no workload block")
    percentiles = {
        metric: {q: (stream.get(f"{metric}_ms") or {}).get(f"p{q}") for q in PERCENTILES}
        for metric, _ in METRICS
    }
    return {
        "stream": stream_name,
        "percentiles": percentiles,
        "means": {m: (stream.get(f"{m}_ms") or {}).get("mean") for m, _ in METRICS},
        "itl_samples": (stream.get("itl_ms") or {}).get("count"),
        # share of gaps under 1 ms, when the caller read the raw samples
        "itl_bursts": None,
        "requests": block["requests"],
        "failed": block["failed"],
        "span_s": block["span_s"],
        "request_throughput": block["requests_per_s"],
        "output_throughput": block["output_tokens_per_s"],
        "output_tokens": block["output_tokens"]["achieved"]["total"],
        "output_held": block["output_held"],
        "valid": document["validity"]["valid"],
        "validity_flags": [f["detail"] for f in document["validity"].get("flags", [])],
        # open loop: the rate the seeded schedule actually asked for (its own draw of gaps)
        "scheduled_rate": ((document.get("config") or {}).get("schedule") or {}).get(
            "scheduled_rate"
        ),
        "offered_rate": ((document.get("config") or {}).get("schedule") or {}).get("offered_rate"),
    }


def _median(values: list[Any]) -> Any:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def median_means(views: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Each figure's median over several {figure: mean ms} views."""
    keys = list(views[0]) if views else []
    return {k: _median([v.get(k) for v in views]) for k in keys}


def median_servegate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """servegate's figures over several rounds: each figure's median; counts of one round
    (every round sends the same prompts), failures summed, validity of all."""
    if len(rounds) == 1:
        return rounds[0]
    first = rounds[0]
    out = dict(first)
    out["percentiles"] = {
        metric: {q: _median([r["percentiles"][metric][q] for r in rounds]) for q in by_q}
        for metric, by_q in first["percentiles"].items()
    }
    out["means"] = median_means([r["means"] for r in rounds])
    for key in ("span_s", "request_throughput", "output_throughput", "itl_samples", "itl_bursts"):
        out[key] = _median([r[key] for r in rounds])
    out["failed"] = sum(r["failed"] for r in rounds)
    out["valid"] = all(r["valid"] for r in rounds)
    out["validity_flags"] = [f for r in rounds for f in r["validity_flags"]]
    out["output_held"] = all(r["output_held"] for r in rounds)
    return out


def median_vllm(rounds: list[VllmFigures]) -> VllmFigures:
    """vLLM's figures over several rounds: each figure's median, failures summed."""
    if len(rounds) == 1:
        return rounds[0]
    first = rounds[0]
    return replace(
        first,
        failed=sum(r.failed for r in rounds),
        duration_s=_median([r.duration_s for r in rounds]),
        request_throughput=_median([r.request_throughput for r in rounds]),
        output_throughput=_median([r.output_throughput for r in rounds]),
        percentiles={
            metric: {q: _median([r.percentiles[metric][q] for r in rounds]) for q in by_q}
            for metric, by_q in first.percentiles.items()
        },
        means=median_means([r.means for r in rounds]),
        itl_samples=_median([r.itl_samples for r in rounds]),
        itl_bursts=_median([r.itl_bursts for r in rounds]),
    )


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def compare(
    ours: Mapping[str, Any], vllm: VllmFigures, context: Mapping[str, Any]
) -> dict[str, Any]:
    """The side-by-side document: rows with ratios and, outside the goal, the reasons found."""
    rows: list[dict[str, Any]] = []
    for metric, _ in METRICS:
        for q in PERCENTILES:
            rows.append(
                _row(
                    f"{LABELS[metric]} p{q} (ms)",
                    metric,
                    q,
                    ours["percentiles"][metric][q],
                    vllm.percentiles[metric][q],
                )
            )
    rows.append(
        _row(
            "request throughput (req/s)",
            "throughput",
            None,
            ours["request_throughput"],
            vllm.request_throughput,
        )
    )
    rows.append(
        _row(
            "output token throughput (tok/s)",
            "throughput",
            None,
            ours["output_throughput"],
            vllm.output_throughput,
        )
    )
    view = context.get("server_view") or {}
    server_e2e = [(view.get(side) or {}).get("e2e") for side in ("servegate", "vllm")]
    if None not in server_e2e:
        # the server's own clock: how much slower it served during servegate's run
        server_factor = _ratio(server_e2e[0], server_e2e[1])
        factor_source = (
            f"vLLM's own /metrics put its mean E2E at {server_e2e[0]:.0f} ms during servegate's "
            f"run and {server_e2e[1]:.0f} ms during vLLM's"
        )
    else:
        server_factor = _ratio(ours["percentiles"]["e2e"][50], vllm.percentiles["e2e"][50])
        factor_source = f"E2E p50 ratio {server_factor:.2f}" if server_factor else ""
    for row in rows:
        if row["within_goal"] is False:
            row["explanation"] = explain(row, ours, vllm, server_factor, factor_source)
            overhead = client_overhead(row["metric"], ours, vllm, view)
            if overhead:
                row["explanation"] += "; " + overhead
    within = sum(1 for r in rows if r["within_goal"])
    return {
        "schema_version": results.SCHEMA_VERSION,
        "kind": KIND,
        "name": context.get("name", KIND),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "goal": f"servegate within ±{GOAL:.0%} of vllm bench serve on each figure",
        "within_goal": within,
        "figures": len(rows),
        "rows": rows,
        "definitions": DEFINITIONS,
        "server_factor": server_factor,
        "servegate": dict(ours),
        "vllm": {
            "completed": vllm.completed,
            "failed": vllm.failed,
            "duration_s": vllm.duration_s,
            "itl_samples": vllm.itl_samples,
            "itl_bursts": vllm.itl_bursts,
            "means": vllm.means,
            "output_tokens": vllm.total_output_tokens,
            "max_concurrency": vllm.max_concurrency,
            "request_rate": vllm.request_rate,
        },
        **{k: v for k, v in context.items() if k != "name"},
        "machine": results.machine(),
    }


def _row(
    label: str, metric: str, q: int | None, ours: float | None, theirs: float | None
) -> dict[str, Any]:
    ratio = _ratio(ours, theirs)
    return {
        "figure": label,
        "metric": metric,
        "percentile": q,
        "servegate": ours,
        "vllm": theirs,
        "ratio": ratio,
        "within_goal": None if ratio is None else abs(ratio - 1) <= GOAL,
        "explanation": None,
    }


def client_overhead(
    metric: str, ours: Mapping[str, Any], vllm: VllmFigures, view: Mapping[str, Any]
) -> str:
    """What each client adds to the server's own mean of a latency (TTFT, E2E): the time from
    its clock start to the server's, and from the server's last token to its read."""
    if metric not in ("ttft", "e2e"):
        return ""
    server_ours = (view.get("servegate") or {}).get(metric)
    server_theirs = (view.get("vllm") or {}).get(metric)
    client_ours = (ours.get("means") or {}).get(metric)
    client_theirs = vllm.means.get(metric)
    if server_ours is None or server_theirs is None or client_ours is None or client_theirs is None:
        return ""
    return (
        f"against the server's own mean {LABELS[metric]}, servegate's client adds "
        f"{client_ours - server_ours:.0f} ms and vLLM's {client_theirs - server_theirs:.0f} ms "
        "(sending, connection and reading on a shared machine)"
    )


def explain(
    row: Mapping[str, Any],
    ours: Mapping[str, Any],
    vllm: VllmFigures,
    server_factor: float | None,
    factor_source: str = "",
) -> str:
    """Why a figure is outside the goal, from what the two runs recorded."""
    metric, q, ratio = row["metric"], row["percentile"], row["ratio"]
    notes: list[str] = []
    # the two runs are sequential: a server slower in one shows in every latency alike
    if server_factor is not None and abs(server_factor - 1) > GOAL:
        expected = 1 / server_factor if metric == "throughput" else server_factor
        relative = ratio / expected
        slower = f"{abs(server_factor - 1):.0%} {'slower' if server_factor > 1 else 'faster'}"
        if abs(relative - 1) <= GOAL:
            notes.append(
                f"the server itself was {slower} during servegate's run ({factor_source}; the "
                f"runs are sequential on a shared machine); measured against that, this figure "
                f"agrees ({relative:.2f})"
            )
        else:
            notes.append(
                f"the server itself was {slower} during servegate's run ({factor_source}); "
                f"that leaves a ratio of {relative:.2f}"
            )
    if q == 99 and metric in ("ttft", "tpot", "e2e"):
        n = ours["requests"] - ours["failed"]
        notes.append(
            f"a p99 of {n} requests is read between the {2 if n < 100 else math.ceil(n / 100)} "
            "slowest: one request's luck moves it"
        )
    if metric == "itl":
        ours_n, theirs_n = ours.get("itl_samples"), vllm.itl_samples
        if ours_n is not None and theirs_n is not None and ours_n != theirs_n:
            notes.append(
                f"the server sent {ours_n} chunk gaps in servegate's run and {theirs_n} in "
                "vLLM's for the same tokens: vLLM's API server merges tokens into one chunk when "
                "it runs behind, so a gap is one decode step or several"
            )
        ours_b, theirs_b = ours.get("itl_bursts"), vllm.itl_bursts
        if ours_b is not None and theirs_b is not None and max(ours_b, theirs_b) > 0.05:
            notes.append(
                f"{ours_b:.0%} of servegate's gaps and {theirs_b:.0%} of vLLM's are under 1 ms: "
                "chunks read together in one go, so the ITL distribution is a mix of near-zero "
                "gaps and whole steps, and its percentiles move with how the bursts fall"
            )
    scheduled, offered = ours.get("scheduled_rate"), ours.get("offered_rate")
    if metric == "throughput" and scheduled and offered:
        notes.append(
            f"open loop: each side draws its own arrival times, and the throughput of "
            f"{ours['requests']} requests follows that draw; servegate's seeded schedule asked "
            f"for {scheduled:.2f} req/s of the {offered:g} offered ({scheduled / offered:.2f}), "
            "vLLM's draw is not recorded in its result"
        )
    if not ours.get("valid", True) and (q == 99 or metric == "itl"):
        notes.append(
            "servegate's client was starved in its run ("
            + "; ".join(ours.get("validity_flags", []))
            + "): its tail readings carry that lag; vLLM's client is not checked for it"
        )
    if metric == "ttft" and q == 50 and not notes:
        notes.append(DEFINITIONS["ttft"])
    if not notes:
        notes.append(f"not explained by what was recorded; definitions: {DEFINITIONS[metric]}")
    return "; ".join(notes)


def markdown(document: Mapping[str, Any]) -> str:
    """The side-by-side as Markdown (one table, then the notes and definitions)."""
    sg, vl = document["servegate"], document["vllm"]
    wl = document.get("workload", {})
    out = [f"## servegate vs `vllm bench serve`: `{document['name']}`", ""]
    out.append(
        f"Target {document.get('target', '?')}, model `{document.get('model', '?')}`; "
        f"{wl.get('num_prompts', '?')} random prompts of {wl.get('input_len', '?')} input and "
        f"{wl.get('output_len', '?')} output tokens; {document.get('load_description', '')}."
    )
    out.append(
        f"_{document['machine']['note']}._ The runs are sequential: {document.get('order', '')}."
    )
    if document.get("loadavg"):
        out.append(
            "Load average (1 min) at the start of each run: "
            + ", ".join(f"{k} {v:.2f}" for k, v in document["loadavg"].items())
            + "."
        )
    if not sg["valid"]:
        out.append(
            "servegate's run was marked **INVALID** (client-bound): "
            + "; ".join(sg["validity_flags"])
        )
    if sg.get("output_held") is False:
        out.append("servegate's answers were not all of the asked length (see its workload block).")
    out.append("")
    rounds = document.get("rounds", 1)
    out.append(
        f"Goal {document['goal']}: **{document['within_goal']} of {document['figures']}** within"
        + (f" (each figure the median of {rounds} rounds)." if rounds > 1 else ".")
    )
    out.append("")
    out.append(
        results.markdown_table(
            ["figure", "servegate", "vLLM", "servegate / vLLM", "within ±10%"],
            [
                [
                    r["figure"],
                    r["servegate"],
                    r["vllm"],
                    r["ratio"],
                    "–" if r["within_goal"] is None else ("yes" if r["within_goal"] else "no"),
                ]
                for r in document["rows"]
            ],
        )
    )
    view = document.get("server_view") or {}
    if view.get("servegate") and view.get("vllm"):
        means = sg.get("means") or {}
        out += [
            "",
            "The server's own clock (vLLM's /metrics histograms), means in ms over each run, "
            "beside each client's mean:",
            "",
            results.markdown_table(
                ["figure", "server, servegate's run", "servegate", "server, vLLM's run", "vLLM"],
                [
                    [
                        LABELS[m],
                        view["servegate"].get(m),
                        means.get(m),
                        view["vllm"].get(m),
                        (vl.get("means") or {}).get(m),
                    ]
                    for m in ("ttft", "itl", "tpot", "e2e")
                ],
            ),
        ]
    outside = [r for r in document["rows"] if r["explanation"]]
    if outside:
        out += ["", "Outside the goal, and why:", ""]
        out += [f"- **{r['figure']}**: {r['explanation']}" for r in outside]
    out += [
        "",
        f"Requests: servegate {sg['requests']} ({sg['failed']} failed), vLLM {vl['completed']} "
        f"({vl['failed']} failed); output tokens {sg['output_tokens']} vs {vl['output_tokens']}; "
        f"ITL gaps {sg['itl_samples']} vs {vl['itl_samples']}; timed span "
        f"{results.fmt(sg['span_s'], 2)} s vs {results.fmt(vl['duration_s'], 2)} s.",
        "",
        "Definitions:",
        "",
    ]
    out += [f"- {LABELS.get(k, k)}: {v}" for k, v in document["definitions"].items()]
    return "\n".join(out) + "\n"


def write(reports_dir: Path, document: Mapping[str, Any]) -> dict[str, Path]:
    """``load-<name>.json`` and ``.md`` in ``reports_dir``."""
    paths = results.paths_for(reports_dir, document["name"])
    results.write_json(paths["json"], document)
    paths["md"].write_text(markdown(document), encoding="utf-8")
    return {"json": paths["json"], "md": paths["md"]}
