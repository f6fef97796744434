"""Experiments: batching, worker scaling, quantization.

On a reference server, each configuration restarts the server (local process or container),
warms it, then runs a fixed-length headless Locust run per point (a child process, so gevent
never patches this one). Each worker process gets a thread count that fits the server's cores
(servegate.load.threads); each point records the server's and the client's CPU and the threads
the server really ran, and is flagged when its figure measures contention rather than the
configuration (servegate.load.sweep_point). Against a server servegate did not start
(:func:`batching_target`), batching is what the client varies: rows per request and concurrent
users.

Results: one ``load-experiment-<kind>-<server>.{json,csv,md,png}`` with every point, the knee
over the valid points, what the knee and each flag mean, and the machine note.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servegate.errors import ServegateError
from servegate.load import plots, results, sweep_point, threads

#: the model each experiment loads, per server (tiny fixture models)
CLASSIFIER = "tiny-text-classification"
EMBEDDER = "tiny-feature-extraction"

KNEE_GAIN = 0.10  # a step that adds less than 10 % throughput does not pay


@dataclass
class Settings:
    """Where things are and how long each point runs."""

    loadtests: Path
    reports_dir: Path
    state_dir: Path
    run_time_s: int = 8
    warmup_requests: int = 5
    device: str = "cpu"
    log: Callable[[str], None] = print
    extra_locust_args: Sequence[str] = field(default_factory=tuple)
    #: where the reference servers run: "local" processes or "testcontainers"
    backend: str = "local"
    #: cores given to the server; None: every core this machine gives. With testcontainers
    #: also each container's CPU limit (Docker's --cpus)
    server_cpus: float | None = None
    #: threads per worker process: None fits them to the cores, 0 leaves the server's default
    threads_per_worker: int | None = None
    #: testcontainers: the image to run (None: the backend's default)
    image: str | None = None


def run_locust(
    settings: Settings,
    host: str,
    user: str,
    locustfile: str,
    users: int,
    name: str,
    args: Sequence[str] = (),
    on_start: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """One headless Locust run; its load-run JSON (from a scratch reports folder).

    ``on_start`` gets the Locust process's pid as soon as it exists (for CPU metering)."""
    scratch = settings.reports_dir / "experiment-runs"
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(settings.loadtests / locustfile),
        user,
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{settings.run_time_s}s",
        "--host",
        host,
        "--report-name",
        name,
        "--reports-dir",
        str(scratch),
        "--only-summary",
        "--stop-timeout",
        "10",
        *args,
        *settings.extra_locust_args,
    ]
    path = scratch / f"load-{name}.json"
    path.unlink(missing_ok=True)  # a previous run's file must not stand in for this one's
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if on_start is not None:
        on_start(proc.pid)
    try:
        out, err = proc.communicate(timeout=settings.run_time_s + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise ServegateError(
            f"locust run {name} did not end within {settings.run_time_s + 120} s"
        ) from None
    if proc.returncode not in (0, 1) or not path.exists():
        tail = "\n".join((out + err).splitlines()[-15:])
        raise ServegateError(f"locust run {name} failed (exit {proc.returncode}):\n{tail}")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def point(document: Mapping[str, Any], **config: Any) -> dict[str, Any]:
    """The figures an experiment keeps of one run."""
    t = document["totals"]
    return {
        **config,
        "requests": t["requests"],
        "error_rate": t["error_rate"],
        "requests_per_s": t["requests_per_s"],
        "p50_ms": t["latency_ms"]["p50"],
        "p99_ms": t["latency_ms"]["p99"],
        "valid": document["validity"]["valid"],
        "validity_flags": [f["name"] for f in document["validity"]["flags"]],
    }


def knee(xs: Sequence[Any], ys: Sequence[float | None], gain: float = KNEE_GAIN) -> Any:
    """The first x after which one more step adds less than ``gain`` (relative) to y; the best
    x when throughput keeps rising; None without data."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and y > 0]
    if not pairs:
        return None
    for (x, y), (_, y_next) in zip(pairs, pairs[1:], strict=False):
        if y_next < y * (1 + gain):
            return x
    return pairs[-1][0]


def knees(
    rows: Sequence[Mapping[str, Any]], x_key: str, y_key: str = "requests_per_s"
) -> tuple[Any, Any]:
    """(knee over the valid points, knee over every point) of one series of points."""
    ordered = sorted(rows, key=lambda p: p[x_key])
    valid = [p for p in ordered if p.get("valid")]
    every = knee([p[x_key] for p in ordered], [p.get(y_key) for p in ordered])
    return knee([p[x_key] for p in valid], [p.get(y_key) for p in valid]), every


def server_pid(server: Any) -> int | None:
    """The host pid at the root of a running reference server's processes, where known."""
    proc = getattr(server, "proc", None)
    if proc is not None:
        return int(proc.pid)
    host_pid = getattr(server, "host_pid", None)
    if callable(host_pid):
        pid = host_pid()
        return int(pid) if pid else None
    return None


def server_memory_mb(pid: int | None) -> float | None:
    """Resident memory of a server's process and every process it forked."""
    if pid is None:
        return None
    try:
        import psutil

        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20
    except Exception:  # noqa: BLE001 - memory is a nice-to-have figure
        return None


def plan_for(settings: Settings, server: str, workers: int) -> threads.ThreadPlan:
    """The threads each of ``server``'s inference processes gets with ``workers``."""
    cores = threads.visible_cores()
    return threads.plan_threads(
        threads.planned_processes(server, workers),
        settings.server_cpus or cores,
        visible_cores=cores,
        override=settings.threads_per_worker,
    )


def _start(
    settings: Settings,
    runtime: str,
    options: Mapping[str, Any],
    models: tuple[str, ...],
    plan: threads.ThreadPlan,
) -> Any:
    from servegate.reference_servers.manager import start_reference

    opts = dict(options)
    if settings.backend == "testcontainers":
        if settings.server_cpus:
            opts["cpus"] = settings.server_cpus
        if settings.image:
            opts["image"] = settings.image
    settings.log(f"threads: {plan.describe()} ({plan.source})")
    return start_reference(
        runtime,
        state_dir=settings.state_dir,
        logs_dir=settings.reports_dir / "logs",
        device=settings.device,
        backend=settings.backend,
        options=opts,
        models=models,
        env=plan.env(),
        ready_timeout=300,
        log=settings.log,
    )


def measured_point(
    settings: Settings,
    *,
    server_pid: int | None,
    plan: threads.ThreadPlan | None,
    host: str,
    user: str,
    locustfile: str,
    users: int,
    name: str,
    args: Sequence[str],
    **config: Any,
) -> dict[str, Any]:
    """One Locust run with the server's and the client's CPU and the server's threads
    measured; the point with every validity reason."""
    document, measure = sweep_point.measure(
        lambda on_start: run_locust(
            settings, host, user, locustfile, users, name, args, on_start=on_start
        ),
        server_pid=server_pid,
        plan=plan,
        cores=os.cpu_count() or 1,
        asked_s=settings.run_time_s,
    )
    p = point(document, **config, users=users) | measure.record()
    valid, names, reasons = sweep_point.point_validity(document, measure)
    p.update(valid=valid, validity_flags=names, validity_reasons=reasons)
    p["server_processes"] = [
        {
            "pid": proc.pid,
            "command": proc.name,
            "omp_num_threads": proc.omp_threads,
            "threads": proc.threads,
            "busy_threads": proc.busy_threads,
            "compute_library": proc.computes,
            "cpu_s": round(proc.cpu_s, 2),
        }
        for proc in measure.processes
    ]
    return p


def _warm(host: str, model: str, body: dict[str, Any], n: int, v1: bool = False) -> None:
    from servegate.protocols.v1 import V1Client
    from servegate.protocols.v2_rest import V2RestClient

    client: Any = V1Client(host) if v1 else V2RestClient(host)
    try:
        for _ in range(n):
            reply = client.predict(model, body) if v1 else client.infer(model, body)
            if reply.status != 200:
                raise ServegateError(f"warm-up request failed: {reply.describe()}")
    finally:
        client.close()


def _v2_body(dialect: str, instances: int = 1) -> dict[str, Any]:
    from servegate.load.scenario import ScenarioOptions, v2_request

    return v2_request(
        ScenarioOptions(task="text-classification", dialect=dialect, instances=instances)
    )


# ---- batching --------------------------------------------------------------------------------

#: (max_batch_size, max_batch_time_ms) run by default. MLServer batches adaptively only when
#: both are set (size > 1, time > 0), so (4..16, 0) behave as (32, 0), which stands for them.
MLSERVER_BATCH_GRID = [(1, 0), (32, 0)] + [(s, t) for s in (4, 8, 16, 32) for t in (10, 50)]
CONCURRENCY = (1, 8, 32)
KSERVE_INSTANCES = (1, 8, 32)


def batching(
    settings: Settings,
    server: str,
    grid: Sequence[tuple[int, float]] | None = None,
    concurrency: Sequence[int] = CONCURRENCY,
) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    # batching runs one worker: the whole core budget is its threads
    plan = plan_for(settings, server, 1)
    if server == "mlserver":
        for size, wait in grid or MLSERVER_BATCH_GRID:
            opts = {"max_batch_size": size, "max_batch_time_ms": wait, "parallel_workers": 1}
            running = _start(settings, "mlserver", opts, (CLASSIFIER,), plan)
            try:
                host = running.target.http_url
                _warm(host, CLASSIFIER, _v2_body("mlserver"), settings.warmup_requests)
                for users in concurrency:
                    settings.log(f"batching: size={size} time={wait}ms users={users}")
                    points.append(
                        measured_point(
                            settings,
                            server_pid=server_pid(running),
                            plan=plan,
                            host=host,
                            user="V2RestUser",
                            locustfile="v2_rest.py",
                            users=users,
                            name=f"batch-{size}-{wait:g}-{users}",
                            args=[
                                "--model",
                                CLASSIFIER,
                                "--task",
                                "text-classification",
                                "--instances",
                                "1",
                            ],
                            max_batch_size=size,
                            max_batch_time_ms=wait,
                        )
                    )
            finally:
                running.stop()
        for p in points:
            base = next(
                (b for b in points if b["max_batch_size"] == 1 and b["users"] == p["users"]), None
            )
            p["speedup"] = (
                p["requests_per_s"] / base["requests_per_s"]
                if base and base["requests_per_s"]
                else None
            )
        found: dict[str, tuple[Any, Any]] = {}
        for users in concurrency:
            for wait in sorted({t for _, t in grid or MLSERVER_BATCH_GRID if t}):
                row = [p for p in points if p["users"] == users and p["max_batch_time_ms"] == wait]
                found[f"users={users},time={wait:g}ms"] = knees(row, "max_batch_size")
        x_key, series_key = "max_batch_size", "max_batch_time_ms"
    elif server == "kserve":
        running = _start(settings, "kserve", {}, (CLASSIFIER,), plan)
        try:
            host = running.target.http_url
            _warm(host, CLASSIFIER, {"instances": ["warm up"]}, settings.warmup_requests, v1=True)
            points = _client_sweep(
                settings,
                server_pid(running),
                plan,
                host,
                TargetLoad(
                    model=CLASSIFIER, task="text-classification", protocol="v1", dialect="kserve"
                ),
                KSERVE_INSTANCES,
                concurrency,
                "kserve",
            )
        finally:
            running.stop()
        found = {
            f"users={u}": knees(
                [p for p in points if p["users"] == u], "instances", "instances_per_s"
            )
            for u in concurrency
        }
        x_key, series_key = "instances", "users"
    else:
        raise ServegateError(f"no batching experiment for {server!r}")
    doc = _document("batching", server, points, found, settings)
    _write(settings, doc, x_key, series_key)
    return doc


# ---- any target ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetLoad:
    """What to send to a server servegate did not start."""

    model: str = CLASSIFIER
    task: str = "text-classification"
    #: "v2" (V2 REST infer) or "v1" (KServe V1 predict)
    protocol: str = "v2"
    #: V2 dialect: how inputs map onto the pipeline ("mlserver", "kserve")
    dialect: str = "mlserver"

    def locust(self) -> tuple[str, str]:
        """(user class, locustfile)."""
        return (
            ("KServeV1User", "kserve_v1.py")
            if self.protocol == "v1"
            else (
                "V2RestUser",
                "v2_rest.py",
            )
        )

    def args(self, instances: int) -> list[str]:
        out = ["--model", self.model, "--instances", str(instances)]
        # no task: the bare tensor of the null endpoint (an empty option confuses Locust's parser)
        out += ["--task", self.task] if self.task else []
        return out + (["--dialect", self.dialect] if self.protocol == "v2" else [])


def _client_sweep(
    settings: Settings,
    pid: int | None,
    plan: threads.ThreadPlan | None,
    host: str,
    load: TargetLoad,
    instances: Sequence[int],
    concurrency: Sequence[int],
    label: str,
) -> list[dict[str, Any]]:
    """Rows per request x concurrent users against one running server."""
    user, locustfile = load.locust()
    points = []
    for rows in instances:
        for users in concurrency:
            settings.log(f"batching: instances={rows} users={users}")
            p = measured_point(
                settings,
                server_pid=pid,
                plan=plan,
                host=host,
                user=user,
                locustfile=locustfile,
                users=users,
                name=f"{label}-inst-{rows}-{users}",
                args=load.args(rows),
                instances=rows,
            )
            p["instances_per_s"] = p["requests_per_s"] * rows
            points.append(p)
    for p in points:
        base = next(
            (b for b in points if b["instances"] == min(instances) and b["users"] == p["users"]),
            None,
        )
        p["speedup"] = (
            p["instances_per_s"] / base["instances_per_s"]
            if base and base["instances_per_s"]
            else None
        )
    return points


def batching_target(
    settings: Settings,
    host: str,
    load: TargetLoad,
    concurrency: Sequence[int] = CONCURRENCY,
    instances: Sequence[int] = (1,),
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Batching as the client drives it, against any server: rows per request x concurrent
    users. The server's own batcher is whatever it was started with; ``server_pid`` (a
    process on this machine) adds its CPU and threads to each point."""
    _warm_target(host, load, settings.warmup_requests)
    label = target_label(host)
    points = _client_sweep(settings, server_pid, None, host, load, instances, concurrency, label)
    found = {
        f"instances={n}": knees(
            [p for p in points if p["instances"] == n], "users", "instances_per_s"
        )
        for n in instances
    }
    doc = _document("batching", label, points, found, settings)
    doc["target"] = {
        "host": host,
        "model": load.model,
        "task": load.task,
        "protocol": load.protocol,
        "server_pid": server_pid,
    }
    _write(settings, doc, "users", "instances")
    return doc


def target_label(host: str) -> str:
    """A file-name-safe name for a target URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(host)
    raw = parts.netloc or host
    # no dots: the result files' names take everything after the last dot as the suffix
    return "".join(c if c.isalnum() or c == "-" else "-" for c in raw).strip("-") or "target"


def _warm_target(host: str, load: TargetLoad, n: int) -> None:
    from servegate.load.scenario import ScenarioOptions, v1_request, v2_request

    opts = ScenarioOptions(model=load.model, task=load.task, dialect=load.dialect)
    if load.protocol == "v1":
        _warm(host, load.model, v1_request(opts), n, v1=True)
    else:
        _warm(host, load.model, v2_request(opts), n)


# ---- workers ---------------------------------------------------------------------------------

MLSERVER_WORKERS = (0, 1, 2, 4)
KSERVE_WORKERS = (1, 2, 4)


def workers(
    settings: Settings, server: str, counts: Sequence[int] | None = None, users: int = 16
) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    counts = counts or (MLSERVER_WORKERS if server == "mlserver" else KSERVE_WORKERS)
    key = "parallel_workers" if server == "mlserver" else "workers"
    dialect = "mlserver" if server == "mlserver" else "kserve"
    for count in counts:
        plan = plan_for(settings, server, count)
        running = _start(settings, server, {key: count}, (CLASSIFIER,), plan)
        try:
            host = running.target.http_url
            _warm(host, CLASSIFIER, _v2_body(dialect), settings.warmup_requests)
            settings.log(f"workers: {key}={count} users={users}")
            pid = server_pid(running)
            p = measured_point(
                settings,
                server_pid=pid,
                plan=plan,
                host=host,
                user="V2RestUser",
                locustfile="v2_rest.py",
                users=users,
                name=f"workers-{server}-{count}",
                args=["--model", CLASSIFIER, "--task", "text-classification", "--dialect", dialect],
                workers=count,
            )
            p["server_memory_mb"] = server_memory_mb(pid)
            points.append(p)
        finally:
            running.stop()
    base = next((p for p in points if p["workers"] == 1), points[0])
    for p in points:
        n = max(p["workers"], 1)
        p["speedup"] = (
            p["requests_per_s"] / base["requests_per_s"] if base["requests_per_s"] else None
        )
        p["efficiency_per_worker"] = p["speedup"] / n if p["speedup"] is not None else None
        mem = p.get("server_memory_mb")
        p["memory_per_worker_mb"] = mem / n if mem else None
    found = {f"users={users}": knees([p for p in points if p["workers"] >= 1], "workers")}
    doc = _document("workers", server, points, found, settings)
    _write(settings, doc, "workers", "users")
    return doc


# ---- quantization ----------------------------------------------------------------------------

DTYPES = ("float32", "bfloat16")
AGREEMENT_TEXTS = (
    "I really enjoyed this film, the acting was wonderful.",
    "This movie was a complete waste of time.",
    "The service was slow but the food was excellent.",
    "Absolutely terrible, I want my money back.",
    "An average experience, nothing special.",
    "The quick brown fox jumps over the lazy dog.",
    "Servers answer inference requests over HTTP and gRPC.",
    "What a fantastic day, everything went great!",
)


def _outputs(host: str, server: str, model: str, task: str) -> list[Any]:
    from servegate.protocols.v2_rest import V2RestClient
    from servegate.tasks.hf_v2_kwargs import decode_output

    client = V2RestClient(host)
    out = []
    try:
        for text in AGREEMENT_TEXTS:
            if server == "mlserver":
                body = {
                    "inputs": [
                        {
                            "name": "args",
                            "datatype": "BYTES",
                            "shape": [1],
                            "data": [text],
                            "parameters": {"content_type": "str"},
                        }
                    ]
                }
            else:
                body = {
                    "inputs": [
                        {"name": "input-0", "datatype": "BYTES", "shape": [1], "data": [text]}
                    ]
                }
            reply = client.infer(model, body)
            if reply.status != 200:
                raise ServegateError(f"agreement request failed: {reply.describe()}")
            output = reply.json()["outputs"][0]
            out.append(decode_output(output) if server == "mlserver" else output["data"])
    finally:
        client.close()
    return out


def _top1(result: Any) -> Any:
    """The top label (MLServer: {label, score} items) or class id (KServe: INT64)."""
    while isinstance(result, list) and len(result) == 1 and isinstance(result[0], list):
        result = result[0]
    if isinstance(result, list) and result and isinstance(result[0], dict):
        return max(result, key=lambda r: r.get("score", 0)).get("label")
    return result[0] if isinstance(result, list) and result else result


def _vector(result: Any) -> list[float]:
    """A sentence vector: KServe's as it is; MLServer's per-token vectors mean-pooled."""
    while isinstance(result, list) and len(result) == 1 and isinstance(result[0], list):
        result = result[0]
    if result and isinstance(result[0], list):
        n = len(result)
        return [sum(col) / n for col in zip(*result, strict=True)]
    return [float(v) for v in result]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else math.nan


def quantization(
    settings: Settings, server: str, dtypes: Sequence[str] = DTYPES, users: int = 8
) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    reference: dict[str, list[Any]] = {}
    dialect = "mlserver" if server == "mlserver" else "kserve"
    # the server's default worker count: one inference process
    plan = plan_for(settings, server, 1)
    for dtype in dtypes:
        running = None
        try:
            # a configuration that cannot start is a result too, not the end of the experiment
            running = _start(settings, server, {"dtype": dtype}, (CLASSIFIER, EMBEDDER), plan)
            host = running.target.http_url
            labels = _outputs(host, server, CLASSIFIER, "text-classification")
            vectors = _outputs(host, server, EMBEDDER, "feature-extraction")
            _warm(host, CLASSIFIER, _v2_body(dialect), settings.warmup_requests)
            settings.log(f"quantization: dtype={dtype} users={users}")
            p = measured_point(
                settings,
                server_pid=server_pid(running),
                plan=plan,
                host=host,
                user="V2RestUser",
                locustfile="v2_rest.py",
                users=users,
                name=f"quant-{server}-{dtype}",
                args=["--model", CLASSIFIER, "--task", "text-classification", "--dialect", dialect],
                dtype=dtype,
            )
        except ServegateError as exc:
            settings.log(f"quantization: dtype={dtype} failed: {str(exc)[:300]}")
            points.append(
                {
                    "dtype": dtype,
                    "users": users,
                    "failed": " ".join(str(exc).split())[:400],
                    "requests_per_s": None,
                    "valid": False,
                    "validity_flags": ["failed"],
                    "validity_reasons": ["failed: the configuration did not serve"],
                }
            )
            continue
        finally:
            if running is not None:
                running.stop()
        if not reference:
            reference = {"labels": labels, "vectors": vectors}
        ref_top = [_top1(r) for r in reference["labels"]]
        top = [_top1(r) for r in labels]
        p["top1_agreement"] = sum(a == b for a, b in zip(ref_top, top, strict=True)) / len(top)
        sims = [
            cosine(_vector(a), _vector(b))
            for a, b in zip(reference["vectors"], vectors, strict=True)
        ]
        p["embedding_cosine_min"] = min(sims)
        p["embedding_cosine_mean"] = sum(sims) / len(sims)
        points.append(p)
    base = points[0]["requests_per_s"]
    for p in points:
        p["speedup"] = p["requests_per_s"] / base if base and p["requests_per_s"] else None
    doc = _document("quantization", server, points, {}, settings)
    doc["left_out"] = {
        "float16": "CPU only here: float16 matmuls on CPU are emulated; run with --device cuda",
        "int8": "neither reference runtime offers it: mlserver-huggingface has no quantization "
        "setting and its optimum (ONNX) path fails to load with the pinned env; KServe's HF "
        "backend quantizes only through dtype (int8 is its vLLM backend's)",
    }
    _write(settings, doc, "dtype", "users")
    return doc


# ---- files -----------------------------------------------------------------------------------

#: what the knee of each experiment says, for the result pages
KNEE_MEANING = {
    "workers": "the worker count after which one more worker adds less than "
    f"{100 * KNEE_GAIN:.0f} % throughput: beyond it a worker costs memory and latency for no "
    "rate. It describes the server's scaling only over valid points, where workers x threads "
    "fit the server's cores; on oversubscribed points the extra workers share the same cores, "
    "and a knee there marks where the machine ran out of cores, not how the server scales.",
    "batching": "the step (max_batch_size on a reference server, concurrent users or rows per "
    f"request against a target) after which the next one adds less than {100 * KNEE_GAIN:.0f} "
    "% throughput: past it, more batching or more concurrency buys latency, not rate. Against "
    "a target, the concurrency knee is where the server (or this machine, when the point is "
    "flagged cpu_saturated) saturates.",
}
CPU_NOTE = (
    "CPU in % of one core over the load run: server = every process of the server's tree "
    "(read from /proc), client = the Locust process, other = the rest of the machine meanwhile"
)
#: point fields the tables leave out (kept in the JSON)
DETAIL_FIELDS = ("validity_flags", "validity_reasons", "server_processes", "requests")


def _document(
    kind: str,
    server: str,
    points: list[dict[str, Any]],
    found: Mapping[str, tuple[Any, Any]],
    settings: Settings,
) -> dict[str, Any]:
    invalid = [p for p in points if not p["valid"]]
    by_flag: dict[str, list[str]] = {}
    for p in invalid:
        for name in p.get("validity_flags") or ["unknown"]:
            by_flag.setdefault(name, []).append(point_label(p))
    notes = {"cpu": CPU_NOTE}
    if kind in KNEE_MEANING:
        notes["knee"] = KNEE_MEANING[kind]
    # every reason, raised or not: a reader should know what a flagged point would have meant
    notes |= {f"flag {name}": text for name, text in sweep_point.REASONS.items()}
    return {
        "schema_version": results.SCHEMA_VERSION,
        "kind": "experiment",
        "experiment": kind,
        "name": f"experiment-{kind}-{server}",
        "server": server,
        "device": settings.device,
        "backend": settings.backend,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_time_s_per_point": settings.run_time_s,
        "machine": results.machine(),
        "threads": {
            "server_cpus": settings.server_cpus or threads.visible_cores(),
            "threads_per_worker": (
                "fit to the cores"
                if settings.threads_per_worker is None
                else "server default"
                if settings.threads_per_worker == 0
                else settings.threads_per_worker
            ),
            "set_through": ", ".join(threads.THREAD_ENV_VARS),
        },
        "points": points,
        # over the valid points only: a flagged point does not measure what its row names
        "knee": {k: v[0] for k, v in found.items()},
        "knee_all_points": {k: v[1] for k, v in found.items()},
        "invalid_points": len(invalid),
        "validity": {
            "valid": not invalid,
            "flags": [
                {"name": name, "detail": f"points {', '.join(labels)}"}
                for name, labels in by_flag.items()
            ],
        },
        "notes": notes,
    }


def point_label(p: Mapping[str, Any]) -> str:
    """A point's configuration, e.g. ``workers=2 users=16``."""
    keys = [k for k in p if k not in ("requests",)]
    config = keys[: keys.index("error_rate")] if "error_rate" in keys else keys[:2]
    return " ".join(f"{k}={p[k]:g}" if isinstance(p[k], float) else f"{k}={p[k]}" for k in config)


def _csv_row(p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: ";".join(map(str, v)) if isinstance(v, list) else v
        for k, v in p.items()
        if k != "server_processes"
    }


def _write(settings: Settings, doc: dict[str, Any], x_key: str, series_key: str) -> None:
    paths = results.paths_for(settings.reports_dir, doc["name"])
    results.write_json(paths["json"], doc)
    results.write_csv(paths["csv"], [_csv_row(p) for p in doc["points"]])
    paths["md"].write_text(experiment_markdown(doc), encoding="utf-8")
    series: dict[str, dict[str, tuple[list[Any], list[float | None]]]] = {}
    for metric in ("requests_per_s", "p99_ms"):
        series[metric] = {}
        groups: dict[Any, list[dict[str, Any]]] = {}
        for p in doc["points"]:
            groups.setdefault(p.get(series_key), []).append(p)
        for group, rows in sorted(groups.items(), key=lambda kv: str(kv[0])):
            label = f"{series_key}={group}" if group is not None else metric
            ys_key = (
                "instances_per_s"
                if metric == "requests_per_s" and "instances_per_s" in rows[0]
                else metric
            )
            series[metric][label] = ([r[x_key] for r in rows], [r.get(ys_key) for r in rows])
    if doc["experiment"] == "batching" and doc["server"] == "mlserver":
        # one line per (time, users) reads better than one per time only
        series = {m: {} for m in ("requests_per_s", "p99_ms")}
        for p in doc["points"]:
            label = f"t={p['max_batch_time_ms']:g}ms u={p['users']}"
            for m in series:
                xs, ys = series[m].setdefault(label, ([], []))
                xs.append(p["max_batch_size"])
                ys.append(p.get(m))
    y_label = {"requests_per_s": "throughput (req/s)", "p99_ms": "p99 latency (ms)"}
    if any("instances_per_s" in p for p in doc["points"]):
        y_label["requests_per_s"] = "instances/s"
    plots.series_plot(
        paths["png"],
        f"{doc['name']} ({doc['device']})",
        x_key,
        [(y_label[m], s) for m, s in series.items()],
        note=doc["machine"]["note"],
    )


def experiment_markdown(doc: Mapping[str, Any]) -> str:
    points = doc["points"]
    keys: list[str] = []
    for p in points:
        keys += [k for k in p if k not in DETAIL_FIELDS and k not in keys]
    rows = [
        [p.get(k) if not isinstance(p.get(k), float) else round(p[k], 3) for k in keys]
        for p in points
    ]
    th = doc.get("threads") or {}
    out = [
        f"## Experiment: {doc['experiment']} on {doc['server']} ({doc['device']}, "
        f"{doc.get('backend', 'local')})",
        "",
        f"_{doc['machine']['note']}; {doc['run_time_s_per_point']} s per point; "
        f"{th.get('server_cpus', '?')} core(s) for the server, threads per worker: "
        f"{th.get('threads_per_worker', '?')} (through {th.get('set_through', '?')})._",
        "",
    ]
    if doc.get("knee"):
        every = doc.get("knee_all_points") or {}
        parts = []
        for k, v in doc["knee"].items():
            text = f"{k}: **{v}**" if v is not None else f"{k}: **none** (too few valid points)"
            if every.get(k) != v:
                text += f" (over every point, flagged ones included: {every.get(k)})"
            parts.append(text)
        out.append(
            "Knee over the valid points (the step after which throughput grows by less than "
            f"{100 * KNEE_GAIN:.0f} %): " + "; ".join(parts)
        )
        out.append("")
    notes = doc.get("notes") or {}
    if notes.get("knee"):
        out += [f"What the knee means: {notes['knee']}", ""]
    if doc["invalid_points"]:
        out.append(
            f"**{doc['invalid_points']} point(s) INVALID**: their figures measure the reason "
            "given, not the configuration their row names."
        )
        out.append("")
    out.append(results.markdown_table(keys, rows))
    flagged = [p for p in points if p.get("validity_reasons")]
    if flagged:
        out += ["", "Validity reasons:"]
        out += [f"- {point_label(p)}: " + "; ".join(p["validity_reasons"]) for p in flagged]
    explained = {k: v for k, v in notes.items() if k.startswith("flag ")}
    if explained:
        out += ["", "What a point flagged invalid measures:"]
        out += [f"- `{k.removeprefix('flag ')}`: {v}" for k, v in explained.items()]
    out += ["", f"_{notes.get('cpu', CPU_NOTE)}._"]
    for what, why in (doc.get("left_out") or {}).items():
        out.append(f"\n- {what} left out: {why}")
    return "\n".join(out) + "\n"
