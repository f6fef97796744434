"""The container backend against a real Docker engine: what it publishes, how it fails, and what
it leaves behind (nothing), also when its run is signalled or killed outright, and with two runs
at once.

The failure modes run on a tiny image made here from this machine's shell
(tests/container_test_image.py), so they need no registry and no runtime image and take
seconds. Without an engine these tests skip, saying why; with ``CI=true`` a missing engine
fails them instead, so a CI machine cannot pass by not running them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servegate.errors import ServerStartError
from servegate.reference_servers.base import ServerSpec
from servegate.reference_servers.container_owner import (
    LABEL_OWNER,
    LABEL_PID,
    LABEL_STAGED,
    current_owner,
)
from servegate.reference_servers.containers import (
    ContainerServer,
    ContainerSpec,
    docker_engine_problem,
    stage_repository,
    start_container,
)
from tests import container_test_image
from tests.test_containers import make_fake_fixtures

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CHILD = TESTS / "container_run_child.py"


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """A docker-py client of the engine; skip without one (fail with CI=true)."""
    problem = docker_engine_problem(timeout=5)
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the container tests cannot run: {problem}")
        pytest.skip(f"needs a Docker engine: {problem}")
    import docker

    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def images(engine: Any) -> dict[str, str]:
    return {mode: container_test_image.build(engine, mode) for mode in ("die", "hang")}


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _spec(image: str, ready_timeout: float = 120.0) -> ServerSpec:
    return ServerSpec(
        runtime="mlserver",
        models=("tiny-fill-mask",),
        options={"image": image},
        ready_timeout=ready_timeout,
    )


def _start(state_dir: Path, image: str, ready_timeout: float) -> ContainerServer:
    fixtures = make_fake_fixtures(state_dir / f"fake-fixtures-{uuid.uuid4().hex[:8]}")
    return start_container(
        "mlserver", _spec(image, ready_timeout), fixtures, state_dir=state_dir,
        logs_dir=state_dir / "logs", log=lambda _: None,
    )  # fmt: skip


def _containers_of(engine: Any, **labels: str) -> list[Any]:
    filters = [f"{k}={v}" for k, v in labels.items()]
    return list(engine.containers.list(all=True, filters={"label": filters}))


def _staged_folders(state_dir: Path) -> list[Path]:
    root = state_dir / "run" / "containers"
    return sorted(p for p in root.glob("*/*") if p.is_dir()) if root.is_dir() else []


# --- what the running container publishes ---------------------------------------------------


def test_ports_are_published_on_loopback_only_on_the_running_container(engine, images, tmp_path):
    """The container's own port bindings (what `docker port` shows), not the spec asked for."""
    fixtures = make_fake_fixtures(tmp_path / "fixtures")
    layout = stage_repository("mlserver", _spec(images["hang"]), fixtures, tmp_path / "repo")
    server = ContainerServer(
        "mlserver-cpu", ContainerSpec(layout, tmp_path / "repo"), tmp_path / "server.log"
    )
    server.start()
    try:
        container = server._container.get_wrapped_container()
        container.reload()
        assert container.status == "running"
        published = container.attrs["NetworkSettings"]["Ports"]
        assert set(published) == {"8080/tcp", "8081/tcp", "8082/tcp"}
        for port, bindings in published.items():
            assert bindings, f"{port} is not published"
            assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}, f"{port}: {bindings}"
        # and as `docker port` reports it
        cli = subprocess.run(
            ["docker", "port", container.id], capture_output=True, text=True, check=False
        )
        if cli.returncode == 0:
            lines = cli.stdout.split("\n")
            assert all(line.split(" -> ")[1].startswith("127.0.0.1:") for line in lines if line)
        assert server.host_port(8080) == int(published["8080/tcp"][0]["HostPort"])
    finally:
        server.stop()


# --- failing to start, in one clear line -----------------------------------------------------


