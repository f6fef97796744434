"""Shared pieces of servegate's own tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from servegate.fixtures.catalog import FixtureSet
from servegate.reference_servers.base import Launch, Ports, ServerSpec

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TINY_V2 = TESTS / "servers" / "tiny_v2.py"
#: the project's own state dir: the tests use (and on first use create) the same envs as the suite
STATE_DIR = ROOT / ".servegate"


def project_python(name: str) -> Path:
    """The interpreter of the project's env ``name`` ("mlserver", "kserve" or "fixtures"),
    created from its pinned requirements on first use (minutes), as the suite itself does."""
    from servegate.reference_servers.manager import prepare_env, prepare_fixtures_env

    def log(line: str) -> None:
        print(line, flush=True)

    if name == "fixtures":
        return prepare_fixtures_env(STATE_DIR, log)
    return prepare_env(name, STATE_DIR, log)


class TinyRuntime:
    """A Runtime whose server is tests/servers/tiny_v2.py, with behaviour switches."""

    name = "tiny"

    def __init__(self, *extra: str):
        self.extra = list(extra)

    def requirements_file(self) -> Path:
        return TESTS / "servers" / "requirements.txt"

    def supported_tasks(self) -> frozenset[str]:
        return frozenset({"text-classification"})

    def prepare(
        self, spec: ServerSpec, fixtures: FixtureSet, python: Path, ports: Ports, workdir: Path
    ) -> Launch:
        return Launch(
            argv=[str(python), str(TINY_V2), "--port", str(ports.http), *self.extra],
            env={},
            cwd=workdir,
            models={"tiny-text-classification": "text-classification"},
            implementation="tiny test server",
        )


@pytest.fixture
def empty_fixtures(tmp_path: Path) -> FixtureSet:
    return FixtureSet(root=tmp_path, key="test", models={})


@pytest.fixture
def python() -> Path:
    return Path(sys.executable)


@pytest.fixture
def tiny_server(tmp_path: Path, empty_fixtures: FixtureSet, python: Path) -> Iterator:
    """A running tiny V2 server started through the local backend."""
    from servegate.reference_servers.local import start_local

    server = start_local(
        TinyRuntime(),
        ServerSpec(runtime="tiny", ready_timeout=20),
        empty_fixtures,
        python,
        state_dir=tmp_path / "state",
        logs_dir=tmp_path / "logs",
    )
    yield server
    server.stop()


@contextmanager
def deviation_server_process(log_dir: Path) -> Iterator[tuple[str, str]]:
    """The deviation server (tests/deviation_server) as a child process, every switch off:
    yields (HTTP base URL, gRPC address). One process serves a whole kill-rate module; the
    switches are flipped through its control endpoint."""
    from servegate.reference_servers.local import free_port, small_server

    http_port, grpc_port = free_port(), free_port()
    argv = [sys.executable, "-m", "tests.deviation_server", "--http-port", str(http_port),
            "--grpc-port", str(grpc_port)]  # fmt: skip
    with small_server(argv, http_port, name="deviation server", cwd=ROOT,
                      log_path=log_dir / "deviation-server.log") as url:  # fmt: skip
        yield url, f"127.0.0.1:{grpc_port}"
