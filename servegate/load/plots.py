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
