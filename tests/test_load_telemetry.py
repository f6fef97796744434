"""Server telemetry: the Prometheus text format read properly, the named series kept per
scrape, an absent endpoint noted (never an error), and the series on the result and its plot."""

from __future__ import annotations

import http.server
import math
import threading

import pytest

from servegate.load import prometheus, telemetry

VLLM_LIKE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="tiny"}} {running}
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="tiny"}} {waiting}
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="tiny"}} 0.25
# TYPE process_cpu_seconds counter
process_cpu_seconds_total {cpu}
# TYPE my_queue gauge
my_queue{{shard="a"}} 2
my_queue{{shard="b"}} 3
# TYPE batch_request_queue histogram
batch_request_queue_bucket{{le="+Inf",model="m"}} {count}
batch_request_queue_sum{{model="m"}} {qsum}
batch_request_queue_count{{model="m"}} {count}
"""


def test_the_text_format_is_read_with_labels_escapes_and_specials():
    text = (
        '# a comment\n# TYPE x gauge\nx{a="q\\"uo\\\\te",b="new\\nline"} +Inf 1700000000\n'
        "y NaN\nz{} -3.5e2\n"
    )
    exp = prometheus.parse(text)
    assert exp.types == {"x": "gauge"}
    assert exp.samples[0].labels == (("a", 'q"uo\\te'), ("b", "new\nline"))
    assert exp.samples[0].value == math.inf
    assert math.isnan(exp.values("y")[0]) and exp.values("z") == [-350.0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("x{a=1} 2\n", "line 1: malformed labels"),
        ("x 1\ny\n", "line 2: sample 'y' has no value"),
        ("<html>oops</html>\n", "line 1: sample '<html>oops</html>' has no value"),
    ],
)
def test_text_that_is_not_the_format_is_one_line(text, message):
    with pytest.raises(prometheus.PrometheusFormatError, match=message):
        prometheus.parse(text)


def test_the_named_series_come_from_each_scrape():
    pages = [
        VLLM_LIKE.format(running=1, waiting=0, cpu=10.0, count=0, qsum=0),
        VLLM_LIKE.format(running=4, waiting=2, cpu=11.5, count=10, qsum=30),
        VLLM_LIKE.format(running=3, waiting=5, cpu=12.0, count=10, qsum=30),
    ]
    scraper = telemetry.Scraper("http://x/metrics", extra=("my_queue",), get=lambda _: pages.pop(0))
    for at in (100.0, 101.0, 102.0):
        scraper.scrape(now=at)
    report = scraper.report(started=99.0)
    series = report["series"]
    assert series["running_requests"] == {
        "metric": "vllm:num_requests_running",
        "t_s": [1.0, 2.0, 3.0],
        "values": [1, 4, 3],
    }
    assert series["waiting_requests"]["values"] == [0, 2, 5]
    assert series["kv_cache_usage"]["values"] == [0.25] * 3
    # a counter gives its rate, once two scrapes exist
    assert series["server_cpu_cores"]["values"] == [None, 1.5, 0.5]
    # a histogram the mean of new observations; nothing new, no value
    assert series["batch_queue"]["values"] == [None, 3.0, None]
    # the user's gauge, label sets added up
    assert series["my_queue"] == {"metric": "my_queue", "t_s": [1.0, 2.0, 3.0], "values": [5, 5, 5]}
    assert "gpu_utilization" not in series  # never served: not kept
    assert (report["status"], report["scrapes"], report["errors"]) == ("scraped", 3, 0)


class _Metrics(http.server.BaseHTTPRequestHandler):
    body = VLLM_LIKE.format(running=2, waiting=1, cpu=1.0, count=0, qsum=0)

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path != "/metrics":
            self.send_error(404)
            return
        data = self.body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def metrics_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_the_endpoint_is_derived_from_the_host_and_scraped_over_http(metrics_server):
    scraper = telemetry.Scraper.find(metrics_server + "/some/base", interval_s=0.05)
    assert scraper.status == "scraped" and scraper.url == metrics_server + "/metrics"
    rounds = iter(range(3))
    scraper.run(until=lambda: next(rounds, None) is None)
    report = scraper.report(started=0.0)
    assert report["scrapes"] == 3
    assert report["series"]["running_requests"]["values"] == [2, 2, 2]


def test_an_absent_endpoint_is_noted_not_raised(metrics_server):
    closed = "http://127.0.0.1:9"  # discard port: nothing listens
    scraper = telemetry.Scraper.find(closed)
    assert scraper.status == "absent"
    assert "no Prometheus /metrics answered: http://127.0.0.1:9/metrics:" in scraper.note
    assert scraper.report(0.0)["series"] == {}
    # a page that is not Prometheus text is no endpoint either
    html = telemetry.Scraper.find("", metrics_server + "/nothing-here")
    assert html.status == "absent" and "404" in html.note
    assert telemetry.Scraper.find(metrics_server, "off").status == "off"


def test_candidate_urls_cover_each_implementation():
    assert telemetry.candidate_urls("http://h:8080/openai") == [
        "http://h:8080/metrics",  # vLLM, KServe
        "http://h:8082/metrics",  # MLServer beside its default HTTP port
    ]
    assert telemetry.candidate_urls("http://h:8000") == [
        "http://h:8000/metrics",
        "http://h:8002/metrics",  # Triton beside its default HTTP port
    ]
    # any other port says nothing about a separate metrics port
    assert telemetry.candidate_urls("https://h:43277") == ["https://h:43277/metrics"]


MLSERVER_LIKE = """\
# HELP rest_server_requests_in_progress Total HTTP requests currently in progress
# TYPE rest_server_requests_in_progress gauge
rest_server_requests_in_progress{{app_name="mlserver",method="GET"}} 0.0
rest_server_requests_in_progress{{app_name="mlserver",method="POST"}} {busy}
# TYPE rest_server_requests_total counter
rest_server_requests_total{{method="POST",path="/v2/models/m/infer",status_code="200"}} {done}
# TYPE parallel_request_queue histogram
parallel_request_queue_bucket{{le="+Inf"}} {done}
parallel_request_queue_count {done}
parallel_request_queue_sum {queued}
# TYPE rest_server_request_duration_seconds histogram
rest_server_request_duration_seconds_count{{method="POST"}} {done}
rest_server_request_duration_seconds_sum{{method="POST"}} {seconds}
"""


def test_mlserver_series_come_from_its_own_metric_names():
    """The names MLServer 1.7 serves on its metrics port (seen on the reference server)."""
    pages = [
        MLSERVER_LIKE.format(busy=2, done=10, queued=10, seconds=1.0),
        MLSERVER_LIKE.format(busy=8, done=30, queued=70, seconds=5.0),
    ]
    scraper = telemetry.Scraper("http://x:8082/metrics", get=lambda _: pages.pop(0))
    scraper.scrape(now=10.0)
    scraper.scrape(now=12.0)
    series = scraper.report(started=10.0)["series"]
    assert series["running_requests"]["values"] == [2.0, 8.0]
    assert series["server_requests_per_s"]["values"] == [None, 10.0]
    assert series["worker_queue"]["values"] == [None, 3.0]
    assert series["server_latency_s"]["values"] == [None, 0.2]
    assert series["server_requests_per_s"]["metric"] == "rest_server_requests_total"


TRITON_LIKE = """\
# TYPE nv_inference_request_success counter
nv_inference_request_success{{model="identity",version="1"}} {done}
# TYPE nv_inference_count counter
nv_inference_count{{model="identity",version="1"}} {rows}
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{{model="identity",version="1"}} {execs}
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{{model="identity",version="1"}} {us}
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{{model="identity",version="1"}} {pending}
# TYPE nv_cpu_utilization gauge
nv_cpu_utilization 0.5
"""


def test_triton_series_come_from_its_counters_without_a_total_suffix():
    """Triton's names as its metrics port serves them (seen on the PyTriton reference)."""
    pages = [
        TRITON_LIKE.format(done=100, rows=200, execs=100, us=1_000_000, pending=0),
        TRITON_LIKE.format(done=300, rows=800, execs=200, us=3_000_000, pending=2),
    ]
    scraper = telemetry.Scraper("http://x:8002/metrics", get=lambda _: pages.pop(0))
    scraper.scrape(now=0.0)
    scraper.scrape(now=2.0)
    series = scraper.report(started=0.0)["series"]
    assert series["server_requests_per_s"]["values"] == [None, 100.0]
    assert series["batch_size"]["values"] == [None, 6.0]  # 600 inferences in 100 executions
    assert series["server_latency_s"]["values"] == [None, 0.01]  # 2 s over 200 requests
    assert series["waiting_requests"]["values"] == [0, 2]
    assert series["cpu_utilization"]["values"] == [0.5, 0.5]


def test_series_keep_the_catalogue_order_whatever_the_page_order():
    page = "my_gauge 1\nvllm:kv_cache_usage_perc 0.1\nvllm:num_requests_running 2\n"
    scraper = telemetry.Scraper("http://x/metrics", extra=("my_gauge",), get=lambda _: page)
    scraper.scrape(now=1.0)
    assert list(scraper.report(0.0)["series"]) == ["running_requests", "kv_cache_usage", "my_gauge"]


def test_a_report_keeps_its_times_and_values_together_while_scraping_goes_on():
    """The scraper runs until the run ends, which can be after the report is taken: the report
    is a snapshot whose every series has one value per time (a plot of it needs both alike)."""
    page = "vllm:num_requests_running 2\n"
    scraper = telemetry.Scraper("http://x/metrics", get=lambda _: page)
    scraper.scrape(now=1.0)
    scraper.scrape(now=2.0)
    report = scraper.report(0.0)
    scraper.scrape(now=3.0)
    series = report["series"]["running_requests"]
    assert series["t_s"] == [1.0, 2.0]
    assert series["values"] == [2.0, 2.0]
