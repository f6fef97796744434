"""``servegate experiment``: batching, worker-scaling and quantization sweeps; each writes
reports/load-experiment-<kind>-<server>.{json,csv,md,png}.

On a reference server servegate starts (a local process or a container), every configuration
gets a fresh server whose worker processes run a thread count that fits the server's cores.
Against a server servegate did not start (``--host``), only batching can run: what the client
varies (rows per request, concurrent users).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servegate.entry.commands.common import log as _log
from servegate.entry.commands.common import repo_root
from servegate.errors import ServegateError

KINDS = ("batching", "workers", "quantization")
BACKENDS = ("local", "testcontainers")


def register(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser(
        "experiment",
        help="batching / workers / quantization sweeps on a reference server or any --host",
        description="Restart the reference server per configuration, warm it, run a "
        "fixed-length headless Locust run per point, and write JSON, CSV, Markdown and a PNG "
        "plot with the knee stated. Each point records the threads per worker, the server's "
        "and the client's CPU, and is flagged invalid when workers x threads exceed the "
        "server's cores or server and client saturate the machine. With --host, batching "
        "sweeps what the client varies (rows per request, concurrent users) against any "
        "server; workers and quantization restart the server, so servegate must start it.",
    )
    exp.add_argument(
        "kind",
        choices=KINDS,
        help="batching: batch settings (or, with --host, rows per request x users); workers: "
        "worker processes; quantization: dtypes, speed and agreement",
    )
    exp.add_argument(
        "--server",
        choices=["mlserver", "kserve"],
        default="mlserver",
        help="reference server to start (default mlserver); with --host, the V2 dialect to "
        "send (mlserver or kserve input conventions)",
    )
    exp.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="device (default cpu)"
    )
    exp.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="where reference servers run: local processes (default) or testcontainers "
        "(one container per configuration, CPU-limited with --server-cpus)",
    )
    exp.add_argument(
        "--run-time", type=int, default=8, help="seconds of load per point (default 8)"
    )
    exp.add_argument(
        "--concurrency", default="1,8,32", help="users per point, batching (default 1,8,32)"
    )
    exp.add_argument(
        "--users", type=int, default=16, help="users per point, workers and quantization"
    )
    exp.add_argument(
        "--grid",
        default="",
        help="batching on MLServer: SIZE:TIME_MS pairs, e.g. 1:0,8:10,32:50 "
        "(default: the trimmed grid, see the README)",
    )
    exp.add_argument(
        "--workers",
        default="",
        help="worker counts, e.g. 0,1,2,4 (default mlserver 0,1,2,4; kserve 1,2,4)",
    )
    exp.add_argument(
        "--server-cpus",
        default="",
        help="cores the server gets (default: every core of this machine); sizes the threads "
        "per worker, and with --backend testcontainers is each container's CPU limit",
    )
    exp.add_argument(
        "--threads-per-worker",
        default="",
        help="compute threads per worker process (OMP_NUM_THREADS, MKL_NUM_THREADS); default: "
        "server cores / workers, at least 1; 0 leaves the server's default (one per core)",
    )
    exp.add_argument(
        "--image",
        default="",
        help="--backend testcontainers: the server image (default: the backend's)",
    )
    target = exp.add_argument_group("any target (--host; batching only)")
    target.add_argument(
        "--host",
        default="",
        help="base URL of a running server servegate did not start, e.g. http://10.0.0.5:8080",
    )
    target.add_argument(
        "--model", default="", help="--host: the model to load (default tiny-text-classification)"
    )
    target.add_argument(
        "--task",
        default="text-classification",
        help="--host: the model's task, picks the request payload (default text-classification)",
    )
    target.add_argument(
        "--protocol",
        choices=["v2", "v1"],
        default="v2",
        help="--host: V2 REST infer (default) or KServe V1 predict",
    )
    target.add_argument(
        "--instances", default="1", help="--host: rows per request per point, e.g. 1,8,32"
    )
    target.add_argument(
        "--server-pid",
        default="",
        help="--host: pid of the server's main process on this machine, to record its CPU "
        "and threads (default: not measured)",
    )
    exp.set_defaults(func=cmd_experiment)


def ints(text: str, option: str, minimum: int = 0) -> list[int]:
    """Comma-separated integers of ``option``, each at least ``minimum``."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ServegateError(
            f"{option} {text!r}: expected comma-separated integers, e.g. 1,8,32"
        ) from None
    low = [v for v in values if v < minimum]
    if low:
        raise ServegateError(f"{option} {text!r}: every value must be at least {minimum}")
    return values


def grid(text: str) -> list[tuple[int, float]] | None:
    if not text:
        return None
    try:
        pairs = [
            (int(s), float(t)) for s, sep, t in (item.partition(":") for item in text.split(","))
        ]
    except ValueError:
        raise ServegateError(f"--grid {text!r}: expected SIZE:TIME_MS,... e.g. 1:0,8:10") from None
    if any(s < 1 or t < 0 for s, t in pairs):
        raise ServegateError(f"--grid {text!r}: sizes are at least 1, times at least 0")
    return pairs


