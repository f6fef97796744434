"""The pytest plugin: options, targets (a URL, or reference servers it starts), the protocol
clients as fixtures, features, and the conformance report at the end of the run."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servegate.deviations import NOT_APPLICABLE, Deviation, Verdict, judge, load_deviations
from servegate.discovery import discover
from servegate.entry.options import RunOptions, build_run_options, parse_headers
from servegate.errors import ServegateError
from servegate.exit_codes import SERVER_START_FAILED, TARGET_UNREACHABLE, exit_code_for
from servegate.protocols.openai import OpenAIClient
from servegate.protocols.v1 import V1Client
from servegate.protocols.v2_grpc import V2GrpcClient
from servegate.protocols.v2_rest import V2RestClient
from servegate.redaction import redact_text, secrets_from
from servegate.reference_servers.registry import RUNTIMES
from servegate.report.conformance import TargetRun, check_id, make_case, write_reports
from servegate.report.gate import gate_profiles
from servegate.report.schema import Case, TargetError
from servegate.targets import ModelInfo, Target
from servegate.unsupported import unsupported

STATE = pytest.StashKey["SuiteState"]()
DEFAULT_DEVIATIONS = Path(__file__).resolve().parents[2] / "conformance" / "deviations"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("servegate", "servegate conformance")
    group.addoption(
        "--target",
        default=None,
        metavar="URL",
        help="HTTP base URL of a running server to check; without it the suite "
        "starts its reference servers",
    )
    group.addoption(
        "--grpc-target",
        default=None,
        metavar="HOST:PORT",
        help="gRPC address of the same server (V2 gRPC checks)",
    )
    group.addoption(
        "--model",
        action="append",
        default=[],
        metavar="NAME[=TASK]",
        help="a served model to test, asked about directly (repeatable), with its "
        "HuggingFace task if known; models are also discovered (repository index, model "
        "lists), and a task comes from the model's metadata or a name ending in -TASK",
    )
    group.addoption(
        "--openai-base",
        default="/openai/v1",
        metavar="PATH",
        help="path of the OpenAI routes (KServe: /openai/v1; others: /v1)",
    )
    group.addoption(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra header for every request, e.g. an Authorization bearer token (gRPC: call "
        "metadata, the name lowercased)",
    )
    group.addoption(
        "--insecure",
        action="store_true",
        help="do not verify TLS certificates; gRPC (TLS when --target is https) cannot skip "
        "verification, so it trusts the self-signed certificate the server presents: "
        "encrypted, not authenticated (a CA-issued one needs --ca-bundle)",
    )
    group.addoption(
        "--ca-bundle",
        default=None,
        metavar="PATH",
        help="CA bundle for https and for gRPC over TLS (TLS when --target is https)",
    )
    group.addoption(
        "--request-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="timeout of each request in seconds (default 60)",
    )
    group.addoption(
        "--servers",
        default="mlserver,kserve",
        metavar="LIST",
        help="reference servers to start without --target: a list of "
        f"{', '.join(RUNTIMES)}, or all (default mlserver,kserve)",
    )
    group.addoption(
        "--backend",
        default="local",
        choices=["local", "testcontainers", "kind"],
        help="how to start reference servers (default local processes)",
    )
    group.addoption(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="device of the reference servers (default cpu)",
    )
    group.addoption(
        "--state-dir",
        default=".servegate",
        metavar="DIR",
        help="where server envs, fixtures and run files live (default .servegate)",
    )
    group.addoption(
        "--reports-dir",
        default="reports",
        metavar="DIR",
        help="where reports and server logs go (default reports)",
    )
    group.addoption(
        "--ready-timeout",
        type=float,
        default=240.0,
        metavar="S",
        help="seconds a reference server may take to become ready (default 240)",
    )
    group.addoption(
        "--features",
        default=None,
        metavar="LIST",
        help="features to treat as supported beyond those discovered",
    )
    group.addoption(
        "--exempt-features",
        default=None,
        metavar="LIST",
        help="features to treat as unsupported even when discovered",
    )
    group.addoption(
        "--profile",
        default=None,
        metavar="LIST",
        help="profiles the target must conform to (oip-rest, oip-grpc, kserve-v1, openai, "
        "hardening): their core features count as supported, and the run fails unless each "
        "succeeds; hardening checks run only when the hardening profile (or feature) is asked",
    )
    group.addoption(
        "--image",
        default=None,
        metavar="NAME",
        help="the image (or build) under test, recorded in the reports",
    )
    group.addoption(
        "--deviations",
        action="append",
        default=None,
        metavar="FILE",
        help="expected-deviations file (repeatable); default: every file in "
        "conformance/deviations/",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "features(*names): features of the target this check needs")
    config.addinivalue_line("markers", "rule(text): the rule of the protocol a check states")
    opt = config.getoption
    try:
        options = build_run_options(
            target=opt("--target"),
            grpc_target=opt("--grpc-target"),
            models=opt("--model"),
            openai_base=opt("--openai-base"),
            headers=opt("--header"),
            insecure=opt("--insecure"),
            ca_bundle=opt("--ca-bundle"),
            request_timeout=opt("--request-timeout"),
            servers=opt("--servers"),
            backend=opt("--backend"),
            device=opt("--device"),
            state_dir=opt("--state-dir"),
            reports_dir=opt("--reports-dir"),
            ready_timeout=opt("--ready-timeout"),
            features=opt("--features"),
            exempt_features=opt("--exempt-features"),
            profiles=opt("--profile"),
            image=opt("--image"),
        )
        deviation_files = [Path(p) for p in opt("--deviations") or []] or sorted(
            DEFAULT_DEVIATIONS.glob("*.yaml")
        )
        for path in deviation_files:
            if not path.is_file():
                raise ServegateError(f"--deviations {path}: no such file")
        deviations = load_deviations(deviation_files)
    except ServegateError as exc:
        raise pytest.UsageError(str(exc)) from None
    state = SuiteState(config, options, deviations)
    # the entry layer is where the environment is read: credential values never to be written
    state.secrets = secrets_from(parse_headers(opt("--header")), os.environ)
    config.stash[STATE] = state
    _stop_cleanly_on_sigterm()


def _stop_cleanly_on_sigterm() -> None:
    """A CI runner cancels a job with SIGTERM: treat it like Ctrl-C, so servers are stopped
    and the reports of what ran are still written."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class SuiteState:
    """Targets of this run, the servers it started, and the results for the report."""

    def __init__(self, config: pytest.Config, options: RunOptions, deviations: list[Deviation]):
        self.config = config
        self.options = options
        self.deviations = deviations
        self.targets: dict[str, Target] = {}
        self.results: list[tuple[str, Case]] = []
        #: targets that could not be tested, and why (the report still says so)
        self.errors: dict[str, TargetError] = {}
        self.secrets: tuple[str, ...] = ()
        self.started = time.time()

    @property
    def slots(self) -> list[str]:
        if self.options.target is not None:
            return [self.options.target.name]
        return list(self.options.servers)

    def say(self, message: str) -> None:
        capman = self.config.pluginmanager.getplugin("capturemanager")
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        if capman is not None and reporter is not None:
            with capman.global_and_fixture_disabled():
                reporter.write_line(f"[servegate] {message}")
        else:
            print(f"[servegate] {message}")

    def open_target(self, slot: str) -> tuple[Target, Any]:
        """The Target for a slot, and the server to stop afterwards (None for a URL)."""
        opts = self.options
        if opts.target is not None:
            target = discover(opts.target, opts.model_tasks)
            served = ", ".join(
                f"{m.name} ({m.task or 'task unknown'})" for m in target.models.values()
            )
            self.say(
                f"target {target.http_url}: {target.implementation}; models: {served or 'none'}"
            )
            self._say_broken(target)
            return target, None
        from servegate.reference_servers.manager import start_reference

        started = time.monotonic()
        server = start_reference(
            slot,
            state_dir=opts.state_dir,
            logs_dir=opts.reports_dir / "logs",
            device=opts.device,
            backend=opts.backend,
            ready_timeout=opts.ready_timeout,
            log=self.say,
        )
        self.say(f"{slot} ready in {time.monotonic() - started:.1f} s")
        try:
            target = discover(server.target, opts.model_tasks)
        except BaseException:
            server.stop()
            raise
        self._say_broken(target)
        return target, server

    def _say_broken(self, target: Target) -> None:
        """Name the features found present but broken (a probe got a 5xx): their checks run
        and fail, which a reader of the log should not have to guess."""
        for decision in target.discovery:
            if decision.broken:
                seen = decision.evidence[0].line() if decision.evidence else ""
                self.say(f"{decision.feature}: present but broken ({seen[:160]})")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames:
        slots = metafunc.config.stash[STATE].slots
        metafunc.parametrize("target", slots, indirect=True, scope="session", ids=slots)


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The server under test (one per --target, or per reference server)."""
    state: SuiteState = request.config.stash[STATE]
    slot: str = request.param
    try:
        resolved, server = state.open_target(slot)
    except ServegateError as exc:
        starting = state.options.target is None
        code = exit_code_for(exc, starting_server=starting)
        kind = {TARGET_UNREACHABLE: "unreachable", SERVER_START_FAILED: "server-start"}.get(
            code, "unusable"
        )
        state.errors[slot] = TargetError(kind=kind, message=str(exc), exit_code=code)
        pytest.exit(f"servegate: {exc}", returncode=code)
    state.targets[slot] = resolved
    try:
        yield resolved
    finally:
        if server is not None:
            state.say(f"stopping {slot}")
            server.stop()


def required_features(item: pytest.Item) -> tuple[str, ...]:
    """Every feature a check needs: the union of its ``features`` markers (module, class,
    function and parameter alike), in the order first named."""
    names: dict[str, None] = {}
    for marker in item.iter_markers("features"):
        names.update(dict.fromkeys(marker.args))
    return tuple(names)


def effective_features(config: pytest.Config, target: Target) -> frozenset[str]:
    opts = config.stash[STATE].options
    return (target.features | opts.extra_features) - opts.exempt_features


@pytest.fixture(autouse=True)
def _servegate_features(request: pytest.FixtureRequest) -> None:
    """Turn a check whose features the target lacks into an *unsupported* result."""
    needed = required_features(request.node)
    if not needed or "target" not in request.fixturenames:
        return
    target: Target = request.getfixturevalue("target")
    have = effective_features(request.config, target)
    missing = [f for f in needed if f not in have]
    if HARDENING in missing:
        # good practice beyond the specs is checked on request only: not a claim about the
        # target, so an ordinary skip, not "unsupported"
        pytest.skip(f"not requested (--profile {HARDENING})")
    if missing:
        unsupported(target, missing)


#: the feature of checks of good practice beyond the specs (see features.py)
HARDENING = "hardening"
#: the HuggingFace V2 encodings a model may speak (ModelInfo.encodings)
ENCODINGS = ("hf-v2-kwargs", "hf-v2-input0")


@pytest.fixture
def task_model(request: pytest.FixtureRequest, target: Target, task: str) -> ModelInfo:
    """The target's model for the test's ``task`` (one that speaks the HuggingFace V2 encoding
    the check needs, where discovery knows a model's encoding); unsupported when none."""
    models = target.models_for_task(task)
    if not models:
        unsupported(target, f"task-{task}", f"serves no {task} model")
    needed = [e for e in ENCODINGS if e in required_features(request.node)]
    for encoding in needed:
        speaking = [m for m in models if encoding in m.encodings]
        # a model whose encoding discovery could not tell may still speak it (declared with
        # --features): it is tried rather than called unsupported
        unknown = [m for m in models if not m.encodings]
        if not speaking and not unknown:
            unsupported(
                target,
                encoding,
                f"no {task} model speaks {encoding} (models: "
                + ", ".join(f"{m.name} speaks {', '.join(sorted(m.encodings))}" for m in models)
                + ")",
            )
        models = speaking or unknown
    return models[0]


@pytest.fixture(scope="session")
def v2(target: Target) -> Iterator[V2RestClient]:
    client = V2RestClient(target.http_url, target.connection)
    yield client
    client.close()


@pytest.fixture(scope="session")
def v2_grpc(target: Target) -> Iterator[V2GrpcClient]:
    if not target.grpc_address:
        unsupported(target, "v2-grpc", "has no gRPC address (--grpc-target)")
    client = V2GrpcClient.for_target(target)  # its headers and TLS settings too
    yield client
    client.close()


@pytest.fixture(scope="session")
def v1(target: Target) -> Iterator[V1Client]:
    client = V1Client(target.http_url, target.connection)
    yield client
    client.close()


@pytest.fixture(scope="session")
def openai_client(target: Target) -> Iterator[OpenAIClient]:
    client = OpenAIClient(target.http_url, target.connection, target.openai_base)
    yield client
    client.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    callspec = getattr(item, "callspec", None)
    if callspec is None or "target" not in callspec.params:
        return report
    state: SuiteState = item.config.stash[STATE]
    target = getattr(item, "funcargs", {}).get("target")
    verdict = NOT_APPLICABLE
    if report.when == "call" and isinstance(target, Target):
        slot = str(callspec.params["target"])
        verdict = _apply_deviation(report, call, state.deviations, item.name, target, slot)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        needed = required_features(item)
        rule = item.get_closest_marker("rule")
        state.results.append(
            (
                str(callspec.params["target"]),
                make_case(
                    report,
                    check=check_id(item.nodeid, callspec.params),
                    task=callspec.params.get("task"),
                    features=needed,
                    rule=(rule.args[0] if rule else (item.obj.__doc__ or "").strip().split("\n")[0])
                    if hasattr(item, "obj")
                    else "",
                    exc=call.excinfo.value if call.excinfo is not None else None,
                    secrets=state.secrets,
                    deviation=verdict,
                ),
            )
        )
    _redact_report(report, state.secrets)
    return report


def _redact_report(report: pytest.TestReport, secrets: tuple[str, ...]) -> None:
    """Keep secrets out of the terminal and JUnit XML: a failure text or captured output that
    holds one is replaced by its redacted text."""
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        text = str(report.longrepr)
        redacted = redact_text(text, secrets)
        if redacted != text:
            report.longrepr = redacted
    report.sections = [(title, redact_text(content, secrets)) for title, content in report.sections]


def _apply_deviation(
    report: pytest.TestReport,
    call: pytest.CallInfo[None],
    deviations: list[Deviation],
    name: str,
    target: Target,
    slot: str,
) -> Verdict:
    """Strict expected deviations, matched to the failure: a listed check that fails with the
    listed rule violation is expected; one that fails otherwise stays failed and says why the
    entry did not match; one that passes fails with "now passes". Skipped checks are not
    judged, so an unsupported check never "now passes"."""
    if report.skipped:
        return NOT_APPLICABLE
    failure: BaseException | None = None
    if report.failed:
        # a failed call without an exception is still a failure, never a pass
        failure = call.excinfo.value if call.excinfo is not None else RuntimeError(report.longrepr)
    verdict = judge(deviations, name, target, failure, slot=slot)
    if verdict.kind == "expected":
        report.outcome = "skipped"
        report.wasxfail = verdict.message  # type: ignore[attr-defined]
    elif verdict.kind == "now-passes":
        report.outcome = "failed"
        report.longrepr = verdict.message
    elif verdict.kind == "unmatched":
        report.sections.append(("servegate expected deviations", verdict.message))
    return verdict


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state: SuiteState | None = session.config.stash.get(STATE, None)
    if state is None or not (state.results or state.errors):
        return
    runs = []
    for slot in dict.fromkeys([*(slot for slot, _ in state.results), *state.errors]):
        target = state.targets.get(slot)
        runs.append(
            TargetRun(
                slot=slot,
                target=target,
                cases=[case for s, case in state.results if s == slot],
                features=effective_features(session.config, target) if target else None,
                error=state.errors.get(slot),
            )
        )
    reports, paths = write_reports(
        state.options.reports_dir,
        runs,
        started=state.started,
        image=state.options.image,
        requested_profiles=state.options.profiles,
        secrets=state.secrets,
    )
    reporter = session.config.pluginmanager.getplugin("terminalreporter")
    say = reporter.write_line if reporter is not None else print
    for path in paths:
        say(f"[servegate] report: {Path(path)}")
    if state.options.profiles:
        # --profile makes the run a gate: a requested profile that is not a success fails the
        # run even when no check failed (a core feature missing, checks skipped, none run)
        findings = gate_profiles(reports, state.options.profiles)
        failures = [f for f in findings if not f.ok]
        for finding in findings:
            say(f"[servegate] {'ok' if finding.ok else 'FAIL'}: {finding.line()}")
        if failures and session.exitstatus == pytest.ExitCode.OK:
            say(f"[servegate] profile gate failed: {failures[0].line()}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
