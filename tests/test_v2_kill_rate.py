"""Proof that the V2 conformance checks can fail: the deviation server passes the whole suite
with no switch on, and with each switch on, a check the switch names fails.

The runs request the hardening profile, so its checks run and must be caught too; a switch that
breaks only good practice in a way the protocol allows names the core checks that must still
pass while it is on (``passes``), which proves the core accepts every legal answer.

One server process serves every run; switches flip through its control endpoint. Each switch
run is an in-process pytest run of only the checks that switch names (``-k``).
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

# Imported here so that the in-process runs below find them loaded (pytester restores
# sys.modules after each run; a module first imported inside a run is imported again by
# the next one).
import hypothesis  # noqa: F401
import pytest
import tritonclient.grpc  # noqa: F401
import tritonclient.http  # noqa: F401

from tests.conftest import deviation_server_process
from tests.deviation_server import app, v2_metadata
from tests.deviation_server.switches import REGISTRY, Switch

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT / "conformance"
CONTROL = app.CONTROL_PATH
#: the suite's V2 modules (other protocols' checks are unsupported on this server anyway)
V2_MODULES = [
    "test_health.py",
    "test_task_semantics.py",
    *sorted(p.name for p in CONFORMANCE.glob("test_v2_*.py")),
]
GOAL = 0.95


@pytest.fixture(scope="module")
def deviation_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The deviation server as a child process: (http base URL, gRPC address)."""
    with deviation_server_process(tmp_path_factory.mktemp("deviation-server")) as server:
        yield server


def _set_switches(url: str, names: list[str]) -> None:
    reply = httpx.put(url + CONTROL, json={"on": names}, timeout=5)
    assert reply.status_code == 200, reply.text
    assert reply.json()["on"] == sorted(names)


def _run(pytester: pytest.Pytester, server: tuple[str, str], *args: str) -> pytest.HookRecorder:
    url, grpc_address = server
    empty = pytester.path / "no-deviations.yaml"
    if not empty.exists():
        empty.write_text("deviations: []\n")
    return pytester.inline_run(
        *[str(CONFORMANCE / m) for m in V2_MODULES],
        "-p",
        "no:cacheprovider",
        "-q",
        f"--target={url}",
        f"--grpc-target={grpc_address}",
        f"--deviations={empty}",
        # the hardening checks run too: each has a switch that must make it fail
        "--profile=hardening",
        f"--reports-dir={pytester.path / 'reports'}",
        "--tb=no",
        "-qq",
        *args,
    )


def _failed_names(recorder: pytest.HookRecorder) -> list[str]:
    return [
        r.nodeid.rsplit("::", 1)[-1]
        for r in recorder.getreports("pytest_runtest_logreport")
        if r.failed
    ]


def _passed_names(recorder: pytest.HookRecorder) -> list[str]:
    return [
        r.nodeid.rsplit("::", 1)[-1]
        for r in recorder.getreports("pytest_runtest_logreport")
        if r.when == "call" and r.passed
    ]


def caught_by(
    switch: Switch, failed: list[str], checks: tuple[str, ...] | None = None
) -> list[str]:
    """The failed checks that are among those ``switch`` names (or among ``checks``)."""
    hits = []
    for name in failed:
        function, _, rest = name.partition("[")
        param = rest.rstrip("]")
        for check in switch.checks if checks is None else checks:
            want, _, pattern = check.partition("[")
            pattern = pattern.rstrip("]")
            if function == want and (
                not pattern
                or fnmatch.fnmatchcase(param, pattern)
                or fnmatch.fnmatchcase(param, "*-" + pattern)
            ):
                hits.append(name)
                break
    return hits


def _v2_switches() -> list[Switch]:
    # the metadata-driven switches are proven below, with the hardening checks they need
    return [s for s in REGISTRY.values() if s.area.startswith("v2") and s.area != v2_metadata.AREA]


def test_registry_names_real_checks() -> None:
    """Every check a V2 switch names is a test function of the V2 conformance modules."""
    app.load_all()
    source = "\n".join((CONFORMANCE / m).read_text() for m in V2_MODULES)
    unknown = sorted(
        {
            f
            for s in _v2_switches()
            for f in (*s.check_functions, *s.pass_functions)
            if f"def {f}(" not in source
        }
    )
    assert not unknown, f"switches name checks that do not exist: {unknown}"


