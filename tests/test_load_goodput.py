"""Goodput: the rate of requests whose own TTFT, mean ITL, TPOT and E2E all met their SLO."""

from __future__ import annotations

import pytest

from servegate.load import goodput, results
from servegate.load.metrics import Samples
from servegate.load.validity import Validity


@pytest.mark.parametrize(
    "text, slos",
    [
        ("ttft<300ms,itl<40ms", {"ttft": 300.0, "itl": 40.0}),
        ("ttft<=0.3s, e2e<2s", {"ttft": 300.0, "e2e": 2000.0}),
        ("ttft:300 tpot:40", {"ttft": 300.0, "tpot": 40.0}),  # vLLM's --goodput spelling
        ("e2el:1500", {"e2e": 1500.0}),
    ],
)
def test_slos_are_read_in_ms(text, slos):
    assert goodput.parse_slos(text) == slos


@pytest.mark.parametrize(
    "text, message",
    [
        ("ttft:p99<300ms", "an SLO holds per request"),
        ("ttfb<300ms", "unknown metric 'ttfb'"),
        ("ttft<fast", "expected METRIC<LIMIT[ms|s]"),
        ("ttft<300ms,ttft<200ms", "ttft is limited twice"),
        ("ttft<0ms", "the limit must be above 0"),
        (" , ", "no SLO given"),
    ],
)
def test_a_bad_slo_is_one_line(text, message):
    with pytest.raises(goodput.SloError) as raised:
        goodput.parse_slos(text)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def _stream(ttft, gaps, tpot=None, ok=True):
    e2e = ttft + sum(gaps)
    return goodput.request_record(
        ok,
        e2e,
        ttft_ms=ttft,
        itl_ms=gaps,
        tpot_ms=tpot if tpot is not None else None,
        streamed=True,
    )


def test_a_request_is_good_only_when_every_slo_holds_for_it():
    records = [
        _stream(100, [20, 20, 20]),  # good
        _stream(400, [20, 20]),  # TTFT too late
        _stream(100, [10, 90]),  # mean ITL 50: too slow, though one gap was fast
        _stream(100, [20], ok=False),  # failed: never good
        _stream(100, []),  # one token: no gap to be late
    ]
    block = goodput.compute(records, {"ttft": 300.0, "itl": 40.0}, duration_s=2.0)
    assert (block["requests"], block["good_requests"]) == (5, 2)
    assert block["fraction"] == pytest.approx(0.4)
    assert block["requests_per_s"] == pytest.approx(1.0)
    assert block["met"] == {"ttft": 3, "itl": 3}


def test_a_request_that_does_not_stream_meets_only_an_e2e_slo():
    plain = goodput.request_record(True, 50.0)
    assert goodput.compute([plain], {"e2e": 100.0}, 1.0)["good_requests"] == 1
    assert goodput.compute([plain], {"e2e": 100.0, "ttft": 100.0}, 1.0)["good_requests"] == 0


def test_goodput_is_in_the_result_and_its_markdown():
    s = Samples()
    for v in (10.0, 20.0, 30.0, 40.0):
        s.add("infer", v, at=0.0)
        s.per_request.append(goodput.request_record(True, v))
    doc = results.build_run_result(
        "x",
        s,
        started=0.0,
        ended=2.0,
        target={},
        config={},
        validity=Validity().report(),
        slos={"e2e": 25.0},
    )
    assert doc["goodput"]["good_requests"] == 2 and doc["goodput"]["requests_per_s"] == 1.0
    md = results.run_markdown(doc)
    assert "Goodput (per-request SLOs e2e < 25 ms): **1 req/s**, 2 of 4 requests (50.0 %)" in md


def test_worker_records_reach_the_master():
    worker, master = Samples(), Samples()
    worker.per_request.append(goodput.request_record(True, 5.0))
    master.merge(worker.drain())
    assert len(master.per_request) == 1 and worker.per_request == []
