"""The Locust side of servegate's load tests: options, raw samples, preflight, results, gate.

Imported by every locustfile in loadtests/. It adds servegate's command-line options, keeps
every request's raw timing (workers ship theirs to the master), checks the target before the
first request, stops a run that only fails, writes ``reports/load-<name>.*`` when Locust quits
and sets the exit code from the thresholds file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.queue
from locust import User, events
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner

from servegate.errors import ServegateError
from servegate.load import arrivals, goodput, plots, results, telemetry, thresholds
from servegate.load.arrivals import ArrivalError, LoadOptions, Schedule, ScheduleStats
from servegate.load.metrics import Samples, StreamTiming
from servegate.load.scenario import ScenarioError, ScenarioOptions
from servegate.load.validity import PROBE_INTERVAL_S, Validity

log = logging.getLogger("servegate.load")

#: exit codes: 1 thresholds breached (Locust's own failure code too), 2 stopped early
EXIT_BREACHED = 1
EXIT_ABORTED = 2
ABORT_MESSAGE = "servegate_abort"
#: the key of a request event's context that carries the request's own figures (goodput)
REQUEST_RECORD = "servegate_request"
BUDGET_MESSAGE = "servegate_budget_done"
#: an open loop waits at most this long for its senders to be ready before its first send
SENDERS_READY_S = 10.0


class RunState:
    """What one Locust process knows about the run."""

    def __init__(self) -> None:
        self.samples = Samples()
        self.validity = Validity()
        self.started: float | None = None
        self.ended: float | None = None
        self.aborted: str | None = None
        self.consecutive_failures = 0
        self.any_success = False
        self.options: ScenarioOptions | None = None
        self.thresholds: thresholds.Thresholds | None = None
        #: per-request SLOs (--slo), in ms; None: no goodput
        self.slos: dict[str, float] | None = None
        self.scraper: telemetry.Scraper | None = None
        self.scrape_task: gevent.Greenlet | None = None
        self.written: dict[str, Path] = {}
        self.workers = 0
        self.load = LoadOptions()
        #: this process's send schedule; None where nothing is scheduled or counted
        self.schedule: Schedule | None = None
        #: the workers' schedule figures, on the master
        self.worker_schedule = ScheduleStats()
        self.workers_done = 0
        #: on the master: when the last worker's budget was answered (the run's end)
        self.budget_ended: float | None = None
        #: set once every user is spawned: an open-loop schedule starts then, not during the ramp
        self.spawned = gevent.event.Event()
        #: set when the run starts stopping: no request leaves after it
        self.stopping = gevent.event.Event()
        #: open loop: (due time, no sender was free) of each request that fell due, in order
        self.due: gevent.queue.Queue = gevent.queue.Queue()
        self.idle_senders = 0
        self.dispatcher: gevent.Greenlet | None = None


STATE = RunState()

#: extra blocks of the result document, by key: scenarios register a function that returns
#: the block (None to leave it out), e.g. the token workload of the streaming scenario
RESULT_SECTIONS: dict[str, Callable[[], dict[str, Any] | None]] = {}


# ---- options --------------------------------------------------------------------------------


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    # Locust's parser (not an argument group) knows include_in_web_ui
    group = parser
    group.add_argument(
        "--model",
        default="",
        include_in_web_ui=True,
        help="model to load-test (its name on the target)",
    )
    group.add_argument(
        "--task",
        default="",
        include_in_web_ui=True,
        help="HF task of the model, picks the stored payload, e.g. fill-mask; "
        "empty: a bare tensor for a null endpoint",
    )
    group.add_argument(
        "--payload",
        default="",
        include_in_web_ui=True,
        help="stored payload name (fixtures/payloads), overrides --task",
    )
    group.add_argument(
        "--dialect",
        default="mlserver",
        choices=["mlserver", "kserve"],
        help="V2 encoding of the task: MLServer's or KServe's",
    )
    group.add_argument(
        "--instances",
        type=int,
        default=0,
        include_in_web_ui=True,
        help="instances (rows) per request; 0 keeps the payload's",
    )
    group.add_argument(
        "--max-tokens",
        type=int,
        default=0,
        include_in_web_ui=True,
        help="max_tokens of generation requests; 0 keeps the payload's",
    )
    group.add_argument("--openai-base", default="/openai/v1", help="path of the OpenAI routes")
    group.add_argument(
        "--grpc-host",
        default="",
        help="V2 gRPC address host:port (default: --host's host, port 8081)",
    )
    group.add_argument(
        "--sg-header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable)",
    )
    group.add_argument(
        "--pace-ms",
        type=float,
        default=0.0,
        help="each user sends one request every this many ms (open-loop pacing; "
        "late sends are counted); 0: back to back",
    )
    group.add_argument(
        "--thresholds",
        default="",
        help="thresholds file (the format servegate gate reads too): a breach exits 1",
    )
    group.add_argument(
        "--slo",
        type=goodput.slo_argument,
        default={},
        metavar="LIST",
        help="per-request SLOs for the goodput, e.g. ttft<300ms,itl<40ms,e2e<2s "
        "(metrics ttft, itl, tpot, e2e; a request is good when every one holds)",
    )
    group.add_argument(
        "--metrics-url",
        default="",
        help="the target's Prometheus /metrics to scrape during the run; default: tried at "
        "the host's port, 8082 and 8002; 'off': none",
    )
    group.add_argument(
        "--metrics-interval",
        type=float,
        default=1.0,
        help="seconds between two scrapes of --metrics-url",
    )
    group.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME",
        help="another metric to keep from /metrics (a gauge as it is, a counter as a rate, "
        "a histogram as its mean); repeatable",
    )
    group.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop: requests per second over the whole run, whatever the answers; "
        f"-u caps the requests in flight (default {arrivals.DEFAULT_OPEN_LOOP_USERS})",
    )
    group.add_argument(
        "--arrival",
        default=None,
        help="with --rate: gaps between sends, poisson (default), constant or "
        "gamma:<burstiness> (shape; 1 = poisson, <1 burstier)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="with --rate: seed of the arrival schedule (same seed, same send times)",
    )
    group.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="closed loop: this many users, each sending back to back (sets -u and -r)",
    )
    group.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="with --rate: the senders, i.e. the most requests in flight (same as -u)",
    )
    group.add_argument(
        "--num-requests",
        type=int,
        default=None,
        help="stop once this many requests have been answered (-t still caps the run)",
    )
    group.add_argument("--report-name", default="", help="results go to reports/load-<name>.*")
    group.add_argument(
        "--reports-dir", default="reports", help="folder of the results (default reports)"
    )
    group.add_argument(
        "--skip-preflight",
        action="store_true",
        default=False,
        help="do not check the target before the run",
    )
    group.add_argument(
        "--abort-after-failures",
        type=int,
        default=50,
        help="stop when this many requests fail in a row before any succeeds, "
        "or 10x that many in a row at any time (0: never)",
    )
    group.add_argument(
        "--lag-tolerance-ms",
        type=float,
        default=5.0,
        help="a send or event-loop probe later than this marks the run invalid",
    )


# ---- helpers for the user classes ----------------------------------------------------------


def abort(environment: Environment, message: str) -> None:
    """Stop the whole run with ``message``: exit code 2, no results as if it had run."""
    if STATE.aborted:
        return
    STATE.aborted = message
    log.error("servegate: stopping the run: %s", message)
    environment.process_exit_code = EXIT_ABORTED
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.send_message(ABORT_MESSAGE, {"message": message})
        return
    if runner is None:
        return
    headless = bool(getattr(environment.parsed_options, "headless", True))
    gevent.spawn(runner.quit if headless else runner.stop)


class ProtocolUser(User):
    """Base of the servegate users: options, request events with raw timing, the abort guard.

    Subclasses set ``protocol`` and implement ``preflight`` (a class method that raises
    ServegateError with a clear message when the target cannot serve this scenario).
    """

    abstract = True
    protocol = "?"

    def __init__(self, environment: Environment):
        super().__init__(environment)
        self.opts = options(environment)
        self._next_send: float | None = None
        self._holds_ticket = False

    def on_start(self) -> None:
        if STATE.aborted:
            # the runner is stopping; wait for it quietly instead of raising in every user
            gevent.sleep(60)
            raise StopUser()

    @staticmethod
    def clock() -> float:
        return time.perf_counter()

    @staticmethod
    def elapsed_ms(started: float) -> float:
        return (time.perf_counter() - started) * 1000.0

    @classmethod
    def preflight(cls, environment: Environment, opts: ScenarioOptions) -> None:
        """Raise ServegateError when the target cannot serve this scenario."""

    def pace(self) -> None:
        """Wait until this user's next request may leave: the shared open-loop schedule
        (--rate), the request budget (--num-requests) or --pace-ms; late departures counted.

        Every scenario calls it before each request, so it is also where the previous request
        of this user is known to be answered.
        """
        schedule = _schedule(self.environment)
        if schedule is None:
            self._pace_per_user()
            return
        if self._holds_ticket:
            self._holds_ticket = False
            schedule.completed += 1
            if schedule.done:
                _budget_done(self.environment)
        if schedule.rate is None:
            if STATE.stopping.is_set() or not schedule.claim():
                # the budget is spent: idle until the run stops
                STATE.stopping.wait()
                raise StopUser()
            self._holds_ticket = True
            now = time.perf_counter()
            schedule.sent(now, now)
            self._pace_per_user()
            return
        STATE.idle_senders += 1
        try:
            item = STATE.due.get()
        finally:
            STATE.idle_senders -= 1
        if item is None or STATE.stopping.is_set():
            raise StopUser()
        due, no_free_sender = item
        self._holds_ticket = True
        STATE.validity.send(schedule.sent(due, time.perf_counter(), no_free_sender))

    def _pace_per_user(self) -> None:
        """With --pace-ms, wait for this user's next send time and count late departures."""
        interval = self.opts.pace_ms / 1000.0
        if interval <= 0:
            return
        now = time.perf_counter()
        if self._next_send is None:
            self._next_send = now
        if now < self._next_send:
            gevent.sleep(self._next_send - now)
            now = time.perf_counter()
        STATE.validity.send((now - self._next_send) * 1000.0)
        self._next_send += interval

    def fire(
        self,
        name: str,
        ms: float,
        length: int = 0,
        error: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        """One request event: Locust's statistics and servegate's raw samples alike."""
        self.environment.events.request.fire(
            request_type=self.protocol,
            name=name,
            response_time=ms,
            response_length=length,
            exception=ServegateError(error) if error else None,
            context=context or {},
        )

    def fire_stream(self, name: str, timing: StreamTiming, error: str | None = None) -> None:
        """The request (E2E) and its TTFT, ITL and TPOT, each as its own request event."""
        e2e = timing.e2e_ms if timing.e2e_ms is not None else 0.0
        if error is not None:
            self.fire(name, e2e, error=error)
            return
        record = goodput.request_record(
            True,
            e2e,
            ttft_ms=timing.ttft_ms,
            itl_ms=timing.itl_ms,
            tpot_ms=timing.tpot_ms,
            streamed=True,
        )
        self.fire(name, e2e, length=timing.output_tokens, context={REQUEST_RECORD: record})
        STATE.samples.output_tokens += timing.output_tokens
        if timing.ttft_ms is not None:
            self.fire(results.stream_metric_name(name, "ttft"), timing.ttft_ms)
        for gap in timing.itl_ms:
            self.fire(results.stream_metric_name(name, "itl"), gap)
        if timing.tpot_ms is not None:
            self.fire(results.stream_metric_name(name, "tpot"), timing.tpot_ms)
        if timing.e2e_ms is not None:
            self.fire(results.stream_metric_name(name, "e2e"), timing.e2e_ms)


def options(environment: Environment) -> ScenarioOptions:
    if STATE.options is None:
        STATE.options = ScenarioOptions.from_parsed(environment.parsed_options)
    return STATE.options


def _schedule(environment: Environment) -> Schedule | None:
    """This process's schedule, made on first use (a worker knows its share only once the
    master has sent it the run's options)."""
    load = STATE.load
    if load.rate is None and load.num_requests is None:
        return None
    if STATE.schedule is None:
        runner = environment.runner
        workers, index = 1, 0
        if isinstance(runner, WorkerRunner):
            workers = int(getattr(environment.parsed_options, "expect_workers", 1) or 1)
            index = int(getattr(runner, "worker_index", 0) or 0)
        rate = load.rate / workers if load.rate is not None else None
        budget = (
            arrivals.budget_share(load.num_requests, workers, index)
            if load.num_requests is not None
            else None
        )
        # each worker its own stream of gaps: the same seed would send in lockstep
        seeded = LoadOptions(
            rate=load.rate,
            arrival=load.arrival,
            seed=load.seed + 7919 * index,
            num_requests=load.num_requests,
        )
        STATE.schedule = Schedule(
            seeded,
            STATE.validity.tolerance_ms,
            rate,
            budget,
            wall_offset=time.time() - time.perf_counter(),
        )
        if workers > 1:
            log.info(
                "servegate: worker %d of %d sends %s req/s, %s requests",
                index,
                workers,
                f"{rate:g}" if rate else "as answered",
                budget if budget is not None else "unbounded",
            )
    return STATE.schedule


def _dispatch(environment: Environment) -> None:
    """Open loop: hand each request to a free sender at its due time (one per process)."""
    schedule = _schedule(environment)
    if schedule is None:
        return
    # every sender at its first pace() first (on_start builds clients and bodies): else the
    # first arrivals would find no sender free and be late for a reason that is not the target
    runner = environment.runner
    ready_by = time.perf_counter() + SENDERS_READY_S
    while runner is not None and STATE.idle_senders < runner.user_count:
        if time.perf_counter() > ready_by:
            break
        gevent.sleep(0.005)
    start = time.perf_counter()
    # the run is measured from the first due request: nothing was sent during the ramp
    STATE.started = time.time()
    for due in schedule.due_times(start):
        wait = due - time.perf_counter()
        if wait > 0:
            gevent.sleep(wait)
        if STATE.stopping.is_set():
            return
        STATE.due.put((due, STATE.idle_senders - STATE.due.qsize() <= 0))


def _budget_done(environment: Environment) -> None:
    """Every request of the budget is answered: end the run as -t would."""
    runner = environment.runner
    log.info("servegate: %s requests answered, stopping", STATE.load.num_requests)
    if isinstance(runner, WorkerRunner):
        runner.send_message(BUDGET_MESSAGE, {})
        return
    _stop_run(environment)


def _stop_run(environment: Environment) -> None:
    runner = environment.runner
    if runner is None:
        return
    headless = bool(getattr(environment.parsed_options, "headless", True))
    gevent.spawn(runner.quit if headless else runner.stop)


def _worker_budget_done(environment: Environment) -> None:
    STATE.workers_done += 1
    runner = environment.runner
    if isinstance(runner, MasterRunner) and STATE.workers_done >= max(runner.worker_count, 1):
        # the run ends now; quit once every worker's last samples have come with its periodic
        # report (a quitting worker's final report can miss the master)
        STATE.budget_ended = time.time()
        gevent.spawn_later(WORKER_REPORT_INTERVAL + 1.0, _stop_run, environment)


def _apply_load(environment: Environment, parsed: Any) -> None:
    """Parse the load options and set Locust's user count from them (before it starts)."""
    STATE.load = load = LoadOptions.from_parsed(parsed)
    if isinstance(environment.runner, WorkerRunner):
        return
    users = getattr(parsed, "num_users", None)
    if load.concurrency is not None:
        if users is not None and users != load.concurrency:
            raise ArrivalError(
                f"-u {users} and --concurrency {load.concurrency} disagree: give one"
            )
        parsed.num_users = load.concurrency
        parsed.spawn_rate = getattr(parsed, "spawn_rate", None) or load.concurrency
    elif load.rate is not None:
        if load.max_concurrency is not None:
            if users is not None and users != load.max_concurrency:
                raise ArrivalError(
                    f"-u {users} and --max-concurrency {load.max_concurrency} disagree: give one"
                )
            users = load.max_concurrency
        parsed.num_users = users or arrivals.DEFAULT_OPEN_LOOP_USERS
        # every sender at once: a slow ramp would make the first arrivals late
        parsed.spawn_rate = getattr(parsed, "spawn_rate", None) or parsed.num_users


def report_name(environment: Environment) -> str:
    name = getattr(environment.parsed_options, "report_name", "")
    if name:
        return str(name)
    names = sorted(u.__name__ for u in environment.user_classes)
    return "-".join(n.removesuffix("User").lower() for n in names) or "run"


# ---- events ---------------------------------------------------------------------------------


_ENV: dict[str, Environment] = {}


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    STATE.__init__()  # type: ignore[misc]  # a fresh state per Environment (tests make several)
    _ENV["environment"] = environment
    parsed = environment.parsed_options
    if parsed is None:
        return
    STATE.validity.tolerance_ms = float(getattr(parsed, "lag_tolerance_ms", 5.0))
    slos = getattr(parsed, "slo", None)
    # parsed by the option's type; a dict unless set programmatically as text
    STATE.slos = (goodput.parse_slos(slos) if isinstance(slos, str) and slos else slos) or None
    try:
        _apply_load(environment, parsed)
    except ArrivalError as exc:
        log.error("servegate: %s", exc)
        environment.process_exit_code = EXIT_ABORTED
        STATE.aborted = str(exc)
    if getattr(parsed, "tags", None):
        # tags select scenarios: a user class left with no task is dropped, not started empty
        kept = [u for u in environment.user_classes if u.tasks]
        environment.user_classes = kept
    if isinstance(environment.runner, WorkerRunner):
        return
    # gevent's loop reads the clock only when it runs: after slow imports on a busy machine its
    # time can be seconds old, and Locust's --run-time timer, set from it next, then fires at
    # once and the run ends before it starts (workers keep theirs: their report timing is
    # Locust's own business)
    gevent.get_hub().loop.update_now()
    try:
        options(environment)
        if getattr(parsed, "thresholds", ""):
            STATE.thresholds = thresholds.load_thresholds(parsed.thresholds)
    except ServegateError as exc:
        log.error("servegate: %s", exc)
        environment.process_exit_code = EXIT_ABORTED
        STATE.aborted = str(exc)
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(
            ABORT_MESSAGE, lambda msg, **_: abort(environment, msg.data["message"])
        )
        environment.runner.register_message(
            BUDGET_MESSAGE, lambda msg, **_: _worker_budget_done(environment)
        )


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    STATE.started = time.time()
    STATE.ended = None
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        gevent.spawn(_probe_loop_lag)
    if isinstance(runner, WorkerRunner):
        return
    if isinstance(runner, MasterRunner):
        STATE.workers = runner.worker_count
    if STATE.scrape_task is not None:
        # a new run from the web UI: the last run's scraper would keep writing into this one
        STATE.scrape_task.kill(block=False)
    STATE.scrape_task = gevent.spawn(_scrape_metrics, environment)
    if STATE.aborted:
        abort_now = STATE.aborted
        STATE.aborted = None
        abort(environment, abort_now)
        return
    if getattr(environment.parsed_options, "skip_preflight", False):
        return
    opts = options(environment)
    for user_class in environment.user_classes:
        check = getattr(user_class, "preflight", None)
        if check is None:
            continue
        try:
            check(environment, opts)
        except (ServegateError, ScenarioError) as exc:
            abort(environment, f"{user_class.__name__}: {exc}")
            return
    log.info(
        "servegate: preflight passed for %s",
        ", ".join(u.__name__ for u in environment.user_classes),
    )


def _scrape_metrics(environment: Environment) -> None:
    """Find the target's /metrics and scrape it until the run ends (master or local runner)."""
    parsed = environment.parsed_options
    names = [n.strip() for item in getattr(parsed, "metric", []) or [] for n in item.split(",")]
    scraper = telemetry.Scraper.find(
        environment.host or "",
        str(getattr(parsed, "metrics_url", "") or ""),
        interval_s=max(float(getattr(parsed, "metrics_interval", 1.0) or 1.0), 0.1),
        extra=[n for n in names if n],
    )
    STATE.scraper = scraper
    if scraper.status != "scraped":
        log.info("servegate: server telemetry %s: %s", scraper.status, scraper.note)
        return
    log.info("servegate: scraping %s every %g s", scraper.url, scraper.interval_s)
    scraper.run(until=lambda: STATE.ended is not None or bool(STATE.aborted), sleep=gevent.sleep)


def _probe_loop_lag() -> None:
    """Measure how late the gevent loop wakes a 10 ms sleeper, for as long as the run lasts
    (an open loop's from its first send: nothing is timed during its ramp)."""
    if STATE.load.rate is not None:
        STATE.spawned.wait()
    while STATE.ended is None and not STATE.aborted:
        before = time.perf_counter()
        gevent.sleep(PROBE_INTERVAL_S)
        late = (time.perf_counter() - before - PROBE_INTERVAL_S) * 1000.0
        STATE.validity.lag(max(late, 0.0))


@events.request.add_listener
def _on_request(
    request_type: str,
    name: str,
    response_time: float,
    exception: Any = None,
    context: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    if STATE.slos is not None and results.split_metric_name(name)[1] is None:
        record = (context or {}).get(REQUEST_RECORD) or goodput.request_record(
            exception is None, response_time
        )
        STATE.samples.per_request.append(record)
    if exception is not None:
        STATE.samples.fail(name, str(exception))
        STATE.consecutive_failures += 1
        environment = _ENV.get("environment")
        if environment is not None:
            _check_failures(environment, name, str(exception))
    else:
        STATE.samples.add(name, response_time)
        STATE.consecutive_failures = 0
        STATE.any_success = True


def _check_failures(environment: Environment, name: str, error: str) -> None:
    limit = int(getattr(environment.parsed_options, "abort_after_failures", 50) or 0)
    if not limit:
        return
    n = STATE.consecutive_failures
    if (not STATE.any_success and n >= limit) or n >= 10 * limit:
        abort(environment, f"the last {n} requests all failed; last error on {name!r}: {error}")


@events.cpu_warning.add_listener
def _on_cpu_warning(environment: Environment, cpu_usage: float, **_: Any) -> None:
    STATE.validity.cpu(cpu_usage)


@events.report_to_master.add_listener
def _to_master(client_id: str, data: dict, **_: Any) -> None:
    data["servegate"] = {
        "samples": STATE.samples.drain(),
        "validity": STATE.validity.drain(),
        "schedule": STATE.schedule.stats.drain() if STATE.schedule else None,
    }


@events.worker_report.add_listener
def _from_worker(client_id: str, data: dict, **_: Any) -> None:
    part = data.get("servegate")
    if part:
        STATE.samples.merge(part["samples"])
        STATE.validity.merge(part["validity"])
        if part.get("schedule"):
            STATE.worker_schedule.merge(part["schedule"])


@events.spawning_complete.add_listener
def _on_spawned(**_: Any) -> None:
    STATE.spawned.set()
    environment = _ENV.get("environment")
    if (
        STATE.load.rate is not None
        and STATE.dispatcher is None
        and environment is not None
        and not isinstance(environment.runner, MasterRunner)
        and not STATE.aborted
    ):
        STATE.dispatcher = gevent.spawn(_dispatch, environment)


@events.test_stopping.add_listener
def _on_stopping(environment: Environment, **_: Any) -> None:
    """No request leaves once the run stops; due requests nobody sent count as late."""
    STATE.stopping.set()
    if STATE.dispatcher is not None:
        STATE.dispatcher.kill(block=False)
    schedule = STATE.schedule
    dues: list[float] = []
    while not STATE.due.empty():
        item = STATE.due.get_nowait()
        if item is not None:
            dues.append(item[0])
    if schedule is not None and schedule.rate is not None:
        for late_ms in schedule.unsent(dues, time.perf_counter()):
            STATE.validity.send(late_ms)
    # wake every idle sender so that it stops at once instead of holding up the stop
    for _sender in range(STATE.idle_senders):
        STATE.due.put(None)


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    STATE.ended = STATE.budget_ended or time.time()


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or STATE.started is None:
        return
    runner = environment.runner
    if runner is not None and getattr(runner, "worker_cpu_warning_emitted", False):
        STATE.validity.worker_cpu_warning = True
    if STATE.aborted:
        log.error("servegate: run stopped early: %s (no results written)", STATE.aborted)
        environment.process_exit_code = EXIT_ABORTED
        return
    try:
        write_results(environment)
    except ServegateError as exc:
        log.error("servegate: %s", exc)
        environment.process_exit_code = EXIT_ABORTED


def _telemetry_report(started: float) -> dict[str, Any]:
    if STATE.scraper is None:
        return {"status": "absent", "note": "the scraper had not found the endpoint yet"}
    return STATE.scraper.report(started)


def _load_config(parsed: Any) -> dict[str, Any]:
    """How load was offered, and the schedule's offered vs achieved rate."""
    load = STATE.load
    stats = STATE.schedule.stats if STATE.schedule is not None else STATE.worker_schedule
    users = getattr(parsed, "num_users", None)
    config = load.config()
    config["max_concurrency"] = users if load.rate is not None else None
    schedule = arrivals.schedule_report(load, stats, users)
    config["achieved_rate"] = schedule["achieved_rate"]
    config["schedule"] = schedule
    STATE.validity.late_note = arrivals.late_note(load, stats, users)
    return config


def write_results(environment: Environment) -> dict[str, Any]:
    """Write reports/load-<name>.* and apply the thresholds; returns the document."""
    parsed = environment.parsed_options
    opts = options(environment)
    name = report_name(environment)
    ended = STATE.ended or time.time()
    started = STATE.started or ended
    target = {
        "host": environment.host or getattr(parsed, "host", None),
        "grpc_host": opts.grpc_host,
        "model": opts.model,
        "task": opts.task,
        "payload": opts.payload,
        "scenarios": sorted(u.__name__ for u in environment.user_classes),
        "protocols": sorted({getattr(u, "protocol", "?") for u in environment.user_classes}),
    }
    config = {
        "users": getattr(parsed, "num_users", None),
        "spawn_rate": getattr(parsed, "spawn_rate", None),
        "run_time_s": getattr(parsed, "run_time", None),
        "instances": opts.instances,
        "max_tokens": opts.max_tokens,
        "pace_ms": opts.pace_ms,
        "processes": getattr(parsed, "processes", None),
        "workers": STATE.workers,
        "tags": getattr(parsed, "tags", None),
        "slo": goodput.describe(STATE.slos) if STATE.slos else None,
        **_load_config(parsed),
    }
    document = results.build_run_result(
        name,
        STATE.samples,
        started=started,
        ended=ended,
        target=target,
        config=config,
        validity=STATE.validity.report(),
        slos=STATE.slos,
        telemetry=_telemetry_report(started),
    )
    for key, section in RESULT_SECTIONS.items():
        block = section()
        if block is not None:
            document[key] = block
    if STATE.thresholds is not None:
        breaches = thresholds.evaluate(document, STATE.thresholds)
        document["thresholds"] = thresholds.result_block(STATE.thresholds, breaches)
        for breach in breaches:
            log.error("servegate: threshold breached: %s", breach.message)
        if breaches:
            environment.process_exit_code = EXIT_BREACHED
        else:
            log.info("servegate: thresholds passed (%s)", STATE.thresholds.source)
    reports_dir = Path(getattr(parsed, "reports_dir", "reports") or "reports")
    STATE.written = results.write_run(reports_dir, document, STATE.samples)
    try:
        plots.run_plot(STATE.written["png"], document, STATE.samples)
    except ImportError:
        log.warning("servegate: matplotlib is not installed; no plot written")
    if not document["validity"]["valid"]:
        log.warning(
            "servegate: run marked INVALID: %s",
            "; ".join(f["detail"] for f in document["validity"]["flags"]),
        )
    log.info("servegate: results in %s", STATE.written["json"])
    return document