def test_every_v2_check_fails_under_its_switch(
    pytester: pytest.Pytester, deviation_server: tuple[str, str]
) -> None:
    """With no switch on the V2 suite passes; each switch makes a check it names fail; the
    kill rate (switches caught / switches) reaches the goal."""
    app.load_all()
    url, _ = deviation_server
    _set_switches(url, [])
    clean = _run(pytester, deviation_server)
    failed = _failed_names(clean)
    passed, skipped, _ = clean.listoutcomes()
    assert not failed, f"the deviation server fails checks with no switch on: {failed}"
    assert len(passed) > 100, f"only {len(passed)} checks passed with no switch on"

    v2_switches = _v2_switches()
    survivors: dict[str, list[str]] = {}
    #: legal answers the core failed: switch -> the checks named in ``passes`` that failed
    legal_failed: dict[str, list[str]] = {}
    started = time.monotonic()
    for switch in v2_switches:
        _set_switches(url, [switch.name])
        recorder = _run(
            pytester,
            deviation_server,
            "-k",
            " or ".join(dict.fromkeys((*switch.check_functions, *switch.pass_functions))),
        )
        failed = _failed_names(recorder)
        if not caught_by(switch, failed):
            survivors[switch.name] = failed
        if switch.passes:
            wrongly_failed = caught_by(switch, failed, switch.passes)
            if wrongly_failed or not caught_by(switch, _passed_names(recorder), switch.passes):
                legal_failed[switch.name] = wrongly_failed or ["none of them ran"]
    _set_switches(url, [])
    caught = len(v2_switches) - len(survivors)
    rate = caught / len(v2_switches)
    summary = {
        "switches": len(v2_switches),
        "caught": caught,
        "kill_rate": round(rate, 4),
        "survivors": survivors,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(
        f"\nV2 kill rate: {caught}/{len(v2_switches)} = {rate:.1%} "
        f"({summary['seconds']} s)\n{json.dumps(survivors, indent=1)}"
    )
    assert rate >= GOAL, f"kill rate {rate:.1%} below {GOAL:.0%}: {json.dumps(summary)}"
    assert not legal_failed, (
        f"the core fails answers the protocol allows: {json.dumps(legal_failed, indent=1)}"
    )


# --- the metadata-driven checks (conformance/test_v2_metadata.py) ----------------------------

METADATA_CHECKS = "test_metadata_"


def test_metadata_switches_name_metadata_checks() -> None:
    """Every check a metadata switch names is a check of conformance/test_v2_metadata.py."""
    app.load_all()
    source = (CONFORMANCE / "test_v2_metadata.py").read_text()
    switches = [s for s in REGISTRY.values() if s.area == v2_metadata.AREA]
    assert switches
    unknown = sorted(
        {
            f
            for s in switches
            for f in s.check_functions
            if not f.startswith(METADATA_CHECKS) or f"def {f}(" not in source
        }
    )
    assert not unknown, f"metadata switches name checks that do not exist: {unknown}"


def test_every_metadata_check_fails_under_its_switch(
    pytester: pytest.Pytester, deviation_server: tuple[str, str]
) -> None:
    """With no switch on, every metadata-driven check passes (hardening included) over every
    model it can build a request for; each metadata switch makes a check it names fail."""
    app.load_all()
    url, _ = deviation_server
    _set_switches(url, [])
    hardening = "--features=hardening"
    clean = _run(pytester, deviation_server, hardening, "-k", METADATA_CHECKS)
    passed, skipped, failed = clean.listoutcomes()
    assert not failed, f"metadata checks fail with no switch on: {_failed_names(clean)}"
    assert not skipped, f"metadata checks unsupported on the deviation server: {skipped}"
    assert len(passed) >= 18, f"only {len(passed)} metadata checks ran"

    switches = [s for s in REGISTRY.values() if s.area == v2_metadata.AREA]
    survivors: dict[str, list[str]] = {}
    for switch in switches:
        _set_switches(url, [switch.name])
        recorder = _run(
            pytester, deviation_server, hardening, "-k", " or ".join(switch.check_functions)
        )
        failed_names = _failed_names(recorder)
        if not caught_by(switch, failed_names):
            survivors[switch.name] = failed_names
    _set_switches(url, [])
    print(f"\nmetadata kill rate: {len(switches) - len(survivors)}/{len(switches)}")
    assert not survivors, f"switches no metadata check caught: {json.dumps(survivors)}"
