"""The one thresholds format: each key breaches on its own figure (the Locust run and the gate
read it through one parser), a baseline allows a regression in %, a bad file is one line."""

from __future__ import annotations

import json

import pytest

from servegate.load import goodput, results, thresholds
from servegate.load.metrics import Samples
from servegate.load.validity import Validity


def _doc(latencies, failures=0, seconds=1.0, ttft=(), itl=(), slos=None, valid=True):
    s = Samples()
    for v in latencies:
        s.add("infer", v, at=0.0)
        s.per_request.append(goodput.request_record(True, v))
    for _ in range(failures):
        s.fail("infer", "HTTP 500")
        s.per_request.append(goodput.request_record(False, 0.0))
    for v in ttft:
        s.add(results.stream_metric_name("infer", "ttft"), v, at=0.0)
    for v in itl:
        s.add(results.stream_metric_name("infer", "itl"), v, at=0.0)
    validity = Validity()
    if not valid:
        validity.cpu(99.0)
    return results.build_run_result(
        "x",
        s,
        started=0.0,
        ended=seconds,
        target={},
        config={},
        validity=validity.report(),
        slos=slos,
    )


def _write(tmp_path, text, name="th.yaml"):
    path = tmp_path / name
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


# every key of the format: (the file, a run that keeps it, a run that breaks it, the figure)
KEYS = [
    (
        "min_throughput_rps: 9",
        dict(latencies=[5.0] * 10),
        dict(latencies=[5.0] * 8),
        "throughput_rps",
    ),
    ("max_p99_ms: 50", dict(latencies=[5.0] * 10), dict(latencies=[5.0] * 9 + [90.0]), "p99_ms"),
    (
        "max_error_rate: 0.2",
        dict(latencies=[5.0] * 9, failures=1),
        dict(latencies=[5.0] * 7, failures=3),
        "error_rate",
    ),
    (
        "min_goodput_fraction: 0.8",
        dict(latencies=[5.0] * 9 + [50.0], slos={"e2e": 10.0}),
        dict(latencies=[5.0] * 7 + [50.0] * 3, slos={"e2e": 10.0}),
        "goodput_fraction",
    ),
    (
        "min_goodput_fraction: 0.8",
        dict(latencies=[5.0] * 10, slos={"e2e": 10.0}),
        dict(latencies=[5.0] * 10),  # no --slo: nothing measured is no pass
        "goodput",
    ),
    (
        "min_goodput_rps: 8",
        dict(latencies=[5.0] * 9 + [50.0], slos={"e2e": 10.0}),
        dict(latencies=[5.0] * 7 + [50.0] * 3, slos={"e2e": 10.0}),
        "goodput_rps",
    ),
    (
        "metrics: {ttft: {max_p50_ms: 40}}",
        dict(latencies=[5.0], ttft=[30.0]),
        dict(latencies=[5.0], ttft=[50.0]),
        "ttft_p50_ms",
    ),
    (
        "metrics: {itl: {max_p90_ms: 40}}",
        dict(latencies=[5.0], itl=[30.0]),
        dict(latencies=[5.0], itl=[30.0, 90.0]),
        "itl_p90_ms",
    ),
    (
        "metrics: {ttft: {max_p95_ms: 40}}",
        dict(latencies=[5.0], ttft=[30.0]),
        dict(latencies=[5.0], ttft=[50.0]),
        "ttft_p95_ms",
    ),
    (
        "metrics: {itl: {max_p99_ms: 40}}",
        dict(latencies=[5.0], itl=[30.0]),
        dict(latencies=[5.0]),
        "itl_p99_ms",
    ),
    ("max_p99_ms: 1000", dict(latencies=[5.0]), dict(latencies=[5.0], valid=False), "validity"),
    (
        "allow_invalid: true\nmax_p99_ms: 10",
        dict(latencies=[5.0], valid=False),
        dict(latencies=[50.0], valid=False),
        "p99_ms",
    ),
    (
        "thresholds: [{metric: totals.requests, max: 5}]",
        dict(latencies=[5.0] * 3),
        dict(latencies=[5.0] * 8),
        "totals.requests",
    ),
    (
        "thresholds: [{metric: goodput.fraction, min: 0.5}]",
        dict(latencies=[5.0], slos={"e2e": 9.0}),
        dict(latencies=[50.0], slos={"e2e": 9.0}),
        "goodput.fraction",
    ),
    (
        "thresholds: [{metric: totals.nonesuch, max: 1}]",
        None,
        dict(latencies=[5.0]),
        "totals.nonesuch",
    ),
    (
        "thresholds: [{metric: totals.requests, max: 1, files: 'load-other*.json'}]",
        dict(latencies=[5.0] * 3),
        None,
        None,
    ),
]


@pytest.mark.parametrize("text, keeps, breaks, figure", KEYS)
def test_each_key_holds_and_breaches_on_its_own_figure(tmp_path, text, keeps, breaks, figure):
    th = _write(tmp_path, text + "\n")
    if keeps is not None:
        assert thresholds.evaluate(_doc(**keeps), th) == []
    if breaks is not None and figure is not None:
        assert [b.figure for b in thresholds.evaluate(_doc(**breaks), th)] == [figure]


def test_baseline_regression_beyond_the_allowance_breaches(tmp_path):
    base = tmp_path / "load-base.json"
    base.write_text(json.dumps(_doc([10.0] * 100)))
    th = _write(tmp_path, "baseline: load-base.json\nmax_regression_pct: 10\n")
    assert thresholds.evaluate(_doc([10.5] * 95), th) == []  # 5 % slower: allowed
    figures = {b.figure for b in thresholds.evaluate(_doc([20.0] * 50), th)}
    assert figures == {"throughput_rps_vs_baseline", "p99_ms_vs_baseline"}


def test_the_gate_and_the_run_read_the_same_file(tmp_path):
    from servegate.report.gate import read_thresholds

    path = tmp_path / "th.yaml"
    path.write_text(
        "min_goodput_fraction: 0.9\nthresholds:\n  - {metric: totals.requests, min: 1}\n"
    )
    assert read_thresholds(path) == thresholds.load_thresholds(path)
    # a bare list is the gate's path limits alone
    path.write_text("- {metric: totals.requests, min: 1}\n")
    assert thresholds.load_thresholds(path).thresholds[0].metric == "totals.requests"


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_p95_ms: 3\n", "max_p95_ms: unknown key; known: allow_invalid, baseline"),
        (
            "metrics: {ttfb: {max_p99_ms: 3}}\n",
            "metrics.ttfb.[key]: Input should be 'ttft', 'itl', 'tpot' or 'e2e'",
        ),
        ("metrics: {ttft: {p99: 3}}\n", "metrics.ttft.p99: unknown key; known: max_p50_ms"),
        ("max_p99_ms: fast\n", "max_p99_ms: Input should be a valid number"),
        (
            "min_goodput_fraction: 95\n",
            "min_goodput_fraction: Input should be less than or equal to 1",
        ),
        ("max_regression_pct: 10\n", "(file): max_regression_pct needs a baseline"),
        ("thresholds:\n  - metric: x\n", "thresholds.0: threshold 'x' needs min or max"),
        ("[1, 2\n", "is not YAML/JSON: "),
        ("7\n", "expected a mapping at the top"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(thresholds.ThresholdsError) as raised:
        _write(tmp_path, text)
    line = str(raised.value)
    assert "\n" not in line
    assert line.startswith(f"thresholds file {tmp_path / 'th.yaml'}")
    assert message in line


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(thresholds.ThresholdsError, match="No such file"):
        thresholds.load_thresholds(tmp_path / "nope.yaml")
