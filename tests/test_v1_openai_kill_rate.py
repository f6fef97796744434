"""Proof that the KServe V1 and OpenAI checks can fail.

One deviation server process serves the whole module. With no switch on, the V1 + OpenAI suite
passes against it; then each V1 and OpenAI switch is turned on in turn (at run time, through
the control endpoint) and the checks it names are run: at least one must fail. The kill rate
(switches caught / switches) is printed and must be at least 95 %. Each legal variation (an
unusual answer the specs allow: SSE comments, UTF-8 split across chunks...) is turned on in turn
too, and then no check may fail. The suite also runs with ``--openai-base /v1`` against the
OpenAI routes mounted there.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from servegate.reference_servers.local import free_port
from tests.conftest import deviation_server_process
from tests.deviation_server import app as deviation_app
from tests.deviation_server import openai as openai_routes
from tests.deviation_server.switches import Switch, switches_of

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT / "conformance"
SUITE = sorted(
    str(p)
    for p in [
        CONFORMANCE / "test_v1_protocol.py",
        CONFORMANCE / "test_health.py",
        *CONFORMANCE.glob("test_openai_*.py"),
    ]
)
#: the features a server can only claim, never discovered by design (the API promises no
#: determinism; hardening is good practice a user asks for); everything else comes from
#: discovery, as it would for a user's server
FEATURES = "openai-deterministic,hardening"
KILL_RATE_GOAL = 0.95


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One deviation server process for the module; switches are flipped at run time."""
    with deviation_server_process(tmp_path_factory.mktemp("deviation-server")) as (url, _):
        yield url


def _set(url: str, names: list[str]) -> None:
    reply = httpx.put(url + deviation_app.CONTROL_PATH, json={"on": names}, timeout=5.0)
    assert reply.status_code == 200, reply.text


class _Outcomes:
    """Collects what a nested pytest run did, per check (name with parameter ids)."""

    def __init__(self) -> None:
        self.failed: set[str] = set()
        self.passed: set[str] = set()
        self.skipped: set[str] = set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = report.nodeid.split("::")[-1]
        if report.failed:
            self.failed.add(name)
        elif report.skipped:
            self.skipped.add(name)
        elif report.when == "call":
            self.passed.add(name)


def _run(tmp: Path, url: str, files: list[str], *args: str) -> _Outcomes:
    """Run conformance checks in this process (about 0.4 s a run: no new interpreter, no
    assertion rewriting, no Hypothesis plugin; the conformance modules stay imported)."""
    empty = tmp / "no-deviations.yaml"
    empty.write_text("deviations: []\n")
    outcomes = _Outcomes()
    pytest.main(
        [
            *files,
            "-qq",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            "--assert=plain",
            f"--target={url}",
            f"--reports-dir={tmp / 'reports'}",
            f"--deviations={empty}",
            *args,
        ],
        plugins=[outcomes],
    )
    return outcomes


def _catches(check: str, failed: set[str]) -> bool:
    name, _, pattern = check.partition("[")
    for test in failed:
        base, _, params = test.partition("[")
        if base == name and (
            not pattern or fnmatch.fnmatchcase(params.rstrip("]"), pattern.rstrip("]"))
        ):
            return True
    return False


def _modules_of(functions: tuple[str, ...]) -> list[str]:
    """The suite files that define these check functions (fewer files, faster collection)."""
    found = []
    for path in SUITE:
        module = importlib.import_module(f"conformance.{Path(path).stem}")
        if any(hasattr(module, f) for f in functions):
            found.append(path)
    return found


def test_v1_openai_suite_passes_with_no_switch_on(tmp_path: Path, server: str) -> None:
    _set(server, [])
    outcomes = _run(tmp_path, server, SUITE, f"--features={FEATURES}")
    assert not outcomes.failed, sorted(outcomes.failed)
    assert len(outcomes.passed) >= 120
    # only the gRPC health check lacks what it needs (no --grpc-target): nothing else skipped
    assert len(outcomes.skipped) <= 1, sorted(outcomes.skipped)


def test_every_v1_openai_switch_makes_its_check_fail(tmp_path: Path, server: str) -> None:
    deviation_app.load_all()
    switches: list[Switch] = switches_of("v1") + switches_of("openai")
    assert len(switches) >= 60
    missed: list[str] = []
    started = time.monotonic()
    try:
        for sw in switches:
            _set(server, [sw.name])
            failed = _run(
                tmp_path,
                server,
                _modules_of(sw.check_functions),
                f"--features={FEATURES}",
                "-x",
                "-k",
                " or ".join(sw.check_functions),
            ).failed
            if not any(_catches(check, failed) for check in sw.checks):
                missed.append(f"{sw.name}: {sw.description} (failed: {sorted(failed) or 'none'})")
    finally:
        _set(server, [])
    caught = len(switches) - len(missed)
    rate = caught / len(switches)
    print(
        f"\nV1 + OpenAI kill rate: {caught}/{len(switches)} switches = {rate:.1%} "
        f"({time.monotonic() - started:.1f} s)"
    )
    for line in missed:
        print(f"  not caught: {line}")
    assert rate >= KILL_RATE_GOAL, "\n".join(missed)


def _report(tmp: Path) -> dict:
    return json.loads(next((tmp / "reports").glob("conformance-*.json")).read_text())


