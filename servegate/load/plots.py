"""PNG plots of load runs and experiments (matplotlib, headless)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from servegate.load.metrics import Samples

#: scraped series plotted under the latency, at most (the rest stay in the JSON)
MAX_TELEMETRY_PANELS = 6


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_plot(path: Path, document: Mapping[str, Any], samples: Samples) -> None:
    """Latency over time per request name, the server's scraped series under it on the same
    time axis, and the streaming metrics' distributions."""
    plt = _pyplot()
    streams = [n for n in samples.values if ":" in n]
    requests = [n for n in samples.values if ":" not in n]
    ncols = 2 if streams else 1
    series = list(((document.get("telemetry") or {}).get("series") or {}).items())
    series = series[:MAX_TELEMETRY_PANELS]
    heights = [4.0] + [1.6] * len(series)
    fig, axes = plt.subplots(
        1 + len(series),
        ncols,
        figsize=(6 * ncols, sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for row, (name, data) in enumerate(series, start=1):
        tax = axes[row][0]
        # a scrape without a value is a gap in the line, not a straight line across it
        ys = [math.nan if v is None else v for v in data["values"]]
        tax.plot(data["t_s"][: len(ys)], ys, ".-", linewidth=1, markersize=3)
        tax.set_ylabel(name, fontsize=7)
        tax.set_title(f"server: {data['metric']}", fontsize=7, loc="left")
        tax.tick_params(labelsize=7)
        tax.grid(alpha=0.3)
        if row == len(series):
            tax.set_xlabel("time since start (s)")
        for extra in axes[row][1:]:
            extra.axis("off")
    ax = axes[0][0]
    start = document["started"]
    for name in requests:
        ax.plot(
            [t - start for t in samples.stamps[name]],
            samples.values[name],
            ".",
            markersize=2,
            label=name,
        )
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("request latency")
    if requests:
        ax.legend(fontsize=7)
    if series:
        # one time axis for latency and the server's series, so a queue build-up lines up
        # with the latency it caused
        for row in range(1, len(series) + 1):
            axes[row][0].sharex(ax)
    if streams:
        ax = axes[0][1]
        data = [samples.values[n] for n in sorted(streams)]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(
            range(1, len(data) + 1), [n.rpartition(":")[2].upper() for n in sorted(streams)]
        )
        ax.set_ylabel("ms")
        ax.set_title("streaming metrics (p0-p100 whiskers, no fliers)")
    valid = "" if document["validity"]["valid"] else " — INVALID run (client-bound)"
    fig.suptitle(f"{document['name']}{valid}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def series_plot(
    path: Path,
    title: str,
    x_label: str,
    panels: Sequence[tuple[str, Mapping[str, tuple[Sequence[Any], Sequence[float | None]]]]],
    note: str = "",
) -> None:
    """One panel per (y label, {series label: (xs, ys)}), side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (y_label, series) in zip(axes[0], panels, strict=True):
        for label, (xs, ys) in series.items():
            points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
            if points:
                ax.plot([str(p[0]) for p in points], [p[1] for p in points], "o-", label=label)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=7)
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sweep_plot(path: Path, doc: Mapping[str, Any]) -> None:
    """Throughput, then latency (p50/p99; TTFT and ITL for streams) against the swept load,
    with the knee and the saturation point marked."""
    plt = _pyplot()
    points = sorted(doc["points"], key=lambda p: p["load"])
    xs = [p["load"] for p in points]
    streams = any(p.get("ttft_p50_ms") is not None for p in points)
    ncols = 3 if streams else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4), squeeze=False)
    label = "offered rate (req/s)" if doc["sweep"] == "rate" else "concurrency (users)"

    def line(ax: Any, key: str, name: str, style: str = "o-") -> None:
        pairs = [(x, p.get(key)) for x, p in zip(xs, points, strict=True)]
        pairs = [(x, y) for x, y in pairs if y is not None]
        if pairs:
            ax.plot([x for x, _ in pairs], [y for _, y in pairs], style, label=name)

    ax = axes[0][0]
    line(ax, "throughput", "answered req/s")
    if doc["sweep"] == "rate":
        line(ax, "achieved_rate", "sent req/s", "s--")
        ax.plot(xs, xs, ":", color="grey", label="offered")
    ax.set_ylabel("requests/s")
    ax = axes[0][1]
    line(ax, "p50_ms", "p50")
    line(ax, "p99_ms", "p99")
    ax.set_ylabel("request latency (ms)")
    if streams:
        ax = axes[0][2]
        for metric in ("ttft", "itl"):
            line(ax, f"{metric}_p50_ms", f"{metric.upper()} p50")
            line(ax, f"{metric}_p99_ms", f"{metric.upper()} p99", "s--")
        ax.set_ylabel("ms")
    for ax in axes[0]:
        for what, colour in (("knee", "tab:orange"), ("saturation", "tab:red")):
            at = doc[what].get("load")
            if at is not None:
                ax.axvline(at, color=colour, alpha=0.5, linestyle="--", label=what)
        for p in points:
            if not p["valid"]:
                ax.axvspan(p["load"] * 0.97, p["load"] * 1.03, color="grey", alpha=0.15)
        if len(xs) > 2 and xs[0] > 0 and xs[-1] / xs[0] >= 8:
            # levels usually double: a log axis spaces them evenly
            ax.set_xscale("log", base=2)
            ax.minorticks_off()
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"{doc['name']} — {doc['host']} (grey: invalid points)\n{doc['machine']['note']}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
