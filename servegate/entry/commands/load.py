"""``servegate load``: run the Locust scenarios, and benchmark the load generator itself.

- ``servegate load run -- <locust options>``: ``locust -f loadtests/`` with those options;
- ``servegate load fidelity``: streaming timings vs the calibration server's configured delays;
- ``servegate load capacity``: Locust's request rate vs wrk's on the null V2 endpoint;
- ``servegate load sweep --rates ... | --concurrency ... --host URL``: one run per load level
  against any target, the knee and the saturation point located.
- ``servegate load vs-vllm``: the streaming scenario beside ``vllm bench serve`` (vs_vllm.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from servegate.entry.commands.common import log as _log
from servegate.entry.commands.common import repo_root
from servegate.entry.commands.vs_vllm import add_arguments as add_vs_vllm_arguments
from servegate.entry.commands.vs_vllm import cmd_vs_vllm, given_options
from servegate.errors import ServegateError
from servegate.load.arrivals import (
    ArrivalError,
    LoadOptions,
    parse_arrival,
    parse_list,
)

if TYPE_CHECKING:
    from servegate.load.sweep import SweepPlan


def register(sub: argparse._SubParsersAction) -> None:
    load = sub.add_parser(
        "load",
        help="Locust scenarios and the load generator's own benchmarks",
        description="run: locust -f loadtests/ with the options after '--'. fidelity and "
        "capacity: benchmarks against loadtests/calibration/server.py (results in "
        "reports/load-benchmark-*.{json,csv,md,png}). sweep: one run per --rates or "
        "--concurrency level against --host, the knee and saturation point located "
        "(reports/load-sweep-*.{json,csv,md,png}); options after '--' go to every run "
        "(--model, --task, --tags ...). vs-vllm: servegate's streaming scenario and vllm bench "
        "serve on one vLLM server, one table (reports/load-vs-vllm.{json,md}).",
    )
    load.add_argument(
        "what",
        choices=["run", "fidelity", "capacity", "sweep", "vs-vllm"],
        help="run: Locust with the options after '--'; fidelity: measured TTFT/ITL against "
        "the calibration server's set delays; capacity: Locust's request rate against wrk's; "
        "sweep: one run per load level against --host; vs-vllm: beside vllm bench serve",
    )
    load.add_argument("--run-time", type=int, default=10, help="seconds per point")
    load.add_argument(
        "--ttft-ms",
        type=float,
        default=100.0,
        help="fidelity: the time to first token the calibration server is set to (ms)",
    )
    load.add_argument(
        "--itl-ms",
        type=float,
        default=20.0,
        help="fidelity: the gap between tokens the calibration server is set to (ms)",
    )
    load.add_argument(
        "--tokens",
        type=int,
        default=32,
        help="fidelity: tokens per streamed answer from the calibration server",
    )
    load.add_argument("--users", default="", help="users per point, e.g. 1,8,32")
    sweep = load.add_argument_group("sweep")
    sweep.add_argument("--host", default="", help="sweep: base URL of the target, any server")
    sweep.add_argument(
        "--scenario",
        default="v2-rest",
        help="sweep: v2-rest (default), v2-grpc, v1, openai-stream or embeddings",
    )
    sweep.add_argument("--rates", default="", help="sweep: open-loop rates in req/s, e.g. 1,2,4,8")
    sweep.add_argument(
        "--concurrency",
        default="",
        help="sweep: closed-loop user counts, each sending back to back, e.g. 1,4,16",
    )
    sweep.add_argument(
        "--arrival",
        default="poisson",
        help="sweep --rates: poisson (default), constant or gamma:<burstiness>",
    )
    sweep.add_argument(
        "--seed", type=int, default=0, help="sweep --rates: seed of the arrival schedules"
    )
    sweep.add_argument(
        "--num-requests",
        type=int,
        default=None,
        help="sweep: end each point after this many answered requests (--run-time caps it)",
    )
    add_vs_vllm_arguments(load)
    load.set_defaults(func=cmd_load, passes_extra=True)


def cmd_load(args: argparse.Namespace, extra: list[str]) -> int:
    loadtests = repo_root() / "loadtests"
    if args.what == "run":
        # options of the vs-vllm group that Locust shares (--tokenizer, ...) are Locust's here
        extra = [a for a in extra if a != "--"] + given_options(args)
        return subprocess.call([sys.executable, "-m", "locust", "-f", str(loadtests), *extra])
    if args.what == "sweep":
        return _sweep(args, [a for a in extra if a != "--"], loadtests)
    if args.what == "vs-vllm":
        if extra:
            raise ServegateError(f"load vs-vllm: unknown option(s) {' '.join(extra)}")
        return cmd_vs_vllm(args)
    from servegate.load import benchmarks
    from servegate.load.experiments import Settings

    settings = Settings(
        loadtests=loadtests,
        reports_dir=Path(args.reports_dir).resolve(),
        state_dir=Path(args.state_dir).resolve(),
        run_time_s=args.run_time,
        log=_log,
    )
    script = loadtests / "calibration" / "server.py"
    users = [int(u) for u in args.users.split(",") if u.strip()]
    if args.what == "fidelity":
        doc = benchmarks.fidelity(
            settings, script, args.ttft_ms, args.itl_ms, args.tokens, users or (1, 8, 32)
        )
    else:
        doc = benchmarks.capacity(settings, script, users or (8, 32))
    for point in doc["points"]:
        _log(
            " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()
            )
        )
    _log(
        f"goal {doc['goal']}: {'met' if doc['goal_met'] else 'NOT met'}; "
        f"reports/load-{doc['name']}.md"
    )
    return 0


def sweep_plan(args: argparse.Namespace, extra: list[str]) -> SweepPlan:
    """The sweep the options describe; ArrivalError (one line) for anything that is not one."""
    from servegate.load.sweep import SweepPlan

    if bool(args.rates) == bool(args.concurrency):
        raise ArrivalError("load sweep: give --rates or --concurrency (one of them)")
    if not args.host:
        raise ArrivalError("load sweep: give --host, the base URL of the target")
    if args.run_time < 1:
        raise ArrivalError(f"--run-time {args.run_time}: must be at least 1 second")
    if args.rates:
        kind, levels = "rate", parse_list("--rates", args.rates, float)
    else:
        kind, levels = "concurrency", parse_list("--concurrency", args.concurrency, int)
    for option in ("--rate", "--concurrency", "--arrival", "--seed", "-u", "--users", "-t"):
        if option in extra:
            raise ArrivalError(f"load sweep: {option} after '--' clashes with the sweep's own")
    base = LoadOptions(
        arrival=parse_arrival(args.arrival),
        seed=args.seed,
        num_requests=args.num_requests,
        max_concurrency=args.max_concurrency,
    )
    return SweepPlan(
        kind=kind,
        levels=levels,
        host=args.host,
        scenario=args.scenario,
        base=base,
        run_time_s=args.run_time,
        locust_args=extra,
        name=args.name or "",
    )


def _sweep(args: argparse.Namespace, extra: list[str], loadtests: Path) -> int:
    from servegate.load import sweep

    plan = sweep_plan(args, extra)
    reports_dir = Path(args.reports_dir).resolve()
    doc = sweep.sweep(plan, loadtests, reports_dir, log=_log)
    for what in ("knee", "saturation"):
        part = doc[what]
        at = f"{part['load']:g}" if part["reached"] else "not reached"
        _log(f"{what}: {at} ({part['reason']})")
    _log(f"results: {reports_dir / ('load-' + doc['name'] + '.md')}")
    return 0
