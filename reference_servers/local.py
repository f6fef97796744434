"""The local-process backend: a reference server as a child process on this machine."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from servegate.errors import ServegateError, ServerStartError
from servegate.protocols.openai import OpenAIClient
from servegate.protocols.v2_rest import V2RestClient
from servegate.reference_servers.base import Launch, Ports, Runtime, ServerSpec
from servegate.targets import Connection, ModelInfo, Target

if TYPE_CHECKING:
    from servegate.fixtures.catalog import FixtureSet

#: seconds a stopping server gets between SIGTERM and SIGKILL
STOP_GRACE = 10.0
POLL_INTERVAL = 0.5

_running: set[LocalServer] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """ServegateError naming the port when something already listens on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise ServegateError(f"port {port} on {host} is already in use") from None


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        with path.open(errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines)).rstrip()
    except OSError:
        return ""


class LocalServer:
    """A reference server running as a local process group."""

    def __init__(self, name: str, launch: Launch, target: Target, log_path: Path):
        self.name = name
        self.launch = launch
        self.target = target
        self.log_path: Path | None = log_path
        self._log = log_path.open("ab")
        env = {**os.environ, **launch.env}
        self.proc = subprocess.Popen(
            list(launch.argv),
            cwd=launch.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # its own process group, so stop() reaches every worker it forks
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _running.add(self)

    def wait_ready(self, timeout: float) -> None:
        """Block until the server and every model are ready; ServerStartError otherwise."""
        wait_until_ready(
            self.target,
            timeout,
            name=self.name,
            log_path=self.log_path,
            exit_code=self.proc.poll,
            readiness=self.launch.readiness,
        )

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after a grace period."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_GRACE)
        # workers may outlive the parent: the group gets SIGKILL either way
        _signal_group(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_GRACE)
        self._log.close()
        _running.discard(self)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the process that started us dies, even by
    SIGKILL, so a killed test run leaves no server behind (Linux; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_until_ready(
    target: Target,
    timeout: float,
    *,
    name: str,
    log_path: Path | None,
    exit_code: Callable[[], int | None],
    readiness: str = "v2",
) -> None:
    """Block until ``target`` and every one of its models answer ready; ServerStartError otherwise.

    Shared by every backend: ``exit_code`` says whether the server (process, container, pod)
    has ended, so a server that dies while starting fails at once instead of at the deadline.
    ``readiness`` "openai" waits for every model in GET {openai_base}/models instead of V2.
    """
    deadline = time.monotonic() + timeout
    pending = list(target.models)
    client: V2RestClient | OpenAIClient
    is_ready: Callable[[], bool]
    if readiness == "openai":
        oai = client = OpenAIClient(target.http_url, Connection(timeout=5.0), target.openai_base)
        is_ready = lambda: _listed(oai, pending)  # noqa: E731
    else:
        v2 = client = V2RestClient(target.http_url, Connection(timeout=5.0))
        is_ready = lambda: _ready(v2, pending)  # noqa: E731
    try:
        while True:
            code = exit_code()
            if code is not None:
                raise ServerStartError(
                    f"{name} exited with code {code} while starting (log: {log_path})",
                    log_tail(log_path) if log_path else "",
                )
            if is_ready():
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{name} was not ready within {timeout:.0f} s "
                    f"(waiting for: {', '.join(pending) or 'the server'}; log: {log_path})",
                    log_tail(log_path) if log_path else "",
                )
            time.sleep(POLL_INTERVAL)
    finally:
        client.close()


def _ready(client: V2RestClient, pending: list[str]) -> bool:
    from servegate.errors import Unreachable

    try:
        if client.ready().status != 200:
            return False
        while pending:
            if client.model_ready(pending[0]).status != 200:
                return False
            pending.pop(0)
    except Unreachable:
        return False
    return True


def _listed(client: OpenAIClient, pending: list[str]) -> bool:
    """Whether GET {openai_base}/models answers and lists every pending model."""
    from servegate.errors import Unreachable

    try:
        reply = client.models()
    except Unreachable:
        return False
    if reply.status != 200:
        return False
    try:
        cards = reply.json().get("data", [])
        listed = {c.get("id") for c in cards if isinstance(c, dict)}
    except (AssertionError, AttributeError):
        return False
    return all(name in listed for name in pending)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


@contextmanager
def small_server(
    argv: Sequence[str],
    http_port: int,
    *,
    name: str,
    log_path: Path,
    cwd: Path | None = None,
    timeout: float = 30.0,
) -> Iterator[str]:
    """Run a small V2 server (a calibration or test server) for the length of a block.

    Started, waited for (``GET /v2/health/ready``) and stopped exactly like a reference server;
    yields its HTTP base URL.
    """
    launch = Launch(argv=list(argv), env={}, cwd=cwd or Path.cwd(), models={}, implementation=name)
    target = Target(name=name, http_url=f"http://127.0.0.1:{http_port}")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    server = LocalServer(name, launch, target, log_path)
    try:
        server.wait_ready(timeout)
        yield target.http_url
    finally:
        server.stop()


def start_local(
    runtime: Runtime,
    spec: ServerSpec,
    fixtures: FixtureSet,
    python: Path,
    *,
    state_dir: Path,
    logs_dir: Path,
    http_port: int | None = None,
    grpc_port: int | None = None,
    name: str | None = None,
) -> LocalServer:
    """Start ``runtime`` as a local process and wait until it is ready.

    Raises ServerStartError (with the log's last lines) when it dies or is not ready in time;
    nothing is left running then.
    """
    name = name or f"{runtime.name}-{spec.device}"
    for port in (http_port, grpc_port):
        if port:
            check_port_free(port)
    ports = Ports(http=http_port or free_port(), grpc=grpc_port or free_port(), metrics=free_port())
    workdir = state_dir / "run" / f"{name}-{ports.http}"
    workdir.mkdir(parents=True, exist_ok=True)
    launch = runtime.prepare(spec, fixtures, python, ports, workdir)
    if spec.env:
        launch = replace(launch, env={**launch.env, **spec.env})
    logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = logs_dir / f"{name}.log"
    log_path.write_text("")
    models = {}
    for model, task in launch.models.items():
        fx = fixtures.find(model)
        models[model] = ModelInfo(
            name=model,
            # "" for a model of no task servegate knows (Triton's identity model)
            task=task or None,
            labels=fx.labels if fx else (),
            hidden_size=fx.hidden_size if fx else None,
            mask_token=fx.mask_token if fx else None,
        )
    target = Target(
        name=name,
        http_url=f"http://127.0.0.1:{ports.http}",
        grpc_address=f"127.0.0.1:{ports.grpc}" if launch.serves_grpc else None,
        models=models,
        implementation=launch.implementation,
        features=launch.declared_features,
        openai_base=launch.openai_base,
    )
    server = LocalServer(name, launch, target, log_path)
    try:
        server.wait_ready(spec.ready_timeout)
        if launch.describe is not None:
            server.target = replace(target, implementation=launch.describe(target))
    except BaseException:
        server.stop()
        raise
    return server
