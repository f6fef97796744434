"""A streaming Locust run with --slo and a /metrics endpoint: the goodput and the scraped
series land in the result, its Markdown, its plot and the HTML page, and the gate reads them."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from tests.test_load_scenarios import _serve, locust

METRICS = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{model_name="m"}} {n}
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{model_name="m"}} 0.5
# TYPE custom_depth gauge
custom_depth 7
"""


class _Metrics(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).hits += 1
        data = METRICS.format(n=type(self).hits % 3).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _why(stderr: str) -> str:
    """servegate's and Locust's own lines of a run's log (its tables drown them)."""
    return "\n".join(
        line
        for line in stderr.splitlines()
        if "/INFO/" in line or "ERROR" in line or "WARNING" in line or "Traceback" in line
    )[-3000:]


@pytest.fixture(scope="module")
def stream_port() -> Iterator[int]:
    yield from _serve("server.py", "--ttft-ms", "20", "--itl-ms", "5", "--tokens", "4")


@pytest.fixture
def metrics_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()


def test_goodput_and_telemetry_reach_the_result_and_the_reports(tmp_path, stream_port, metrics_url):
    done = locust(
        tmp_path,
        stream_port,
        "OpenAIStreamUser",
        "--model",
        "calibrated",
        # TTFT is about 20 ms: every request meets the first, none the second
        "--slo",
        "ttft<5s,itl<1s",
        "--metrics-url",
        metrics_url,
        "--metrics-interval",
        "0.2",
        "--metric",
        "custom_depth",
        "--report-name",
        "slo",
        seconds=6,  # room for a slow preflight on a busy machine
    )
    assert done.returncode == 0, _why(done.stderr)
    doc = json.loads((tmp_path / "load-slo.json").read_text())
    g = doc["goodput"]
    assert g["slos_ms"] == {"ttft": 5000.0, "itl": 1000.0}
    assert g["requests"] == doc["totals"]["requests"] > 0, done.stderr[-2000:]
    assert g["good_requests"] == g["requests"] and g["fraction"] == 1.0
    tel = doc["telemetry"]
    assert tel["status"] == "scraped" and tel["url"] == metrics_url and tel["scrapes"] >= 3
    assert set(tel["series"]) == {"running_requests", "kv_cache_usage", "custom_depth"}
    assert set(tel["series"]["custom_depth"]["values"]) == {7}
    md = (tmp_path / "load-slo.md").read_text()
    assert "Goodput (per-request SLOs ttft < 5000 ms, itl < 1000 ms)" in md
    assert "| running_requests | vllm:num_requests_running |" in md
    assert (tmp_path / "load-slo.png").stat().st_size > 0

    from servegate.report.html import render_html

    page = render_html([], tmp_path)
    assert "goodput fraction" in page and "server telemetry: scraped" in page

    # the same SLO tighter: no request is good, and the gate's goodput limit says so
    done = locust(
        tmp_path,
        stream_port,
        "OpenAIStreamUser",
        "--model",
        "calibrated",
        "--slo",
        "ttft<1ms",
        "--metrics-url",
        "off",
        "--report-name",
        "slo",
        seconds=2,
    )
    assert done.returncode == 0, _why(done.stderr)
    doc = json.loads((tmp_path / "load-slo.json").read_text())
    assert doc["goodput"]["good_requests"] == 0 and doc["goodput"]["met"] == {"ttft": 0}
    assert doc["telemetry"]["status"] == "off"

    from servegate.load.thresholds import Thresholds
    from servegate.report.gate import gate_load

    findings = gate_load(tmp_path, Thresholds(min_goodput_fraction=0.5, allow_invalid=True))
    assert [f.ok for f in findings] == [False]
    assert "goodput 0.0 % of requests met every SLO (ttft<1ms)" in findings[0].detail


def test_a_bad_slo_stops_the_run_with_one_line(tmp_path, stream_port):
    done = locust(
        tmp_path, stream_port, "OpenAIStreamUser", "--model", "calibrated", "--slo", "ttft:p99<3"
    )
    assert done.returncode == 2
    # argparse's one line, before any user starts
    assert "error: argument --slo: 'ttft:p99<3': an SLO holds per request" in done.stderr
    assert "Traceback" not in done.stderr
