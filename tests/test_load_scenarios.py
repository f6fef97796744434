"""A short headless run of every Locust scenario against the calibration servers, and the ways
a run must stop early or fail: target down, missing model, wrong protocol, thresholds breached.

No timing is asserted here (the machine is shared); the fidelity and capacity figures come
from ``servegate load fidelity|capacity``.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# locust is only run in child processes: importing it here would monkey-patch this one
if importlib.util.find_spec("locust") is None:
    pytest.skip("locust is not installed (the 'load' extra)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
LOADTESTS = ROOT / "loadtests"
CALIBRATION = LOADTESTS / "calibration"
SCENARIOS = ("V2RestUser", "V2GrpcUser", "KServeV1User", "OpenAIStreamUser", "OpenAIEmbeddingsUser")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, "test server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def _serve(script: str, *args: str) -> Iterator[int]:
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, str(CALIBRATION / script), "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    yield from _serve("server.py", "--ttft-ms", "20", "--itl-ms", "5", "--tokens", "4")


@pytest.fixture(scope="module")
def grpc_port() -> Iterator[int]:
    yield from _serve("grpc_null.py")


@pytest.fixture(scope="module")
def v2_only_port() -> Iterator[int]:
    yield from _serve("server.py", "--protocols", "v2")


def locust(
    tmp_path: Path,
    port: int,
    *args: str,
    seconds: int = 2,
    users: int | None = 2,
    timeout: float = 90,
) -> subprocess.CompletedProcess:
    """A headless Locust run against the calibration server; ``users=None`` leaves the user
    count to the arguments (``--rate``/``--concurrency`` set it)."""
    spawn = ["-u", str(users), "-r", str(users)] if users is not None else []
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOADTESTS), "--headless", *spawn,
        "-t", f"{seconds}s", "--host", f"http://127.0.0.1:{port}", "--reports-dir", str(tmp_path),
        "--only-summary", "--stop-timeout", "5", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_every_scenario_runs_headless_and_writes_its_results(tmp_path, http_port, grpc_port):
    done = locust(
        tmp_path,
        http_port,
        *SCENARIOS,
        "--model",
        "calibrated",
        "--grpc-host",
        f"127.0.0.1:{grpc_port}",
        "--report-name",
        "smoke",
        users=len(SCENARIOS),
        seconds=3,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "load-smoke.json").read_text())
    assert doc["schema_version"] == 1 and doc["kind"] == "load-run"
    names = " ".join(r["name"] for r in doc["requests"])
    for fragment in (
        "infer calibrated",
        "ModelInfer calibrated",
        "predict calibrated",
        "stream calibrated",
        "embeddings calibrated",
    ):
        assert fragment in names, names
    assert doc["totals"]["failures"] == 0
    (stream,) = [m for n, m in doc["streaming"].items() if "stream" in n][:1]
    assert stream["ttft_ms"]["count"] > 0 and stream["itl_ms"]["count"] > 0
    for ext in ("csv", "md", "png", "samples.csv"):
        assert (tmp_path / f"load-smoke.{ext}").stat().st_size > 0


def test_target_down_stops_at_once_with_a_clear_message(tmp_path):
    done = locust(tmp_path, _port(), "V2RestUser", "--model", "null", seconds=30)
    assert done.returncode == 2
    assert "is down or unreachable" in done.stderr


def test_missing_model_stops_at_once(tmp_path, http_port):
    done = locust(tmp_path, http_port, "KServeV1User", "--model", "nope", seconds=30)
    assert done.returncode == 2
    assert "model 'nope' not found" in done.stderr


def test_wrong_protocol_for_the_target_stops_at_once(tmp_path, v2_only_port):
    done = locust(tmp_path, v2_only_port, "OpenAIEmbeddingsUser", "--model", "null", seconds=30)
    assert done.returncode == 2
    assert "no OpenAI routes" in done.stderr


def test_a_breached_threshold_fails_the_run_and_names_the_figure(tmp_path, http_port):
    th = tmp_path / "thresholds.yaml"
    # allow_invalid: on a busy machine the run may be client-bound, which is a breach of its own
    th.write_text("min_throughput_rps: 100000000\nmax_error_rate: 0.5\nallow_invalid: true\n")
    done = locust(
        tmp_path,
        http_port,
        "V2RestUser",
        "--model",
        "null",
        "--thresholds",
        str(th),
        "--report-name",
        "gated",
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "threshold breached: throughput" in done.stderr
    doc = json.loads((tmp_path / "load-gated.json").read_text())
    assert doc["thresholds"]["passed"] is False
    assert [b["figure"] for b in doc["thresholds"]["breaches"]] == ["throughput_rps"]


def test_two_local_processes_merge_their_samples_on_the_master(tmp_path, http_port):
    done = locust(
        tmp_path,
        http_port,
        "V2RestUser",
        "--model",
        "null",
        "--processes",
        "2",
        "--report-name",
        "dist",
        users=4,
        seconds=3,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "load-dist.json").read_text())
    assert doc["config"]["workers"] == 2
    assert doc["totals"]["requests"] > 0 and doc["totals"]["failures"] == 0
