"""``servegate load``: run the Locust scenarios, and benchmark the load generator itself.

- ``servegate load run -- <locust options>``: ``locust -f loadtests/`` with those options;
- ``servegate load fidelity``: streaming timings vs the calibration server's configured delays;
- ``servegate load capacity``: Locust's request rate vs wrk's on the null V2 endpoint;
- ``servegate load vs-vllm``: the streaming scenario beside ``vllm bench serve`` (vs_vllm.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from servegate.entry.commands.common import log as _log
from servegate.entry.commands.common import repo_root
from servegate.entry.commands.vs_vllm import add_arguments as add_vs_vllm_arguments
from servegate.entry.commands.vs_vllm import cmd_vs_vllm, given_options
from servegate.errors import ServegateError


def register(sub: argparse._SubParsersAction) -> None:
    load = sub.add_parser(
        "load",
        help="Locust scenarios and the load generator's own benchmarks",
        description="run: locust -f loadtests/ with the options after '--'. fidelity and "
        "capacity: benchmarks against loadtests/calibration/server.py (results in "
        "reports/load-benchmark-*.{json,csv,md,png}). vs-vllm: servegate's streaming scenario "
        "and vllm bench serve on one vLLM server, one table (reports/load-vs-vllm.{json,md}).",
    )
    load.add_argument("what", choices=["run", "fidelity", "capacity", "vs-vllm"])
    load.add_argument("--run-time", type=int, default=10, help="seconds per point")
    load.add_argument("--ttft-ms", type=float, default=100.0)
    load.add_argument("--itl-ms", type=float, default=20.0)
    load.add_argument("--tokens", type=int, default=32)
    load.add_argument("--users", default="", help="users per point, e.g. 1,8,32")
    add_vs_vllm_arguments(load)
    load.set_defaults(func=cmd_load, passes_extra=True)


def cmd_load(args: argparse.Namespace, extra: list[str]) -> int:
    loadtests = repo_root() / "loadtests"
    if args.what == "run":
        # options of the vs-vllm group that Locust shares (--tokenizer, ...) are Locust's here
        extra = [a for a in extra if a != "--"] + given_options(args)
        return subprocess.call([sys.executable, "-m", "locust", "-f", str(loadtests), *extra])
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