@dataclass(frozen=True)
class Choices:
    """The experiment's options, checked."""

    server_cpus: float | None
    threads_per_worker: int | None
    host: str | None
    server_pid: int | None


def check(args: argparse.Namespace, cores: int) -> Choices:
    """Every option that does not fit, as one line (ServegateError)."""
    if args.run_time < 1:
        raise ServegateError(f"--run-time {args.run_time}: expected at least 1 second")
    if args.users < 1:
        raise ServegateError(f"--users {args.users}: expected at least 1")
    server_cpus: float | None = None
    if args.server_cpus:
        try:
            server_cpus = float(args.server_cpus)
        except ValueError:
            raise ServegateError(
                f"--server-cpus {args.server_cpus!r}: expected a number of cores, e.g. 1 or 1.5"
            ) from None
        if not 0 < server_cpus <= cores:
            raise ServegateError(
                f"--server-cpus {args.server_cpus}: expected more than 0 and at most the "
                f"{cores} core(s) this machine gives"
            )
    threads: int | None = None
    if args.threads_per_worker != "":
        try:
            threads = int(args.threads_per_worker)
        except ValueError:
            threads = -1
        if threads < 0:
            raise ServegateError(
                f"--threads-per-worker {args.threads_per_worker!r}: expected 0 (the server's "
                "default) or a positive integer"
            )
    if args.image and args.backend != "testcontainers":
        raise ServegateError("--image needs --backend testcontainers")
    host = args.host or None
    if host is None:
        for option, value in (
            ("--server-pid", args.server_pid),
            ("--model", args.model),
        ):
            if value:
                raise ServegateError(
                    f"{option} goes with --host (a server servegate did not start)"
                )
        return Choices(server_cpus, threads, None, None)
    if args.kind != "batching":
        raise ServegateError(
            f"experiment {args.kind} restarts the server per configuration, so servegate must "
            "start it: drop --host (against your own server, `servegate experiment batching "
            "--host URL` sweeps rows per request and concurrency)"
        )
    if not host.startswith(("http://", "https://")):
        raise ServegateError(f"--host {host!r}: expected a base URL, e.g. http://127.0.0.1:8080")
    if args.backend != "local" or args.image:
        raise ServegateError("--backend and --image start a server; --host names a running one")
    if threads is not None or args.grid:
        option = "--threads-per-worker" if threads is not None else "--grid"
        raise ServegateError(
            f"{option} configures a server servegate starts; against --host set it on your server"
        )
    pid: int | None = None
    if args.server_pid:
        try:
            pid = int(args.server_pid)
        except ValueError:
            raise ServegateError(f"--server-pid {args.server_pid!r}: expected a pid") from None
        if not _pid_exists(pid):
            raise ServegateError(f"--server-pid {pid}: no such process on this machine")
    return Choices(server_cpus, None, host.rstrip("/"), pid)


def _pid_exists(pid: int) -> bool:
    import psutil

    return pid > 0 and bool(psutil.pid_exists(pid))


def cmd_experiment(args: argparse.Namespace) -> int:
    from servegate.load import experiments, threads

    choices = check(args, threads.visible_cores())
    concurrency = ints(args.concurrency, "--concurrency", minimum=1)
    settings = experiments.Settings(
        loadtests=repo_root() / "loadtests",
        reports_dir=Path(args.reports_dir).resolve(),
        state_dir=Path(args.state_dir).resolve(),
        run_time_s=args.run_time,
        device=args.device,
        log=_log,
        backend=args.backend,
        server_cpus=choices.server_cpus,
        threads_per_worker=choices.threads_per_worker,
        image=args.image or None,
    )
    doc: dict[str, Any]
    if choices.host is not None:
        load = experiments.TargetLoad(
            model=args.model or experiments.CLASSIFIER,
            task=args.task,
            protocol=args.protocol,
            dialect=args.server,
        )
        doc = experiments.batching_target(
            settings,
            choices.host,
            load,
            concurrency,
            ints(args.instances, "--instances", minimum=1) or [1],
            server_pid=choices.server_pid,
        )
    elif args.kind == "batching":
        doc = experiments.batching(settings, args.server, grid(args.grid), concurrency)
    elif args.kind == "workers":
        counts = ints(args.workers, "--workers") or None
        doc = experiments.workers(settings, args.server, counts, args.users)
    else:
        doc = experiments.quantization(settings, args.server, users=args.users)
    for p in doc["points"]:
        verdict = "valid" if p.get("valid") else "INVALID: " + ", ".join(p["validity_flags"])
        _log(
            f"{experiments.point_label(p)}: {_num(p.get('requests_per_s'))} req/s, p99 "
            f"{_num(p.get('p99_ms'))} ms, threads/worker {p.get('threads_per_worker', '-')}, "
            f"server CPU {_num(p.get('server_cpu_percent'))} %, client CPU "
            f"{_num(p.get('client_cpu_percent'))} %: {verdict}"
        )
    _log(f"{doc['name']}: {len(doc['points'])} points; knee (valid points): {doc.get('knee')}")
    _log(f"written: {Path(args.reports_dir) / ('load-' + doc['name'])}.{{json,csv,md,png}}")
    return 0


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)