def test_a_container_that_dies_while_starting_gives_its_exit_code_and_last_log_lines(
    engine, images, state_dir
):
    with pytest.raises(ServerStartError) as err:
        _start(state_dir, images["die"], ready_timeout=60)
    first, *rest = str(err.value).splitlines()
    assert f"exited with code {container_test_image.DIE_CODE} while starting" in first
    assert "servegate-mlserver-cpu-" in first  # the container, by name
    assert images["die"] in first
    assert container_test_image.DIE_LINE in rest
    assert "Traceback" not in str(err.value)
    assert _containers_of(engine, **{LABEL_OWNER: current_owner().run_id}) == []
    assert _staged_folders(state_dir) == []


def test_a_readiness_timeout_names_the_container_and_its_state(engine, images, state_dir):
    with pytest.raises(ServerStartError) as err:
        _start(state_dir, images["hang"], ready_timeout=3)
    first, *rest = str(err.value).splitlines()
    assert "was not ready within 3 s" in first
    assert "servegate-mlserver-cpu-" in first
    assert "status running" in first
    assert "health none" in first
    assert "waiting for: tiny-fill-mask" in first
    assert "test server: loading forever" in rest
    assert _containers_of(engine, **{LABEL_OWNER: current_owner().run_id}) == []
    assert _staged_folders(state_dir) == []


# --- cleanup without a reaper ----------------------------------------------------------------


def _child(state_dir: Path, image: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(state_dir), image, "600"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _running_container_of(engine: Any, child: subprocess.Popen[str], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _containers_of(engine, **{LABEL_PID: str(child.pid)})
        if found and found[0].status == "running":
            return found[0]
        if child.poll() is not None:
            pytest.fail(f"the run ended before its container ran:\n{child.stdout.read()}")  # type: ignore[union-attr]
        time.sleep(0.3)
    child.kill()
    pytest.fail("the run's container did not start in time")


def _gone(engine: Any, container: Any) -> bool:
    return not _containers_of(engine, **{LABEL_OWNER: container.labels[LABEL_OWNER]})


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signalled_run_removes_its_container_and_staged_files(engine, images, state_dir, sig):
    child = _child(state_dir, images["hang"])
    container = _running_container_of(engine, child)
    staged = Path(container.labels[LABEL_STAGED])
    assert staged.is_dir()
    child.send_signal(sig)
    child.wait(timeout=60)
    assert _gone(engine, container)
    assert not staged.exists()
    assert not (state_dir / "run" / "containers" / container.labels[LABEL_OWNER]).exists()


def test_after_sigkill_the_next_start_removes_what_the_killed_run_left(engine, images, state_dir):
    child = _child(state_dir, images["hang"])
    container = _running_container_of(engine, child)
    staged = Path(container.labels[LABEL_STAGED])
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    # no reaper: the container outlives its run until servegate starts again
    assert not _gone(engine, container)
    assert staged.is_dir()
    with pytest.raises(ServerStartError):
        _start(state_dir, images["die"], ready_timeout=60)
    assert _gone(engine, container)
    assert not staged.exists()
    assert _staged_folders(state_dir) == []


def test_two_runs_at_once_do_not_collide_and_clean_up_only_their_own(engine, images, state_dir):
    first, second = _child(state_dir, images["hang"]), _child(state_dir, images["hang"])
    try:
        a, b = _running_container_of(engine, first), _running_container_of(engine, second)
        assert a.name != b.name
        assert a.labels[LABEL_OWNER] != b.labels[LABEL_OWNER]
        assert a.labels[LABEL_STAGED] != b.labels[LABEL_STAGED]
        ports_a = {v[0]["HostPort"] for v in a.attrs["NetworkSettings"]["Ports"].values()}
        ports_b = {v[0]["HostPort"] for v in b.attrs["NetworkSettings"]["Ports"].values()}
        assert not ports_a & ports_b
        # a third run's start sweeps for leftovers: live runs' containers are not leftovers
        with pytest.raises(ServerStartError):
            _start(state_dir, images["die"], ready_timeout=60)
        assert not _gone(engine, a) and not _gone(engine, b)
        # one run ending removes its own, never the other's
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
        assert _gone(engine, a)
        assert not _gone(engine, b)
        b.reload()
        assert b.status == "running"
        assert Path(b.labels[LABEL_STAGED]).is_dir()
    finally:
        for child in (first, second):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                child.wait(timeout=60)
    assert _gone(engine, b)
