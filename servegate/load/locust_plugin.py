"""The Locust side of servegate's load tests: options, raw samples, preflight, results, gate.

Imported by every locustfile in loadtests/. It adds servegate's command-line options, keeps
every request's raw timing (workers ship theirs to the master), checks the target before the
first request, stops a run that only fails, writes ``reports/load-<name>.*`` when Locust quits
and sets the exit code from the thresholds file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import gevent
from locust import User, events
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from servegate.errors import ServegateError
from servegate.load import plots, results, thresholds
from servegate.load.metrics import Samples, StreamTiming
from servegate.load.scenario import ScenarioError, ScenarioOptions
from servegate.load.validity import PROBE_INTERVAL_S, Validity

log = logging.getLogger("servegate.load")

#: exit codes: 1 thresholds breached (Locust's own failure code too), 2 stopped early
EXIT_BREACHED = 1
EXIT_ABORTED = 2
ABORT_MESSAGE = "servegate_abort"


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
        self.thresholds: dict[str, Any] | None = None
        self.written: dict[str, Path] = {}
        self.workers = 0


STATE = RunState()


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
    group.add_argument("--thresholds", default="", help="thresholds file: a breach exits 1")
    group.add_argument("--report-name", default="", help="results go to reports/load-<name>.*")
    group.add_argument("--reports-dir", default="reports")
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

    def fire(self, name: str, ms: float, length: int = 0, error: str | None = None) -> None:
        """One request event: Locust's statistics and servegate's raw samples alike."""
        self.environment.events.request.fire(
            request_type=self.protocol,
            name=name,
            response_time=ms,
            response_length=length,
            exception=ServegateError(error) if error else None,
            context={},
        )

    def fire_stream(self, name: str, timing: StreamTiming, error: str | None = None) -> None:
        """The request (E2E) and its TTFT, ITL and TPOT, each as its own request event."""
        e2e = timing.e2e_ms if timing.e2e_ms is not None else 0.0
        if error is not None:
            self.fire(name, e2e, error=error)
            return
        self.fire(name, e2e, length=timing.output_tokens)
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
    # The event loop's clock was last read before Locust's start-up (imports, the locustfile)
    # blocked it; a --run-time timer armed on that stale clock fires seconds early.
    gevent.get_hub().loop.update_now()
    STATE.__init__()  # type: ignore[misc]  # a fresh state per Environment (tests make several)
    _ENV["environment"] = environment
    parsed = environment.parsed_options
    if parsed is None:
        return
    STATE.validity.tolerance_ms = float(getattr(parsed, "lag_tolerance_ms", 5.0))
    if getattr(parsed, "tags", None):
        # tags select scenarios: a user class left with no task is dropped, not started empty
        kept = [u for u in environment.user_classes if u.tasks]
        environment.user_classes = kept
    if isinstance(environment.runner, WorkerRunner):
        return
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


def _probe_loop_lag() -> None:
    """Measure how late the gevent loop wakes a 10 ms sleeper, for as long as the run lasts."""
    while STATE.ended is None and not STATE.aborted:
        before = time.perf_counter()
        gevent.sleep(PROBE_INTERVAL_S)
        late = (time.perf_counter() - before - PROBE_INTERVAL_S) * 1000.0
        STATE.validity.lag(max(late, 0.0))


@events.request.add_listener
def _on_request(
    request_type: str, name: str, response_time: float, exception: Any = None, **_: Any
) -> None:
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
    data["servegate"] = {"samples": STATE.samples.drain(), "validity": STATE.validity.drain()}


@events.worker_report.add_listener
def _from_worker(client_id: str, data: dict, **_: Any) -> None:
    part = data.get("servegate")
    if part:
        STATE.samples.merge(part["samples"])
        STATE.validity.merge(part["validity"])


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    STATE.ended = time.time()


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
    }
    document = results.build_run_result(
        name,
        STATE.samples,
        started=started,
        ended=ended,
        target=target,
        config=config,
        validity=STATE.validity.report(),
    )
    if STATE.thresholds is not None:
        breaches = thresholds.evaluate(document, STATE.thresholds)
        document["thresholds"] = thresholds.result_block(STATE.thresholds, breaches)
        for breach in breaches:
            log.error("servegate: threshold breached: %s", breach.message)
        if breaches:
            environment.process_exit_code = EXIT_BREACHED
        else:
            log.info("servegate: thresholds passed (%s)", STATE.thresholds["file"])
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
