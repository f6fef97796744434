"""Arrival schedules, load options and the knee and saturation rules of a sweep, without Locust.

The statistics of the gaps are those of a fixed seed: the same numbers on every run.
"""

from __future__ import annotations

import argparse
import math
import statistics
from itertools import islice

import pytest

from servegate.entry.commands.load import sweep_plan
from servegate.load.arrivals import (
    Arrival,
    ArrivalError,
    LoadOptions,
    Schedule,
    ScheduleStats,
    budget_share,
    gaps,
    late_note,
    parse_arrival,
    parse_list,
)
from servegate.load.sweep import basis, knee, saturation

N = 20_000


def _stats(arrival: Arrival, rate: float, seed: int = 7) -> tuple[float, float]:
    sample = list(islice(gaps(arrival, rate, seed), N))
    mean = statistics.fmean(sample)
    return mean, statistics.pstdev(sample) / mean


@pytest.mark.parametrize(
    ("text", "cv"),
    [("constant", 0.0), ("poisson", 1.0), ("gamma:1", 1.0), ("gamma:0.25", 2.0), ("gamma:4", 0.5)],
)
def test_gaps_have_the_mean_of_the_rate_and_the_spread_of_the_process(text, cv):
    arrival = parse_arrival(text)
    mean, measured_cv = _stats(arrival, rate=8.0)
    # 20 000 gaps: the sample mean is within a few percent of 1/rate, the CV within ~5 %
    assert mean == pytest.approx(1 / 8.0, rel=0.05)
    assert measured_cv == pytest.approx(cv, abs=0.06)
    assert arrival.cv == pytest.approx(cv)


def test_one_seed_gives_one_schedule_and_another_seed_another():
    a = list(islice(gaps(Arrival("poisson"), 5.0, 1), 50))
    assert a == list(islice(gaps(Arrival("poisson"), 5.0, 1), 50))
    assert a != list(islice(gaps(Arrival("poisson"), 5.0, 2), 50))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gamma:-1", "burstiness must be a positive number"),
        ("gamma:0", "burstiness must be a positive number"),
        ("gamma:x", "gamma needs a positive burstiness"),
        ("gamma", "gamma needs a positive burstiness"),
        ("uniform", "expected poisson, constant or gamma"),
        ("poisson:2", "poisson takes no parameter"),
    ],
)
def test_a_bad_arrival_is_one_line_naming_it(text, message):
    with pytest.raises(ArrivalError, match=message) as err:
        parse_arrival(text)
    assert "\n" not in str(err.value) and repr(text) in str(err.value)


def test_rate_and_concurrency_exclude_each_other():
    with pytest.raises(ArrivalError, match="--rate and --concurrency exclude each other"):
        LoadOptions(rate=4.0, concurrency=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0.0}, "must be positive"),
        ({"rate": -2.0}, "must be positive"),
        ({"concurrency": 0}, "at least 1"),
        ({"num_requests": 0}, "at least 1"),
        ({"rate": 1.0, "max_concurrency": 0}, "at least 1"),
    ],
)
def test_load_options_refuse_what_describes_no_run(kwargs, message):
    with pytest.raises(ArrivalError, match=message):
        LoadOptions(**kwargs)


def _parsed(**kwargs):
    base = {
        "rate": None,
        "arrival": None,
        "concurrency": None,
        "seed": 0,
        "num_requests": None,
        "max_concurrency": None,
        "pace_ms": 0.0,
    }
    return argparse.Namespace(**(base | kwargs))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arrival": "gamma:2"}, "--arrival shapes an open-loop schedule: give --rate too"),
        ({"rate": 2.0, "pace_ms": 100.0}, "--pace-ms and --rate exclude each other"),
        ({"max_concurrency": 8}, "--max-concurrency caps an open-loop run"),
        ({"rate": 2.0, "concurrency": 4}, "--rate and --concurrency exclude each other"),
    ],
)
def test_locust_options_that_contradict_each_other_are_refused(kwargs, message):
    with pytest.raises(ArrivalError, match=message):
        LoadOptions.from_parsed(_parsed(**kwargs))


