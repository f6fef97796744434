"""Load metrics: percentiles, streaming timings as genai-perf defines them, result documents."""

from __future__ import annotations

import json
import math

import pytest

from servegate.load import results
from servegate.load.metrics import Samples, StreamTiming, percentile, ratio_error, summarize
from servegate.load.scenario import ScenarioOptions, resize_v2, v1_request, v2_request
from servegate.load.validity import Validity


def test_percentile_interpolates_between_closest_ranks_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 90) == pytest.approx(3.7)
    assert math.isnan(percentile([], 50))


def test_summary_keeps_raw_precision_above_100_ms():
    # Locust's own stats round 1234.5 ms into a bucket; the raw samples do not
    s = summarize([1234.5, 1234.5, 1234.5])
    assert s["p50"] == 1234.5 and s["count"] == 3


def test_stream_timing_follows_the_genai_perf_definitions():
    t = StreamTiming(sent=10.0)
    for at in (10.100, 10.120, 10.140, 10.160):
        t.content(at=at)
    t.end(at=10.170)
    assert t.ttft_ms == pytest.approx(100.0)
    assert t.itl_ms == pytest.approx([20.0, 20.0, 20.0])
    assert t.e2e_ms == pytest.approx(170.0)
    # TPOT = (E2E - TTFT) / (tokens - 1)
    assert t.tpot_ms == pytest.approx(70.0 / 3)
    t.usage_tokens = 8  # the server's count wins over the chunk count
    assert t.output_tokens == 8 and t.tpot_ms == pytest.approx(10.0)


def test_stream_without_content_has_no_ttft_or_tpot():
    t = StreamTiming(sent=0.0)
    t.end(at=1.0)
    assert t.ttft_ms is None and t.tpot_ms is None and t.itl_ms == []


def test_worker_samples_merge_into_the_master():
    master, worker = Samples(), Samples()
    master.add("a", 1.0, at=1.0)
    worker.add("a", 2.0, at=2.0)
    worker.fail("a", "HTTP 500")
    worker.output_tokens = 7
    master.merge(json.loads(json.dumps(worker.drain())))
    assert master.values["a"] == [1.0, 2.0] and master.failures["a"] == 1
    assert master.output_tokens == 7 and worker.values == {}


def test_run_document_separates_requests_from_stream_metrics(tmp_path):
    s = Samples()
    for v in (100.0, 200.0):
        s.add("chat", v, at=1.0)
        s.add(results.stream_metric_name("chat", "ttft"), v / 10, at=1.0)
    s.fail("chat", "boom")
    doc = results.build_run_result(
        "t",
        s,
        started=0.0,
        ended=2.0,
        target={"host": "h"},
        config={"users": 1},
        validity=Validity().report(),
    )
    assert doc["schema_version"] == results.SCHEMA_VERSION
    assert doc["totals"]["requests"] == 3 and doc["totals"]["failures"] == 1
    assert doc["totals"]["requests_per_s"] == 1.5
    assert doc["streaming"]["chat"]["ttft_ms"]["p50"] == 15.0
    paths = results.write_run(tmp_path, doc, s)
    assert json.loads(paths["json"].read_text())["name"] == "t"
    assert "TTFT" in paths["md"].read_text()
    assert paths["samples"].read_text().count("\n") == 5  # header + 4 samples


def test_validity_flags_cpu_warning_late_sends_and_loop_lag():
    v = Validity(tolerance_ms=5.0)
    assert v.report()["valid"]
    v.cpu(97.0)
    for late in (0.0, 9.0):
        v.send(late)
    v.lag(20.0)
    flags = {f["name"] for f in v.report()["flags"]}
    assert flags == {"cpu_warning", "late_sends", "loop_lag"}


def test_ratio_error():
    assert ratio_error(105.0, 100.0) == pytest.approx(0.05)


def test_instances_resize_the_first_dimension_and_repeat_rows():
    body = {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]}
    out = resize_v2(body, 5)
    assert out["inputs"][0]["shape"] == [5]
    assert out["inputs"][0]["data"] == ["a", "b", "a", "b", "a"]
    assert body["inputs"][0]["shape"] == [2]  # the stored payload is not changed


def test_task_picks_the_stored_payload_per_dialect():
    assert (
        v2_request(ScenarioOptions(task="fill-mask", dialect="kserve"))["inputs"][0]["name"]
        == "input-0"
    )
    assert (
        len(v1_request(ScenarioOptions(task="text-classification", instances=3))["instances"]) == 3
    )
    assert v2_request(ScenarioOptions())["inputs"][0]["datatype"] == "FP32"  # null request
