"""Benchmarks of the load generator itself, against the calibration server
(loadtests/calibration/server.py), whose behaviour is known:

- fidelity: measured p50 TTFT and ITL against the configured ones, at several user counts;
- capacity: Locust's request rate against wrk's on the null V2 endpoint, with the client
  pinned to the same core in both cases (and the server to the other one where there is one).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from servegate.errors import ServegateError
from servegate.load import plots, results
from servegate.load.experiments import Settings, run_locust
from servegate.load.metrics import ratio_error
from servegate.reference_servers.local import free_port, small_server

FIDELITY_GOAL = 0.05
CAPACITY_GOAL = 0.5


def _cores() -> tuple[list[str], list[str]]:
    """taskset prefixes for (server, client): different cores where there are two."""
    if not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return [], []
    return ["taskset", "-c", "0"], ["taskset", "-c", "1"]


@contextmanager
def calibration_server(
    script: Path, args: Sequence[str] = (), log_dir: Path | None = None
) -> Iterator[str]:
    """Run the calibration server on a free port (pinned to core 0) and yield its URL."""
    port = free_port()
    server_cpu, _ = _cores()
    log_dir = log_dir or Path(tempfile.gettempdir())
    with small_server(
        [*server_cpu, sys.executable, str(script), "--port", str(port), *args],
        port,
        name=f"calibration server {script.name}",
        log_path=log_dir / f"calibration-{port}.log",
        timeout=15,
    ) as url:
        yield url


def fidelity(
    settings: Settings,
    script: Path,
    ttft_ms: float = 100.0,
    itl_ms: float = 20.0,
    tokens: int = 32,
    users: Sequence[int] = (1, 8, 32),
) -> dict[str, Any]:
    """p50 TTFT and ITL measured by the streaming scenario vs the server's configured values."""
    points = []
    with calibration_server(
        script, ["--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), "--tokens", str(tokens)]
    ) as url:
        for n in users:
            settings.log(f"fidelity: {n} users")
            doc = run_locust(
                settings,
                url,
                "OpenAIStreamUser",
                "openai_stream.py",
                n,
                f"fidelity-{n}",
                ["--model", "calibrated", "--tags", "completions", "--max-tokens", str(tokens)],
            )
            (stream,) = doc["streaming"].values()
            ttft, itl = stream["ttft_ms"]["p50"], stream["itl_ms"]["p50"]
            points.append(
                {
                    "users": n,
                    "configured_ttft_ms": ttft_ms,
                    "measured_p50_ttft_ms": ttft,
                    "ttft_error": ratio_error(ttft, ttft_ms),
                    "configured_itl_ms": itl_ms,
                    "measured_p50_itl_ms": itl,
                    "itl_error": ratio_error(itl, itl_ms),
                    "measured_p99_itl_ms": stream["itl_ms"]["p99"],
                    "streams": stream["ttft_ms"]["count"],
                    "valid": doc["validity"]["valid"],
                    "validity_flags": [f["name"] for f in doc["validity"]["flags"]],
                }
            )
    within = all(
        abs(p["ttft_error"]) <= FIDELITY_GOAL and abs(p["itl_error"]) <= FIDELITY_GOAL
        for p in points
    )
    doc = _document(
        "fidelity", points, settings, goal=f"|error| <= {FIDELITY_GOAL:.0%}", met=within
    )
    _write(
        settings,
        doc,
        [
            (
                "relative error of p50",
                {
                    "TTFT": ([p["users"] for p in points], [p["ttft_error"] for p in points]),
                    "ITL": ([p["users"] for p in points], [p["itl_error"] for p in points]),
                },
            ),
        ],
        "users",
    )
    return doc


WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '{"inputs":[{"name":"input-0","datatype":"FP32","shape":[1],"data":[0.0]}]}'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk_rate(url: str, connections: int, seconds: int) -> float:
    """Requests/s wrk reaches on the null V2 infer endpoint, one thread, pinned to core 1."""
    if not shutil.which("wrk"):
        raise ServegateError("wrk is not installed (Debian: apt-get install -y wrk)")
    _, client_cpu = _cores()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_SCRIPT)
    try:
        out = subprocess.run(
            [
                *client_cpu,
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "-s",
                fh.name,
                f"{url}/v2/models/null/infer",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
    finally:
        os.unlink(fh.name)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise ServegateError(f"could not read wrk's output:\n{out}")
    return float(match.group(1))


def capacity(settings: Settings, script: Path, users: Sequence[int] = (8, 32)) -> dict[str, Any]:
    """Locust's rate (V2RestUser, the full protocol client) over wrk's, same core, same
    endpoint, same connection count."""
    points = []
    _, client_cpu = _cores()
    with calibration_server(script) as url:
        for n in users:
            settings.log(f"capacity: wrk, {n} connections")
            wrk = wrk_rate(url, n, settings.run_time_s)
            settings.log(f"capacity: locust, {n} users")
            pinned = Settings(**{**settings.__dict__, "extra_locust_args": ()})
            doc = _pinned_locust(pinned, client_cpu, url, n)
            rate = doc["totals"]["requests_per_s"]
            points.append(
                {
                    "users": n,
                    "wrk_rps": wrk,
                    "locust_rps": rate,
                    "ratio": rate / wrk,
                    "locust_cpu_warning": any(
                        f["name"] == "cpu_warning" for f in doc["validity"]["flags"]
                    ),
                }
            )
    best = max(p["ratio"] for p in points)
    doc = _document(
        "capacity", points, settings, goal=f"ratio >= {CAPACITY_GOAL}", met=best >= CAPACITY_GOAL
    )
    _write(
        settings,
        doc,
        [
            (
                "requests/s",
                {
                    "wrk": ([p["users"] for p in points], [p["wrk_rps"] for p in points]),
                    "locust": ([p["users"] for p in points], [p["locust_rps"] for p in points]),
                },
            ),
        ],
        "users / connections",
    )
    return doc


def _pinned_locust(settings: Settings, client_cpu: list[str], url: str, users: int) -> dict:
    """run_locust with the Locust process pinned to the client core."""
    import json

    scratch = settings.reports_dir / "experiment-runs"
    name = f"capacity-{users}"
    cmd = [
        *client_cpu,
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(settings.loadtests / "v2_rest.py"),
        "V2RestUser",
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{settings.run_time_s}s",
        "--host",
        url,
        "--model",
        "null",
        "--report-name",
        name,
        "--reports-dir",
        str(scratch),
        "--only-summary",
    ]
    subprocess.run(cmd, capture_output=True, text=True, timeout=settings.run_time_s + 60)
    path = scratch / f"load-{name}.json"
    if not path.exists():
        raise ServegateError(f"locust run {name} wrote no results")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _document(
    kind: str, points: list[dict[str, Any]], settings: Settings, goal: str, met: bool
) -> dict[str, Any]:
    return {
        "schema_version": results.SCHEMA_VERSION,
        "kind": "benchmark",
        "benchmark": kind,
        "name": f"benchmark-{kind}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_time_s_per_point": settings.run_time_s,
        "machine": results.machine(),
        "pinning": "server on core 0, load generator on core 1" if _cores()[0] else "none",
        "goal": goal,
        "goal_met": met,
        "points": points,
    }


def _write(settings: Settings, doc: dict[str, Any], panels: Any, x_label: str) -> None:
    paths = results.paths_for(settings.reports_dir, doc["name"])
    results.write_json(paths["json"], doc)
    results.write_csv(
        paths["csv"],
        [
            {k: (";".join(v) if isinstance(v, list) else v) for k, v in p.items()}
            for p in doc["points"]
        ],
    )
    keys = [k for k in doc["points"][0] if k != "validity_flags"]
    md = [
        f"## Benchmark: {doc['benchmark']}",
        "",
        f"_{doc['machine']['note']}; pinning: {doc['pinning']}; "
        f"{doc['run_time_s_per_point']} s per point._",
        "",
        f"Goal {doc['goal']}: **{'met' if doc['goal_met'] else 'NOT met'}**.",
        "",
        results.markdown_table(
            keys,
            [
                [p[k] if not isinstance(p[k], float) else round(p[k], 4) for k in keys]
                for p in doc["points"]
            ],
        ),
    ]
    paths["md"].write_text("\n".join(md) + "\n", encoding="utf-8")
    plots.series_plot(paths["png"], doc["name"], x_label, panels, note=doc["machine"]["note"])
