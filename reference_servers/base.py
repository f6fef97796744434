"""What every reference-server runtime and backend agrees on.

A *runtime* (MLServer, the KServe HuggingFace server) knows how to turn a :class:`ServerSpec`
into a command line and the files it reads. A *backend* (local process, testcontainers, kind)
knows how to run that and hand back a :class:`RunningServer` whose ``target`` the suite aims at.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from servegate.targets import DEFAULT_OPENAI_BASE, Target

if TYPE_CHECKING:
    from servegate.fixtures.catalog import FixtureSet

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class ServerSpec:
    """What to start: which runtime, on which device, with which fixture models and options."""

    runtime: str
    device: str = "cpu"
    #: fixture model names to load; empty means every model the runtime supports
    models: tuple[str, ...] = ()
    #: runtime options, e.g. parallel_workers, max_batch_size, max_batch_time_ms (MLServer);
    #: workers, dtype, return_probabilities (KServe)
    options: Mapping[str, Any] = field(default_factory=dict)
    #: seconds to wait for readiness before giving up
    ready_timeout: float = 120.0
    #: extra environment of the server's processes (every backend), e.g. the threads per
    #: worker an experiment sets (OMP_NUM_THREADS); it wins over the runtime's own
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int | None = None


@dataclass(frozen=True)
class Launch:
    """One process to run: its command line, extra environment and working directory."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    #: model name -> fixture task ("" when none), as the launched server will serve them
    models: Mapping[str, str]
    #: what the server is, for reports, e.g. "MLServer 1.7.1 (mlserver-huggingface 1.7.1)"
    implementation: str
    #: feature names this server is expected to support beyond what discovery finds
    declared_features: frozenset[str] = frozenset()
    #: path of the server's OpenAI routes below its base URL
    openai_base: str = DEFAULT_OPENAI_BASE
    #: how readiness is told: "v2" (GET /v2/health/ready and each model's ready route) or
    #: "openai" (every model listed by GET {openai_base}/models), for a server without V2
    readiness: str = "v2"
    #: False for a server with no gRPC endpoint: the target then has no gRPC address
    serves_grpc: bool = True
    #: for a server that alone knows its version: once ready, the implementation string read
    #: from it (e.g. GET /v2), replacing ``implementation``
    describe: Callable[[Target], str] | None = None


class Runtime(Protocol):
    """Runtime-specific knowledge, shared by every backend.

    A runtime may also carry ``base_interpreter`` (envs.BaseInterpreter): the Python build its
    env must be made from, where the suite's own interpreter will not do.
    """

    name: str

    def requirements_file(self) -> Path:
        """Pinned requirements of the runtime's own virtualenv."""
        ...

    def supported_tasks(self) -> frozenset[str]:
        """HuggingFace pipeline tasks (fixtures.catalog.TASKS) this runtime can serve."""
        ...

    def prepare(
        self, spec: ServerSpec, fixtures: FixtureSet, python: Path, ports: Ports, workdir: Path
    ) -> Launch:
        """Write whatever files the server reads into ``workdir`` and say how to start it."""
        ...


class RunningServer(Protocol):
    """A started server; ``stop`` is idempotent and leaves nothing behind."""

    target: Target
    log_path: Path | None

    def stop(self) -> None: ...
