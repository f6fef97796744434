"""Open and closed loops in real Locust runs, and a tiny sweep, against the calibration server.

No timing is asserted (the machine is shared): counts, files and loose ratios only.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("locust") is None:
    pytest.skip("locust is not installed (the 'load' extra)", allow_module_level=True)

from tests.test_load_scenarios import ROOT, _port, _serve
from tests.test_load_scenarios import locust as scenario_locust


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    yield from _serve("server.py", "--ttft-ms", "20", "--itl-ms", "5", "--tokens", "4")


@pytest.fixture(scope="module")
def grpc_port() -> Iterator[int]:
    yield from _serve("grpc_null.py")


@pytest.fixture(scope="module")
def slow_port() -> Iterator[int]:
    # every null request takes 40 ms: one sender answers at most 25 per second
    yield from _serve("server.py", "--null-delay-ms", "40")


def locust(tmp_path: Path, port: int, *args: str, seconds: int = 20) -> subprocess.CompletedProcess:
    """The scenarios' Locust run with the load shape left to the arrival options."""
    return scenario_locust(tmp_path, port, *args, seconds=seconds, users=None, timeout=120)


def test_every_scenario_runs_open_loop_until_its_request_budget(tmp_path, http_port, grpc_port):
    done = locust(
        tmp_path,
        http_port,
        "--model",
        "null",
        "--grpc-host",
        f"127.0.0.1:{grpc_port}",
        "--max-tokens",
        "4",
        "--rate",
        "40",
        "--arrival",
        "gamma:0.5",
        "--seed",
        "3",
        "--num-requests",
        "60",
        "--report-name",
        "open",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "load-open.json").read_text())
    config = doc["config"]
    assert config["load_mode"] == "open" and config["arrival"] == "gamma:0.5"
    assert (config["rate"], config["seed"], config["num_requests"]) == (40.0, 3, 60)
    assert doc["totals"]["requests"] == 60
    assert config["schedule"]["sends"] == 60
    assert config["achieved_rate"] is not None
    protocols = {r["name"].split()[0] for r in doc["requests"]}
    assert len(protocols) >= 3, protocols  # the senders are shared by every scenario


def test_a_closed_loop_is_its_users_back_to_back_until_the_budget(tmp_path, http_port):
    done = locust(
        tmp_path,
        http_port,
        "V2RestUser",
        "--model",
        "null",
        "--concurrency",
        "3",
        "--num-requests",
        "25",
        "--report-name",
        "closed",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "load-closed.json").read_text())
    assert doc["config"]["users"] == 3 and doc["config"]["concurrency"] == 3
    assert doc["config"]["load_mode"] == "closed"
    assert doc["totals"]["requests"] == 25


def test_a_schedule_the_senders_cannot_keep_makes_the_run_invalid(tmp_path, slow_port):
    # one sender, 40 ms per request, 100 requests per second asked: most arrivals wait
    done = locust(
        tmp_path,
        slow_port,
        "V2RestUser",
        "--model",
        "null",
        "--rate",
        "100",
        "--arrival",
        "constant",
        "--max-concurrency",
        "1",
        "--report-name",
        "behind",
        seconds=3,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "load-behind.json").read_text())
    schedule = doc["config"]["schedule"]
    assert schedule["waited_for_sender"] + schedule["unsent_due"] > 0
    flags = {f["name"]: f["detail"] for f in doc["validity"]["flags"]}
    assert doc["validity"]["valid"] is False
    assert "senders busy" in flags["late_sends"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "5", "--concurrency", "2"], "--rate and --concurrency exclude each other"),
        (["--rate", "5", "--arrival", "gamma:-1"], "the burstiness must be a positive number"),
        (["--concurrency", "2", "-u", "5"], "-u 5 and --concurrency 2 disagree"),
    ],
)
def test_contradicting_load_options_stop_the_run_with_one_line(tmp_path, http_port, args, message):
    done = locust(tmp_path, http_port, "V2RestUser", "--model", "null", *args, seconds=2)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def _servegate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "servegate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_a_tiny_rate_sweep_writes_its_results_and_tracks_the_offered_rates(tmp_path, http_port):
    done = _servegate(
        "--reports-dir",
        str(tmp_path),
        "load",
        "sweep",
        "--host",
        f"http://127.0.0.1:{http_port}",
        "--rates",
        "5,20",
        "--arrival",
        "constant",
        "--num-requests",
        "30",
        "--run-time",
        "30",
        "--",
        "--model",
        "null",
    )
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    stem = tmp_path / "load-sweep-rate-v2-rest"
    for ext in ("json", "csv", "md", "png"):
        assert stem.with_suffix(f".{ext}").is_file(), ext
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert doc["kind"] == "sweep" and doc["sweep"] == "rate"
    assert [p["load"] for p in doc["points"]] == [5.0, 20.0]
    for p in doc["points"]:
        assert p["requests"] == 30
        # loose: the sends follow the schedule (a busy machine may be somewhat late)
        assert 0.5 * p["load"] < p["achieved_rate"] < 1.5 * p["load"], p
        assert Path(p["run"]).is_file()
    assert {"knee", "saturation", "basis"} <= set(doc)
    rows = list(csv.DictReader(stem.with_suffix(".csv").open()))
    assert [r["load"] for r in rows] == ["5", "20"]
    assert "Knee:" in stem.with_suffix(".md").read_text()


def test_a_tiny_concurrency_sweep_of_streams_keeps_ttft_and_itl(tmp_path, http_port):
    done = _servegate(
        "--reports-dir",
        str(tmp_path),
        "load",
        "sweep",
        "--host",
        f"http://127.0.0.1:{http_port}",
        "--scenario",
        "openai-stream",
        "--concurrency",
        "1,4",
        "--num-requests",
        "12",
        "--run-time",
        "30",
        "--",
        "--model",
        "calibrated",
        "--max-tokens",
        "4",
        "--tags",
        "completions",
    )
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    doc = json.loads((tmp_path / "load-sweep-concurrency-openai-stream.json").read_text())
    assert [p["concurrency"] for p in doc["points"]] == [1, 4]
    for p in doc["points"]:
        assert p["requests"] == 12
        assert p["ttft_p50_ms"] is not None and p["itl_p50_ms"] is not None


def test_a_bad_sweep_option_is_one_line(tmp_path):
    done = _servegate("load", "sweep", "--host", "http://127.0.0.1:1", "--rates", "a,b")
    assert done.returncode != 0
    assert "'a' is not a number" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_locust_workers_share_the_rate_and_the_request_budget(tmp_path, http_port):
    done = locust(
        tmp_path,
        http_port,
        "V2RestUser",
        "--model",
        "null",
        "--processes",
        "2",
        # a port of its own: other distributed runs on this machine may hold Locust's 5557
        "--master-bind-port",
        str(port := _port()),
        "--master-port",
        str(port),
        "--rate",
        "20",
        "--num-requests",
        "21",
        "--report-name",
        "dist-open",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "load-dist-open.json").read_text())
    assert doc["config"]["workers"] == 2
    # 11 + 10: each worker its share, the master adds them up and stops when both are done
    assert doc["totals"]["requests"] == 21
    assert doc["config"]["schedule"]["sends"] == 21