def test_every_v1_openai_legal_variation_passes(tmp_path: Path, server: str) -> None:
    """Under each legal variation no check fails and every check that passed without it still
    runs and passes (a variation must not turn checks into skips)."""
    deviation_app.load_all()
    variations: list[Switch] = switches_of("v1", legal=True) + switches_of("openai", legal=True)
    # a chat-only server is judged with discovery alone (its completions checks must not run)
    variations = [v for v in variations if v.name != openai_routes.L_CHAT_ONLY]
    assert len(variations) >= 8
    _set(server, [])
    for name in ["baseline", *(v.name for v in variations)]:
        (tmp_path / name).mkdir()
    baseline = _run(tmp_path / "baseline", server, SUITE, f"--features={FEATURES}").passed
    broken: list[str] = []
    try:
        for variation in variations:
            _set(server, [variation.name])
            outcomes = _run(tmp_path / variation.name, server, SUITE, f"--features={FEATURES}")
            lost = baseline - outcomes.passed
            if outcomes.failed or lost:
                broken.append(
                    f"{variation.name}: failed {sorted(outcomes.failed)}, "
                    f"no longer passing {sorted(lost - outcomes.failed)}"
                )
    finally:
        _set(server, [])
    print(f"\nV1 + OpenAI legal variations: {len(variations) - len(broken)}/{len(variations)} pass")
    assert not broken, "\n".join(broken)


def _openai_profile(tmp: Path, url: str, switch_name: str) -> tuple[dict, _Outcomes]:
    """The openai profile's result with one switch on, features found by discovery alone."""
    _set(url, [switch_name])
    try:
        mine = [p for p in SUITE if "test_openai_" in p]
        outcomes = _run(tmp, url, mine, "--profile=openai")
    finally:
        _set(url, [])
    profiles = {p["name"]: p for p in _report(tmp)["profiles"]}
    return profiles["openai"], outcomes


def test_a_chat_only_server_passes_the_openai_profile(tmp_path: Path, server: str) -> None:
    """Completions is legacy: a server without the route conforms to the openai profile."""
    profile, outcomes = _openai_profile(tmp_path, server, openai_routes.L_CHAT_ONLY)
    assert not outcomes.failed, sorted(outcomes.failed)
    assert profile["result"] == "success", profile
    assert "openai-completions" in profile["unsupported_extended"], profile
    assert any(name.startswith("test_chat_") for name in outcomes.passed), sorted(outcomes.passed)


def test_a_route_that_answers_5xx_fails_the_openai_profile(tmp_path: Path, server: str) -> None:
    """A chat route that answers 500 to everything is a broken feature, never a missing one:
    its checks run and fail, and so does the openai profile."""
    profile, outcomes = _openai_profile(tmp_path, server, openai_routes.CHAT_500)
    assert any(name.startswith("test_chat_") for name in outcomes.failed), sorted(outcomes.failed)
    assert profile["result"] == "failure", profile


def test_a_route_answering_404_for_a_missing_model_is_still_checked(
    tmp_path: Path, server: str
) -> None:
    """A route that answers 404 when no served model is named exists: discovery alone still
    finds it, and its checks run and pass."""
    profile, outcomes = _openai_profile(tmp_path, server, openai_routes.L_MISSING_MODEL_404)
    assert not outcomes.failed, sorted(outcomes.failed)
    assert "openai-chat" in profile["supported_extended"], profile
    assert any(name.startswith("test_chat_") for name in outcomes.passed), sorted(outcomes.passed)


def test_openai_checks_follow_the_openai_base_option(tmp_path: Path) -> None:
    """--openai-base /v1 aims the OpenAI checks at /v1 (a server without KServe's prefix)."""
    port = free_port()
    config = uvicorn.Config(
        Starlette(routes=openai_routes.routes("/v1")),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not web.started:  # uvicorn says when it listens
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        outcomes = _run(
            tmp_path,
            url,
            [
                str(CONFORMANCE / "test_openai_models.py"),
                str(CONFORMANCE / "test_openai_completions.py"),
            ],
            "--openai-base=/v1",
            "--features=openai-deterministic",
        )
    finally:
        web.should_exit = True
        thread.join(timeout=10)
    assert not outcomes.failed, sorted(outcomes.failed)
    assert len(outcomes.passed) >= 20


def test_v1_openai_checks_are_unsupported_on_a_v2_only_server(tmp_path: Path, tiny_server):
    """A server without V1 and OpenAI routes (like MLServer) gets every V1 and OpenAI check
    reported as unsupported: none failed, none silently skipped."""
    url = tiny_server.target.http_url
    mine = [p for p in SUITE if not p.endswith("test_health.py")]
    outcomes = _run(tmp_path, url, mine)
    assert not outcomes.failed, sorted(outcomes.failed)
    report = _report(tmp_path)
    # hardening checks are not a claim about the server: without --profile hardening they
    # are skipped as not requested; every other check is unsupported, with its evidence
    hardening = [c for c in report["cases"] if "hardening" in c["features"]]
    others = [c for c in report["cases"] if "hardening" not in c["features"]]
    assert {c["outcome"] for c in hardening} <= {"skipped"}, hardening
    assert all("not requested" in c["message"] for c in hardening), hardening
    assert {c["outcome"] for c in others} == {"unsupported"}
    assert all(c["unsupported"]["features"] for c in others)
    assert report["counts"]["unsupported"] == len(others) >= 80
