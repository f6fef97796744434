"""Starting a reference server from nothing: its env, the fixtures, the backend."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from servegate.errors import ServegateError
from servegate.fixtures.catalog import REQUIREMENTS as FIXTURES_REQUIREMENTS
from servegate.fixtures.catalog import FixtureSet, build_fixtures
from servegate.reference_servers.base import RunningServer, ServerSpec
from servegate.reference_servers.envs import ensure_env
from servegate.reference_servers.registry import get_runtime

BACKENDS = ("local", "testcontainers", "kind")


def prepare_fixtures_env(state_dir: Path, log: Callable[[str], None] = print) -> Path:
    """The interpreter that builds the fixture models (torch, transformers), made on first use."""
    return ensure_env(Path(state_dir).resolve(), "fixtures", FIXTURES_REQUIREMENTS, log=log)


def prepare_fixtures(state_dir: Path, log: Callable[[str], None] = print) -> FixtureSet:
    """The tiny fixture models, built (once per content key) in their own env."""
    state_dir = Path(state_dir).resolve()
    return build_fixtures(state_dir, prepare_fixtures_env(state_dir, log), log=log)


def prepare_env(runtime_name: str, state_dir: Path, log: Callable[[str], None] = print) -> Path:
    """The interpreter of the runtime's own env, created on first use."""
    runtime = get_runtime(runtime_name)
    # a runtime whose native parts link one Python build names it (see envs.BaseInterpreter)
    base = getattr(runtime, "base_interpreter", None)
    return ensure_env(
        Path(state_dir).resolve(),
        # optional: runtimes that share one env (two servers of one implementation) name it
        getattr(runtime, "env_name", runtime.name),
        runtime.requirements_file(),
        log=log,
        base=base,
        # optional: a runtime whose pins pull in packages that break it names them here
        uninstall=tuple(getattr(runtime, "pip_uninstall", ())),
    )


def start_reference(
    runtime_name: str,
    *,
    state_dir: Path,
    logs_dir: Path,
    device: str = "cpu",
    backend: str = "local",
    options: Mapping[str, Any] | None = None,
    models: tuple[str, ...] = (),
    ready_timeout: float = 180.0,
    http_port: int | None = None,
    grpc_port: int | None = None,
    log: Callable[[str], None] = print,
    env: Mapping[str, str] | None = None,
) -> RunningServer:
    """Start one reference server on ``backend`` and return it ready; ServegateError otherwise.

    What a backend needs (a Docker engine, kind and a cluster) is checked before anything is
    built, so a machine without it fails at once with one line naming the reason.
    """
    runtime = get_runtime(runtime_name)
    # servers run in their own working directory: every path they are given must be absolute
    state_dir, logs_dir = Path(state_dir).resolve(), Path(logs_dir).resolve()
    if backend not in BACKENDS:
        raise ServegateError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    options = dict(options or {})
    if "models" in options:
        # `--option models=a,b` where a caller has no other way to choose models
        models = tuple(m.strip() for m in str(options.pop("models")).split(",") if m.strip())
    if backend != "local" and (http_port or grpc_port):
        raise ServegateError(
            f"backend {backend} picks its own local ports; drop --http-port/--grpc-port"
        )
    gpu = device == "cuda"
    if backend == "testcontainers":
        from servegate.reference_servers.containers import require_engine

        require_engine(backend, gpu=gpu)
    elif backend == "kind":
        from servegate.reference_servers.kind.backend import require_kind

        require_kind(gpu=gpu)
    spec = ServerSpec(
        runtime=runtime.name,
        device=device,
        models=models,
        options=options,
        ready_timeout=ready_timeout,
        env=dict(env or {}),
    )
    fixtures = prepare_fixtures(state_dir, log)
    log(f"[{runtime.name}] starting ({backend}, {device})")
    server: RunningServer
    if backend == "testcontainers":
        from servegate.reference_servers.containers import start_container

        server = start_container(
            runtime.name, spec, fixtures, state_dir=state_dir, logs_dir=logs_dir, log=log
        )
    elif backend == "kind":
        from servegate.reference_servers.kind.backend import start_kind

        server = start_kind(
            runtime.name, spec, fixtures, state_dir=state_dir, logs_dir=logs_dir, log=log
        )
    else:
        from servegate.reference_servers.local import start_local

        python = prepare_env(runtime.name, state_dir, log)
        server = start_local(
            runtime,
            spec,
            fixtures,
            python,
            state_dir=state_dir,
            logs_dir=logs_dir,
            http_port=http_port,
            grpc_port=grpc_port,
        )
    grpc = f" (gRPC {server.target.grpc_address})" if server.target.grpc_address else ""
    log(f"[{runtime.name}] ready at {server.target.http_url}{grpc}")
    return server
