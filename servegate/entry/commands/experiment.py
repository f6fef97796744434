"""``servegate experiment``: batching, worker-scaling and quantization sweeps on a reference
server; each writes reports/load-experiment-<kind>-<server>.{json,csv,md,png}."""

from __future__ import annotations

import argparse
from pathlib import Path

from servegate.entry.commands.common import log as _log
from servegate.entry.commands.common import repo_root
from servegate.errors import ServegateError

KINDS = ("batching", "workers", "quantization")


def register(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser(
        "experiment",
        help="batching / workers / quantization sweeps on a reference server",
        description="Restart the reference server per configuration, warm it, run a "
        "fixed-length headless Locust run per point, and write JSON, CSV, Markdown and a PNG "
        "plot with the knee stated.",
    )
    exp.add_argument("kind", choices=KINDS, help="the experiment to run")
    exp.add_argument(
        "--server",
        choices=["mlserver", "kserve"],
        default="mlserver",
        help="the reference server to start per configuration",
    )
    exp.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="where the models run"
    )
    exp.add_argument("--run-time", type=int, default=8, help="seconds per point (default 8)")
    exp.add_argument("--concurrency", default="1,8,32", help="users per point (batching)")
    exp.add_argument("--users", type=int, default=16, help="users (workers, quantization)")
    exp.add_argument(
        "--grid",
        default="",
        help="batching on MLServer: SIZE:TIME_MS pairs, e.g. 1:0,8:10,32:50 "
        "(default: the trimmed grid, see the README)",
    )
    exp.add_argument("--workers", default="", help="worker counts, e.g. 0,1,2,4")
    exp.set_defaults(func=cmd_experiment)


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ServegateError(f"expected comma-separated integers, not {text!r}") from None


def cmd_experiment(args: argparse.Namespace) -> int:
    from servegate.load import experiments

    settings = experiments.Settings(
        loadtests=repo_root() / "loadtests",
        reports_dir=Path(args.reports_dir).resolve(),
        state_dir=Path(args.state_dir).resolve(),
        run_time_s=args.run_time,
        device=args.device,
        log=_log,
    )
    if args.kind == "batching":
        grid = None
        if args.grid:
            try:
                grid = [
                    (int(s), float(t))
                    for s, _, t in (item.partition(":") for item in args.grid.split(","))
                ]
            except ValueError:
                raise ServegateError(f"--grid {args.grid!r}: expected SIZE:TIME_MS,...") from None
        doc = experiments.batching(settings, args.server, grid, _ints(args.concurrency))
    elif args.kind == "workers":
        doc = experiments.workers(settings, args.server, _ints(args.workers) or None, args.users)
    else:
        doc = experiments.quantization(settings, args.server, users=args.users)
    _log(f"{doc['name']}: {len(doc['points'])} points; knee: {doc.get('knee')}")
    _log(f"written: {Path(args.reports_dir) / ('load-' + doc['name'])}.{{json,csv,md,png}}")
    return 0
