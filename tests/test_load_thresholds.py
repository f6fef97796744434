"""The thresholds gate: each breach names its figure; a baseline allows a regression in %."""

from __future__ import annotations

import json

import pytest

from servegate.load import results, thresholds
from servegate.load.metrics import Samples
from servegate.load.validity import Validity


def _doc(latencies, failures=0, seconds=1.0, ttft=()):
    s = Samples()
    for v in latencies:
        s.add("infer", v, at=0.0)
    for _ in range(failures):
        s.fail("infer", "HTTP 500")
    for v in ttft:
        s.add(results.stream_metric_name("infer", "ttft"), v, at=0.0)
    return results.build_run_result(
        "x", s, started=0.0, ended=seconds, target={}, config={}, validity=Validity().report()
    )


def _write(tmp_path, text):
    path = tmp_path / "th.yaml"
    path.write_text(text)
    return thresholds.load_thresholds(path)


def test_a_run_within_every_limit_passes(tmp_path):
    th = _write(tmp_path, "min_throughput_rps: 5\nmax_p99_ms: 100\nmax_error_rate: 0.1\n")
    assert thresholds.evaluate(_doc([10.0] * 10), th) == []


def test_each_breach_names_its_figure(tmp_path):
    th = _write(
        tmp_path,
        "min_throughput_rps: 50\nmax_p99_ms: 100\nmax_error_rate: 0.01\n"
        "metrics:\n  ttft: {max_p99_ms: 5}\n",
    )
    breaches = thresholds.evaluate(_doc([10.0] * 9 + [500.0], failures=1, ttft=[50.0]), th)
    assert {b.figure for b in breaches} == {"throughput_rps", "p99_ms", "error_rate", "ttft_p99_ms"}
    assert any("below the minimum 50 req/s" in b.message for b in breaches)


def test_baseline_regression_beyond_the_allowance_breaches(tmp_path):
    base = tmp_path / "load-base.json"
    base.write_text(json.dumps(_doc([10.0] * 100)))
    th = _write(tmp_path, "baseline: load-base.json\nmax_regression_pct: 10\n")
    assert thresholds.evaluate(_doc([10.5] * 95), th) == []  # 5 % slower: allowed
    figures = {b.figure for b in thresholds.evaluate(_doc([20.0] * 50), th)}
    assert figures == {"throughput_rps_vs_baseline", "p99_ms_vs_baseline"}


def test_unknown_keys_are_refused(tmp_path):
    with pytest.raises(thresholds.ThresholdsError, match="unknown key"):
        _write(tmp_path, "max_p95_ms: 3\n")
