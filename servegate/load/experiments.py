"""Experiments on the reference servers: batching, worker scaling, quantization.

Each configuration restarts the server, warms it, then runs a fixed-length headless Locust run
per point (a child process, so gevent never patches this one). Results: one
``load-experiment-<kind>-<server>.{json,csv,md,png}`` with every point, the knee and the
machine note.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servegate.errors import ServegateError
from servegate.load import plots, results

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


def run_locust(
    settings: Settings,
    host: str,
    user: str,
    locustfile: str,
    users: int,
    name: str,
    args: Sequence[str] = (),
) -> dict[str, Any]:
    """One headless Locust run; its load-run JSON (from a scratch reports folder)."""
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
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=settings.run_time_s + 120)
    path = scratch / f"load-{name}.json"
    if done.returncode not in (0, 1) or not path.exists():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise ServegateError(f"locust run {name} failed (exit {done.returncode}):\n{tail}")
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


def server_memory_mb(server: Any) -> float | None:
    """Resident memory of a local reference server and every process it forked."""
    try:
        import psutil

        proc = psutil.Process(server.proc.pid)
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20
    except Exception:  # noqa: BLE001 - memory is a nice-to-have figure
        return None


def _start(settings: Settings, runtime: str, options: Mapping[str, Any], models: tuple[str, ...]):
    from servegate.reference_servers.manager import start_reference

    return start_reference(
        runtime,
        state_dir=settings.state_dir,
        logs_dir=settings.reports_dir / "logs",
        device=settings.device,
        options=dict(options),
        models=models,
        ready_timeout=300,
        log=settings.log,
    )


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
    if server == "mlserver":
        for size, wait in grid or MLSERVER_BATCH_GRID:
            opts = {"max_batch_size": size, "max_batch_time_ms": wait, "parallel_workers": 1}
            running = _start(settings, "mlserver", opts, (CLASSIFIER,))
            try:
                host = running.target.http_url
                _warm(host, CLASSIFIER, _v2_body("mlserver"), settings.warmup_requests)
                for users in concurrency:
                    settings.log(f"batching: size={size} time={wait}ms users={users}")
                    doc = run_locust(
                        settings,
                        host,
                        "V2RestUser",
                        "v2_rest.py",
                        users,
                        f"batch-{size}-{wait:g}-{users}",
                        [
                            "--model",
                            CLASSIFIER,
                            "--task",
                            "text-classification",
                            "--instances",
                            "1",
                        ],
                    )
                    points.append(
                        point(doc, max_batch_size=size, max_batch_time_ms=wait, users=users)
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
        knees = {}
        for users in concurrency:
            for wait in sorted({t for _, t in grid or MLSERVER_BATCH_GRID if t}):
                row = sorted(
                    (p for p in points if p["users"] == users and p["max_batch_time_ms"] == wait),
                    key=lambda p: p["max_batch_size"],
                )
                knees[f"users={users},time={wait:g}ms"] = knee(
                    [p["max_batch_size"] for p in row], [p["requests_per_s"] for p in row]
                )
        x_key, series_key = "max_batch_size", "max_batch_time_ms"
    elif server == "kserve":
        running = _start(settings, "kserve", {}, (CLASSIFIER,))
        try:
            host = running.target.http_url
            _warm(host, CLASSIFIER, {"instances": ["warm up"]}, settings.warmup_requests, v1=True)
            for instances in KSERVE_INSTANCES:
                for users in concurrency:
                    settings.log(f"batching: instances={instances} users={users}")
                    doc = run_locust(
                        settings,
                        host,
                        "KServeV1User",
                        "kserve_v1.py",
                        users,
                        f"kserve-inst-{instances}-{users}",
                        [
                            "--model",
                            CLASSIFIER,
                            "--task",
                            "text-classification",
                            "--instances",
                            str(instances),
                        ],
                    )
                    p = point(doc, instances=instances, users=users)
                    p["instances_per_s"] = p["requests_per_s"] * instances
                    points.append(p)
        finally:
            running.stop()
        for p in points:
            base = next(b for b in points if b["instances"] == 1 and b["users"] == p["users"])
            p["speedup"] = (
                p["instances_per_s"] / base["instances_per_s"] if base["instances_per_s"] else None
            )
        knees = {
            f"users={u}": knee(
                [p["instances"] for p in points if p["users"] == u],
                [p["instances_per_s"] for p in points if p["users"] == u],
            )
            for u in concurrency
        }
        x_key, series_key = "instances", "users"
    else:
        raise ServegateError(f"no batching experiment for {server!r}")
    doc = _document("batching", server, points, knees, settings)
    _write(settings, doc, x_key, series_key)
    return doc


# ---- workers ---------------------------------------------------------------------------------

MLSERVER_WORKERS = (0, 1, 2, 4)
KSERVE_WORKERS = (1, 2, 4)


def workers(
    settings: Settings, server: str, counts: Sequence[int] | None = None, users: int = 16
) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    counts = counts or (MLSERVER_WORKERS if server == "mlserver" else KSERVE_WORKERS)
    key = "parallel_workers" if server == "mlserver" else "workers"
    for count in counts:
        running = _start(settings, server, {key: count}, (CLASSIFIER,))
        try:
            host = running.target.http_url
            dialect = "mlserver" if server == "mlserver" else "kserve"
            _warm(host, CLASSIFIER, _v2_body(dialect), settings.warmup_requests)
            settings.log(f"workers: {key}={count} users={users}")
            doc = run_locust(
                settings,
                host,
                "V2RestUser",
                "v2_rest.py",
                users,
                f"workers-{server}-{count}",
                ["--model", CLASSIFIER, "--task", "text-classification", "--dialect", dialect],
            )
            p = point(doc, workers=count, users=users)
            p["server_memory_mb"] = server_memory_mb(running)
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
    knees = {
        f"users={users}": knee(
            [p["workers"] for p in points if p["workers"] >= 1],
            [p["requests_per_s"] for p in points if p["workers"] >= 1],
        )
    }
    doc = _document("workers", server, points, knees, settings)
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
    for dtype in dtypes:
        running = _start(settings, server, {"dtype": dtype}, (CLASSIFIER, EMBEDDER))
        try:
            host = running.target.http_url
            labels = _outputs(host, server, CLASSIFIER, "text-classification")
            vectors = _outputs(host, server, EMBEDDER, "feature-extraction")
            _warm(host, CLASSIFIER, _v2_body(dialect), settings.warmup_requests)
            settings.log(f"quantization: dtype={dtype} users={users}")
            doc = run_locust(
                settings,
                host,
                "V2RestUser",
                "v2_rest.py",
                users,
                f"quant-{server}-{dtype}",
                ["--model", CLASSIFIER, "--task", "text-classification", "--dialect", dialect],
            )
        except ServegateError as exc:
            # a configuration that cannot serve is a result too, not the end of the experiment
            settings.log(f"quantization: dtype={dtype} failed: {str(exc)[:300]}")
            points.append(
                {
                    "dtype": dtype,
                    "users": users,
                    "failed": " ".join(str(exc).split())[:400],
                    "requests_per_s": None,
                    "valid": False,
                    "validity_flags": [],
                }
            )
            continue
        finally:
            running.stop()
        p = point(doc, dtype=dtype, users=users)
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


def _document(
    kind: str, server: str, points: list[dict[str, Any]], knees: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    invalid = [p for p in points if not p["valid"]]
    return {
        "schema_version": results.SCHEMA_VERSION,
        "kind": "experiment",
        "experiment": kind,
        "name": f"experiment-{kind}-{server}",
        "server": server,
        "device": settings.device,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_time_s_per_point": settings.run_time_s,
        "machine": results.machine(),
        "points": points,
        "knee": knees,
        "invalid_points": len(invalid),
    }


def _write(settings: Settings, doc: dict[str, Any], x_key: str, series_key: str) -> None:
    paths = results.paths_for(settings.reports_dir, doc["name"])
    results.write_json(paths["json"], doc)
    results.write_csv(
        paths["csv"],
        [
            {k: v for k, v in p.items() if k != "validity_flags"}
            | {"validity_flags": ";".join(p["validity_flags"])}
            for p in doc["points"]
        ],
    )
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
    if doc["server"] == "kserve" and doc["experiment"] == "batching":
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
        keys += [k for k in p if k not in ("validity_flags", "requests") and k not in keys]
    rows = [
        [p.get(k) if not isinstance(p.get(k), float) else round(p[k], 3) for k in keys]
        for p in points
    ]
    out = [
        f"## Experiment: {doc['experiment']} on {doc['server']} ({doc['device']})",
        "",
        f"_{doc['machine']['note']}; {doc['run_time_s_per_point']} s per point._",
        "",
    ]
    if doc.get("knee"):
        out.append(
            "Knee (the step after which throughput grows by less than "
            f"{100 * KNEE_GAIN:.0f} %): "
            + "; ".join(f"{k}: **{v}**" for k, v in doc["knee"].items())
        )
        out.append("")
    if doc["invalid_points"]:
        out.append(
            f"**{doc['invalid_points']} point(s) INVALID** (client-bound: see "
            "`valid`/`validity_flags`); read them as limits of the load generator."
        )
        out.append("")
    out.append(results.markdown_table(keys, rows))
    for what, why in (doc.get("left_out") or {}).items():
        out.append(f"\n- {what} left out: {why}")
    return "\n".join(out) + "\n"
