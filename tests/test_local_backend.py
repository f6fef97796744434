"""The local-process backend: readiness, its deadline, clear errors, nothing left behind."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from servegate.errors import ServegateError, ServerStartError
from servegate.fixtures.catalog import FixtureSet
from servegate.protocols.v2_rest import V2RestClient
from servegate.reference_servers.base import ServerSpec
from servegate.reference_servers.local import start_local

from .conftest import TinyRuntime


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _start(
    tmp_path: Path, fixtures: FixtureSet, python: Path, *extra: str, timeout: float = 20, **kw
):
    return start_local(
        TinyRuntime(*extra),
        ServerSpec(runtime="tiny", ready_timeout=timeout),
        fixtures,
        python,
        state_dir=tmp_path / "state",
        logs_dir=tmp_path / "logs",
        **kw,
    )


def test_start_waits_until_ready_and_stop_leaves_nothing(tmp_path, empty_fixtures, python):
    started = time.monotonic()
    server = _start(tmp_path, empty_fixtures, python, "--ready-after", "1.5")
    assert time.monotonic() - started >= 1.5
    client = V2RestClient(server.target.http_url)
    assert client.ready().status == 200
    client.close()
    assert server.target.models["tiny-text-classification"].task == "text-classification"
    pid = server.proc.pid
    server.stop()
    assert not _alive(pid)
    server.stop()  # idempotent


def test_readiness_deadline_gives_clear_error_and_kills_server(tmp_path, empty_fixtures, python):
    with pytest.raises(ServerStartError) as err:
        _start(tmp_path, empty_fixtures, python, "--never-listen", timeout=2)
    message = str(err.value)
    assert "was not ready within 2 s" in message
    assert "tiny_v2 starting" in message  # the log's last lines are quoted
    # no process of the failed start survives
    time.sleep(0.2)
    leftovers = [
        p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, "--never-listen")
    ]
    assert leftovers == []


def _cmdline_has(pid: str, needle: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return needle.encode() in fh.read() and _alive(int(pid))
    except OSError:
        return False


def test_server_dying_while_starting_is_reported_with_its_log(tmp_path, empty_fixtures, python):
    with pytest.raises(ServerStartError) as err:
        _start(tmp_path, empty_fixtures, python, "--exit-after", "0.5")
    message = str(err.value)
    assert "exited with code 3 while starting" in message
    assert "cannot load model 'broken'" in message


def test_port_in_use_is_named(tmp_path, empty_fixtures, python):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServegateError, match=f"port {port} on 127.0.0.1 is already in use"):
            _start(tmp_path, empty_fixtures, python, http_port=port)


def test_log_is_written_under_logs_dir(tiny_server):
    assert tiny_server.log_path.exists()
    assert "tiny_v2 listening" in tiny_server.log_path.read_text()


def test_server_dies_with_a_killed_parent(tmp_path, python):
    """A run killed with SIGKILL (no cleanup code runs) still leaves no server behind."""
    import signal
    import subprocess
    import sys

    script = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from servegate.fixtures.catalog import FixtureSet
from servegate.reference_servers.base import ServerSpec
from servegate.reference_servers.local import start_local
from tests.conftest import TinyRuntime
tmp = Path({str(tmp_path)!r})
server = start_local(TinyRuntime(), ServerSpec(runtime="tiny", ready_timeout=20),
                     FixtureSet(root=tmp, key="k", models={{}}), Path(sys.executable),
                     state_dir=tmp / "state", logs_dir=tmp / "logs")
print(server.proc.pid, flush=True)
import time; time.sleep(60)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_a_relative_state_dir_works(tmp_path, monkeypatch):
    """`servegate serve` and `pytest conformance/` default to the relative .servegate: the
    server, started in its own working directory, must still find its interpreter and files."""
    from servegate.reference_servers import manager

    monkeypatch.chdir(tmp_path)
    seen = {}

    def fake_start_local(runtime, spec, fixtures, python, *, state_dir, logs_dir, **kw):
        seen.update(state_dir=state_dir, logs_dir=logs_dir)
        raise ServegateError("stop here")

    monkeypatch.setattr(manager, "prepare_fixtures", lambda state_dir, log: None)
    monkeypatch.setattr(manager, "prepare_env", lambda name, state_dir, log: Path("python"))
    monkeypatch.setattr("servegate.reference_servers.local.start_local", fake_start_local)
    with pytest.raises(ServegateError, match="stop here"):
        manager.start_reference(
            "mlserver", state_dir=Path(".servegate"), logs_dir=Path("logs"), log=lambda line: None
        )
    assert seen["state_dir"] == tmp_path.resolve() / ".servegate"
    assert seen["logs_dir"].is_absolute()
