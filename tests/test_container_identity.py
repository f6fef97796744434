"""The same verdicts through containers as through local processes: the conformance suite runs
against a runtime on the local backend and on the testcontainers backend, and every check must
end the same way (passed, failed, expected deviation, unsupported, skipped) on both.

The container run uses servegate's image of the runtime, built from the same pinned
requirement files as the local env (``servegate image build``); without it, or without an
engine, the test skips saying why, and with ``CI=true`` it fails instead. Minutes per runtime:
marked slow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servegate.reference_servers.containers import docker_engine_problem
from servegate.report.compare import compare, identity_problems
from servegate.report.schema import read_report

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".servegate"

pytestmark = pytest.mark.slow


def _needs(problem: str | None) -> None:
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the identity test cannot run: {problem}")
    pytest.skip(problem)


def _image_problem(image: str) -> str | None:
    import docker

    client = docker.from_env()
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return f"no image {image} in the engine (servegate image build makes it)"
    finally:
        client.close()
    return None


def _run_suite(runtime: str, backend: str, reports: Path) -> tuple[float, str]:
    """One conformance run: its wall time and what it said of its server's start. The exit
    code is the verdict of the profiles, which the comparison judges, so only a run that wrote
    no report is an error here."""
    started = time.monotonic()
    run = subprocess.run(
        [
            sys.executable, "-m", "pytest", str(ROOT / "conformance"), "-p", "no:cacheprovider",
            "-q", f"--servers={runtime}", f"--backend={backend}", f"--state-dir={STATE_DIR}",
            f"--reports-dir={reports}", "--ready-timeout=600",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=3000,
    )  # fmt: skip
    wall = time.monotonic() - started
    report = reports / f"conformance-{runtime}.json"
    assert report.is_file(), f"{backend} run wrote no report:\n{(run.stdout + run.stderr)[-4000:]}"
    ready = [line for line in run.stdout.splitlines() if " ready in " in line]
    return wall, ready[0].strip() if ready else "no start-to-ready line"


@pytest.mark.parametrize("runtime", ["mlserver", "kserve"])
def test_local_and_container_runs_end_every_check_the_same_way(runtime: str, tmp_path: Path):
    _needs(docker_engine_problem(timeout=5))
    _needs(_image_problem(f"servegate/{runtime}:cpu"))
    runs = {b: _run_suite(runtime, b, tmp_path / b) for b in ("local", "testcontainers")}
    local = read_report(tmp_path / "local" / f"conformance-{runtime}.json")
    container = read_report(tmp_path / "testcontainers" / f"conformance-{runtime}.json")
    assert local.error is None, local.error
    assert container.error is None, container.error
    assert local.cases, "the local run ran no check"
    problems = identity_problems(compare(local, container), "local", "container")
    counts = ", ".join(f"{k} {v}" for k, v in local.counts.model_dump().items() if v)
    for backend, (wall, ready) in runs.items():
        print(f"{runtime} {backend}: run {wall:.0f} s; {ready}")
    print(f"{runtime}: {len(local.cases)} checks ({counts})")
    assert not problems, "\n".join(problems)