def test_load_options_round_trip_through_the_locust_command_line():
    load = LoadOptions(
        rate=2.5, arrival=Arrival("gamma", 0.5), seed=3, num_requests=40, max_concurrency=9
    )
    args = load.locust_args()
    assert args[:6] == ["--rate", "2.5", "--arrival", "gamma:0.5", "--seed", "3"]
    assert args[6:8] == ["-u", "9"] and args[-2:] == ["--num-requests", "40"]
    assert load.config() == {
        "load_mode": "open",
        "arrival": "gamma:0.5",
        "rate": 2.5,
        "concurrency": None,
        "seed": 3,
        "num_requests": 40,
    }
    assert LoadOptions(concurrency=4).locust_args() == ["--concurrency", "4"]


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("a,b", float, "'a' is not a number"),
        ("1,2.5", int, "'2.5' is not a whole number"),
        ("4,2", float, "increasing order"),
        ("1,0", float, "must be positive"),
        (",", int, "at least one value"),
    ],
)
def test_a_bad_level_list_is_one_line_naming_the_item(text, kind, message):
    with pytest.raises(ArrivalError, match=message):
        parse_list("--rates", text, kind)


def test_level_lists_parse():
    assert parse_list("--rates", "0.5, 1,2", float) == [0.5, 1.0, 2.0]
    assert parse_list("--concurrency", "1,4,16", int) == [1, 4, 16]


def _sweep_args(**kwargs):
    base = {
        "rates": "",
        "concurrency": "",
        "host": "http://127.0.0.1:1",
        "run_time": 5,
        "arrival": "poisson",
        "seed": 0,
        "num_requests": None,
        "max_concurrency": None,
        "scenario": "v2-rest",
        "name": "",
    }
    return argparse.Namespace(**(base | kwargs))


@pytest.mark.parametrize(
    ("kwargs", "extra", "message"),
    [
        ({"rates": "1,2", "concurrency": "1,2"}, [], "give --rates or --concurrency"),
        ({}, [], "give --rates or --concurrency"),
        ({"rates": "a,b"}, [], "'a' is not a number"),
        ({"rates": "1,2", "arrival": "gamma:-1"}, [], "burstiness must be a positive"),
        ({"rates": "1,2", "host": ""}, [], "give --host"),
        ({"rates": "1", "scenario": "soap"}, [], "--scenario 'soap'"),
        ({"concurrency": "1,2", "max_concurrency": 4}, [], "caps a rate sweep"),
        ({"rates": "1,2"}, ["--model", "m", "-u", "3"], "-u after '--' clashes"),
    ],
)
def test_sweep_options_that_describe_no_sweep_are_one_line(kwargs, extra, message):
    with pytest.raises(ArrivalError, match=message) as err:
        sweep_plan(_sweep_args(**kwargs), extra)
    assert "\n" not in str(err.value)


def test_a_sweep_plan_gives_each_point_its_own_load():
    plan = sweep_plan(_sweep_args(rates="1,4", arrival="constant", seed=5), ["--model", "m"])
    assert plan.kind == "rate" and list(plan.levels) == [1.0, 4.0]
    assert plan.load_at(4.0) == LoadOptions(rate=4.0, arrival=Arrival("constant"), seed=5)
    plan = sweep_plan(_sweep_args(concurrency="2,8", num_requests=50), [])
    assert plan.load_at(8) == LoadOptions(concurrency=8, num_requests=50)
    assert plan.sweep_name == "sweep-concurrency-v2-rest"


# ---- the schedule ----------------------------------------------------------------------------


def test_an_open_loop_schedule_starts_at_once_and_stops_at_its_budget():
    load = LoadOptions(rate=10.0, arrival=Arrival("constant"), num_requests=4)
    schedule = Schedule(load, tolerance_ms=5.0, rate=10.0, budget=4)
    dues = list(schedule.due_times(100.0))
    assert dues == pytest.approx([100.0, 100.1, 100.2, 100.3])


def test_sends_count_lateness_and_senders_that_were_not_free():
    schedule = Schedule(LoadOptions(rate=10.0), tolerance_ms=5.0, rate=10.0, budget=None)
    assert schedule.sent(1.0, 1.001) == pytest.approx(1.0)  # 1 ms: within tolerance
    schedule.sent(2.0, 2.050, no_free_sender=True)  # 50 ms late, every sender busy
    schedule.sent(3.0, 3.020)  # 20 ms late, a sender was free: the client was slow
    s = schedule.stats
    assert (s.sends, s.late, s.waited_for_sender) == (3, 2, 1)
    assert s.max_late_ms == pytest.approx(50.0)
    assert s.scheduled_rate() == pytest.approx(1.0)
    assert s.achieved_rate() == pytest.approx(2 / 2.019)
    assert schedule.unsent([3.9, 3.999], now=4.0) == pytest.approx([100.0])
    note = late_note(LoadOptions(rate=10.0), s, users=8)
    assert "2 arrival(s) found all 8 senders busy" in note
    assert "1 send(s) left late from a busy load generator" in note


def test_a_closed_loop_budget_hands_out_its_tickets_once():
    schedule = Schedule(LoadOptions(concurrency=2, num_requests=3), 5.0, rate=None, budget=3)
    assert [schedule.claim() for _ in range(5)] == [True, True, True, False, False]
    schedule.completed = 3
    assert schedule.done


def test_worker_stats_merge_and_budgets_split_without_loss():
    a, b = ScheduleStats(sends=3, late=1, first_send=5.0, last_send=9.0), ScheduleStats()
    b.merge(a.drain())
    b.merge({"sends": 2, "first_send": 4.0, "last_send": 6.0, "unsent": 2})
    assert (b.sends, b.late, b.unsent, b.first_send, b.last_send) == (5, 1, 2, 4.0, 9.0)
    assert a.sends == 0
    assert [budget_share(10, 3, i) for i in range(3)] == [4, 3, 3]


# ---- knee and saturation on synthetic curves ------------------------------------------------


def _curve(loads, throughput, p50, client_bound=()):
    return [
        {
            "load": x,
            "offered_rate": x,
            "scheduled_rate": x,
            "throughput": t,
            "p50_ms": lat,
            "client_bound": x in client_bound,
        }
        for x, t, lat in zip(loads, throughput, p50, strict=True)
    ]


def test_an_open_loop_curve_saturates_where_it_stops_keeping_up():
    # a server with ~50 req/s of capacity
    points = _curve([10, 20, 40, 80], [10, 20, 39, 50], [10, 10.5, 14, 600])
    sat = saturation(points, "rate")
    assert sat["reached"] and sat["load"] == 80 and sat["max_throughput"] == 50
    assert "short by over 10 %" in sat["reason"]
    found = knee(points)
    # 20 -> 40: latency +33 % vs throughput +95 %: fine; 40 -> 80: +4186 % vs +28 %: the knee
    assert found["reached"] and found["load"] == 40


def test_a_closed_loop_curve_saturates_where_throughput_stops_growing():
    # Little's law: T = N / L; latency flat to 4 users, then the server is full at ~400 req/s
    # (throughput 100, 200, 381, 421, 400)
    loads = [1, 2, 4, 8, 16]
    p50 = [10.0, 10.0, 10.5, 19.0, 40.0]
    throughput = [n / (lat / 1000) for n, lat in zip(loads, p50, strict=True)]
    points = _curve(loads, throughput, p50)
    for p in points:
        p["offered_rate"] = p["scheduled_rate"] = None
    sat = saturation(points, "concurrency")
    assert sat["reached"] and sat["load"] == 16
    assert knee(points)["load"] == 4


def test_a_curve_that_keeps_scaling_has_neither():
    points = _curve([1, 2, 4], [1, 2, 4], [10, 10.4, 10.2])
    assert not saturation(points, "rate")["reached"]
    assert not knee(points)["reached"]
    assert basis(points) == "every point"


def test_jitter_on_a_flat_latency_is_no_knee():
    # throughput nearly flat and latency up 8 %: under the 10 % noise floor
    points = _curve([1, 2], [100, 101], [10, 10.8])
    assert not knee(points)["reached"]


def test_client_bound_points_are_left_out_while_two_others_remain():
    points = _curve([10, 20, 40], [10, 20, 5], [10, 10, 900], client_bound=(40,))
    assert not saturation(points, "rate")["reached"]
    assert "1 client-bound point(s) left out" in basis(points)
    every = _curve([10, 20], [10, 5], [10, 900], client_bound=(10, 20))
    assert saturation(every, "rate")["load"] == 20
    assert "indicative only" in basis(every)


def test_no_points_no_figures():
    assert saturation([], "rate")["max_throughput"] is None
    assert not knee([])["reached"]
    assert math.isclose(Arrival("gamma", 4).cv, 0.5)
