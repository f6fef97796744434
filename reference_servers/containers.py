"""The testcontainers backend: the runtimes' official images, the fixture models mounted in.

Two halves. The *spec* half is plain data and needs no Docker engine: which image, which command,
which ports, which files the server reads (:func:`server_layouts`, :func:`stage_repository`,
:func:`docker_create_kwargs`); the kind backend builds its manifests from the same layouts. The
*run* half starts those with testcontainers, captures the logs, waits with the shared readiness
rule of the local backend, and removes every container afterwards, also on failure. Ports are
published on loopback only, read back from the running container. testcontainers' reaper is
off (its image comes from a registry): every container carries its run's owner labels and is
removed at exit, on SIGINT and SIGTERM, and after SIGKILL by the next start
(:mod:`container_owner`).

Images (versions are options, see :data:`BACKEND_OPTIONS`):

- MLServer: ``seldonio/mlserver:<version>-huggingface``; one container serves every fixture model
  from ``model-settings.json`` files under ``/mnt/models``, like ``mlserver start`` locally.
- KServe: ``kserve/huggingfaceserver:<version>`` (CPU) and ``:<version>-gpu``. Upstream's entry
  point loads one model per process, so two layouts: ``per-model`` runs the image's entry point
  untouched, one container per model, with ``--model_name``, ``--model_dir``, ``--task`` and
  ``--dtype``; ``single`` (the default, one target for the whole suite) runs servegate's
  multi-model launcher (reference_servers/kserve_huggingface/kserve_hf_reference, mounted in)
  with ``--implementation official``, so every model is built by the image's own
  huggingfaceserver classes in one process.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from servegate.errors import ServegateError, ServerStartError
from servegate.reference_servers.base import ServerSpec
from servegate.reference_servers.container_owner import (
    LABEL_STAGED,
    current_owner,
    remove_orphans,
    remove_own,
    run_folder,
)
from servegate.reference_servers.local import log_tail
from servegate.targets import ModelInfo, Target

if TYPE_CHECKING:
    from servegate.fixtures.catalog import FixtureModel, FixtureSet

#: container ports, as the runtimes' docs and KServe's ServingRuntimes use them
HTTP_PORT = 8080
GRPC_PORT = 8081
METRICS_PORT = 8082

MLSERVER_IMAGE = "seldonio/mlserver"
MLSERVER_VERSION = "1.7.1"
KSERVE_IMAGE = "kserve/huggingfaceserver"
KSERVE_VERSION = "v0.14.1"

#: where the staged model repository is mounted (KServe's storage mount point, too)
MODELS_MOUNT = PurePosixPath("/mnt/models")
#: the folder of the repository that holds servegate's KServe launcher (layout single)
LAUNCHER_DIR = "_servegate"

KSERVE_LAYOUTS = ("single", "per-model")
#: options the container and kind backends read; everything else goes to the runtime
BACKEND_OPTIONS = frozenset({"image", "version", "layout", "hf_backend", "models", "cpus"})
#: huggingfaceserver's --backend: "huggingface" keeps text generation off vLLM (which the GPU
#: image would pick), so the official image answers like the local reference server
HF_BACKENDS = ("huggingface", "auto", "vllm")
GPU_DTYPE = "float16"


@dataclass(frozen=True)
class ServerLayout:
    """One server process inside a container or pod: pure data, shared by containers and kind.

    Paths are inside the container; ``repository`` (on this machine) is mounted at
    :data:`MODELS_MOUNT`.
    """

    name: str
    image: str
    #: replaces the image's entry point when not None
    entrypoint: tuple[str, ...] | None
    #: arguments (after the entry point) or the command (MLServer, no entry point)
    args: tuple[str, ...]
    env: Mapping[str, str]
    #: container port by purpose: http, grpc, and metrics where the server has one
    ports: Mapping[str, int]
    #: model name -> fixture task, as this server serves them
    models: Mapping[str, str]
    implementation: str
    declared_features: frozenset[str]
    gpu: bool = False
    #: CPU limit of the container in cores (Docker's --cpus); None: no limit
    cpus: float | None = None


@dataclass(frozen=True)
class ContainerSpec:
    """What ``docker create`` gets for one layout."""

    layout: ServerLayout
    repository: Path
    labels: Mapping[str, str] = field(default_factory=dict)


def image_for(runtime: str, device: str, options: Mapping[str, Any]) -> str:
    """The official image for ``runtime`` on ``device``; ``image``/``version`` options override."""
    if options.get("image"):
        return str(options["image"])
    if runtime == "mlserver":
        version = str(options.get("version") or MLSERVER_VERSION)
        # MLServer's runtime images carry CUDA-enabled torch; there is no separate GPU tag
        return f"{MLSERVER_IMAGE}:{version}-huggingface"
    if runtime == "kserve":
        version = str(options.get("version") or KSERVE_VERSION)
        if not version.startswith("v"):
            version = "v" + version  # KServe tags its images v0.14.1
        return f"{KSERVE_IMAGE}:{version}{'-gpu' if device == 'cuda' else ''}"
    raise ServegateError(f"no official image known for runtime {runtime!r}")


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(backend options, runtime options)."""
    backend = {k: v for k, v in options.items() if k in BACKEND_OPTIONS}
    rest = {k: v for k, v in options.items() if k not in BACKEND_OPTIONS}
    return backend, rest


# --- the staged model repository ------------------------------------------------------------


def stage_repository(
    runtime: str,
    spec: ServerSpec,
    fixtures: FixtureSet,
    dest: Path,
    image_labels: Mapping[str, str] | None = None,
) -> ServerLayout:
    """Write the model repository the server reads into ``dest`` and say how to start it.

    ``dest`` ends up mounted read-only at /mnt/models (a volume here, a hostPath volume or a
    modelcar image in kind), so it holds copies, never links to this machine's paths. The
    fixture models are tiny; copying keeps every delivery form the same. ``image_labels`` are
    the image's labels where known: servegate's own build (``servegate image build``) is named
    as such, and its KServe image runs servegate's KServe HF server classes.
    """
    backend_opts, runtime_opts = split_options(spec.options)
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    image = image_for(runtime, spec.device, backend_opts)
    built = servegate_build(image_labels or {})
    if runtime == "mlserver":
        layout = _stage_mlserver(spec, fixtures, dest, image, runtime_opts)
    elif runtime == "kserve":
        layout = _stage_kserve(spec, fixtures, dest, image, backend_opts, runtime_opts, built)
    else:
        raise ServegateError(f"runtime {runtime!r} has no container layout")
    _world_readable(dest)
    if built:
        layout = replace(layout, implementation=f"{layout.implementation}: {built}")
    # the spec's environment (thread limits) wins over the layout's; a CPU limit is the
    # backend's to set
    return replace(layout, env={**layout.env, **spec.env}, cpus=cpu_limit(backend_opts.get("cpus")))


def cpu_limit(value: Any) -> float | None:
    """The ``cpus`` option as a number of cores; None when not given."""
    if value is None or value == "":
        return None
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise ServegateError(f"cpus={value!r}: expected a number of cores, e.g. 1.5") from None
    if not cpus > 0:
        raise ServegateError(f"cpus={value!r}: expected a positive number of cores")
    return cpus


def servegate_build(labels: Mapping[str, str]) -> str | None:
    """What servegate's own image build says it is (its implementation label), else None."""
    from servegate.reference_servers.image_recipes import LABEL_IMPLEMENTATION

    return labels.get(LABEL_IMPLEMENTATION) or None


def _stage_mlserver(
    spec: ServerSpec,
    fixtures: FixtureSet,
    dest: Path,
    image: str,
    options: dict[str, Any],
) -> ServerLayout:
    from servegate.reference_servers.base import Ports
    from servegate.reference_servers.mlserver import runtime as ml

    unknown = set(options) - ml.KNOWN_OPTIONS
    if unknown:
        raise ServegateError(
            f"unknown MLServer option(s) {sorted(unknown)}; known: "
            f"{sorted(ml.KNOWN_OPTIONS | BACKEND_OPTIONS - {'layout', 'hf_backend'})}"
        )
    dtype = options.get("dtype")
    if dtype not in (None, *ml.DTYPES):
        raise ServegateError(f"dtype must be one of {', '.join(ml.DTYPES)}, not {dtype!r}")
    try:
        chosen = ml.select_models(fixtures, spec.models, options)
    except ValueError as exc:
        raise ServegateError(str(exc)) from None
    settings = ml.server_settings(
        options, Ports(http=HTTP_PORT, grpc=GRPC_PORT, metrics=METRICS_PORT), Path(MODELS_MOUNT)
    )
    # every interface (the port is mapped from outside); the repository is read-only, so the
    # folders MLServer writes go to /tmp
    settings.update(
        host="0.0.0.0",
        model_repository_root=str(MODELS_MOUNT),
        metrics_dir="/tmp/mlserver-metrics",
        environments_dir="/tmp/mlserver-envs",
    )
    _write_json(dest / "settings.json", settings)
    served: dict[str, str] = {}
    for model in chosen:
        folder = dest / model.name
        folder.mkdir()
        _copy_model(model, folder / "model", dtype)
        _write_json(
            folder / "model-settings.json",
            ml.hf_model_settings(
                model.name,
                model.task,
                Path(MODELS_MOUNT / model.name / "model"),
                spec.device,
                options,
            ),
        )
        served[model.name] = model.task
    folder = dest / ml.NUMERIC_MODEL_NAME
    folder.mkdir()
    shutil.copyfile(ml.NUMERIC_RUNTIME_SOURCE, folder / ml.NUMERIC_RUNTIME_SOURCE.name)
    _write_json(folder / "model-settings.json", ml.numeric_model_settings())
    served[ml.NUMERIC_MODEL_NAME] = ml.NUMERIC_TASK
    return ServerLayout(
        name="mlserver",
        image=image,
        entrypoint=None,
        args=("mlserver", "start", str(MODELS_MOUNT)),
        env={**ml.SERVER_ENV, "HF_HOME": "/tmp/hf-home"},
        ports={"http": HTTP_PORT, "grpc": GRPC_PORT, "metrics": METRICS_PORT},
        models=served,
        implementation=f"MLServer image {image}",
        declared_features=ml.DECLARED_FEATURES,
        gpu=spec.device == "cuda",
    )


KSERVE_OPTIONS = frozenset({"dtype", "max_length", "return_probabilities", "workers"})


def _stage_kserve(
    spec: ServerSpec,
    fixtures: FixtureSet,
    dest: Path,
    image: str,
    backend_opts: dict[str, Any],
    options: dict[str, Any],
    built: str | None = None,
) -> ServerLayout:
    from servegate.reference_servers.kserve_huggingface import runtime as ks

    # "implementation" picks the local server's classes; in an image they are always official
    options.pop("implementation", None)
    unknown = set(options) - KSERVE_OPTIONS
    if unknown:
        raise ServegateError(
            f"unknown kserve option(s) {sorted(unknown)} for the official image; known: "
            f"{sorted(KSERVE_OPTIONS | BACKEND_OPTIONS)}"
        )
    layout = str(backend_opts.get("layout") or "single")
    if layout not in KSERVE_LAYOUTS:
        raise ServegateError(f"layout={layout!r}: expected one of {', '.join(KSERVE_LAYOUTS)}")
    hf_backend = str(backend_opts.get("hf_backend") or "huggingface")
    if hf_backend not in HF_BACKENDS:
        raise ServegateError(f"hf_backend={hf_backend!r}: expected one of {HF_BACKENDS}")
    gpu = spec.device == "cuda"
    dtype = str(options.get("dtype") or (GPU_DTYPE if gpu else "auto"))
    if dtype not in ks.DTYPES:
        raise ServegateError(f"dtype={dtype!r}: expected one of {', '.join(ks.DTYPES)}")
    try:
        chosen = ks.RUNTIME.select_models(spec, fixtures)
    except ValueError as exc:
        raise ServegateError(str(exc)) from None
    for model in chosen:
        _copy_model(model, dest / model.name, None)
    common = [f"--dtype={dtype}"]
    if options.get("max_length") is not None:
        common.append(f"--max_length={int(options['max_length'])}")
    if _truthy(options.get("return_probabilities")):
        common.append("--return_probabilities")
    if options.get("workers") is not None:
        common.append(f"--workers={int(options['workers'])}")
    ports = {"http": HTTP_PORT, "grpc": GRPC_PORT}
    port_args = [f"--http_port={HTTP_PORT}", f"--grpc_port={GRPC_PORT}"]
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": "/tmp/huggingface"}

    def features(models: Sequence[FixtureModel]) -> frozenset[str]:
        if any(m.task in ks.GENERATIVE_TASKS for m in models):
            return ks.DECLARED_FEATURES
        return ks.DECLARED_FEATURES - ks.OPENAI_FEATURES

    if layout == "per-model":
        if len(chosen) != 1:
            raise ServegateError(
                "layout per-model runs upstream's entry point, which serves one model: name it "
                f"with models=NAME (one of {', '.join(m.name for m in chosen)})"
            )
        (model,) = chosen
        return ServerLayout(
            name="kserve",
            image=image,
            entrypoint=None,  # the image's own: python -m huggingfaceserver
            args=(
                f"--model_name={model.name}",
                f"--model_dir={MODELS_MOUNT / model.name}",
                f"--task={ks.KSERVE_TASKS[model.task]}",
                f"--backend={hf_backend}",
                *common,
                *port_args,
            ),
            env=env,
            ports=ports,
            models={model.name: model.task},
            implementation=(
                f"KServe HF server image {image} (its entry point)"
                if built
                else f"KServe huggingfaceserver image {image} (official entry point)"
            ),
            declared_features=features([model]),
            gpu=gpu,
        )
    launcher = dest / LAUNCHER_DIR / ks.PACKAGE
    shutil.copytree(
        ks.PACKAGE_PARENT / ks.PACKAGE, launcher, ignore=shutil.ignore_patterns("__pycache__")
    )
    # the numeric echo model too, as the local KServe server hosts it: a user's own model on
    # the SDK's V2 layers, and the model the numeric and bad-input checks go to
    model_args = [
        f"--model={m.name}={MODELS_MOUNT / m.name}:{ks.KSERVE_TASKS[m.task]}" for m in chosen
    ] + [f"--numeric_model={ks.NUMERIC_MODEL_NAME}"]
    return ServerLayout(
        name="kserve",
        image=image,
        entrypoint=("python", "-m", ks.PACKAGE),
        # servegate's own image has no huggingfaceserver: its classes are servegate's
        args=(
            f"--implementation={'servegate' if built else 'official'}",
            *model_args,
            *common,
            *port_args,
        ),  # fmt: skip
        env={**env, "PYTHONPATH": str(MODELS_MOUNT / LAUNCHER_DIR)},
        ports=ports,
        models={**{m.name: m.task for m in chosen}, ks.NUMERIC_MODEL_NAME: ks.NUMERIC_TASK},
        implementation=(
            f"KServe HF server image {image} (servegate's model classes, every model in one "
            "process through servegate's launcher)"
            if built
            else f"KServe huggingfaceserver image {image} (official model classes, every model "
            "in one process through servegate's launcher)"
        ),
        declared_features=features(chosen),
        gpu=gpu,
    )


def _copy_model(model: FixtureModel, dest: Path, dtype: str | None) -> None:
    """A copy of the fixture; for float16/bfloat16 its config says that torch_dtype."""
    shutil.copytree(Path(model.path), dest, symlinks=False)
    if dtype in ("float16", "bfloat16"):
        config_path = dest / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["torch_dtype"] = dtype
        _write_json(config_path, config)


def _world_readable(root: Path) -> None:
    # the images run as uid 1000, not as whoever staged the files
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | (0o555 if path.is_dir() else 0o444))


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _write_json(path: Path, content: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# --- docker create arguments ----------------------------------------------------------------


def docker_create_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """Keyword arguments of docker-py's ``containers.create`` for ``spec`` (host ports: any)."""
    layout = spec.layout
    kwargs: dict[str, Any] = {
        "image": layout.image,
        "command": list(layout.args),
        "environment": dict(layout.env),
        # bound to loopback only: the suite runs on this machine
        "ports": {f"{port}/tcp": ("127.0.0.1", None) for port in layout.ports.values()},
        "volumes": {
            str(Path(spec.repository).resolve()): {"bind": str(MODELS_MOUNT), "mode": "ro"}
        },
        "labels": {"org.servegate.runtime": layout.name, **spec.labels},
        # torch's DataLoader and tokenizers use shared memory; Docker's default is 64 MB
        "shm_size": "1g",
    }
    if layout.entrypoint is not None:
        kwargs["entrypoint"] = list(layout.entrypoint)
    if layout.gpu:
        kwargs["device_requests"] = [gpu_device_request()]
    if layout.cpus is not None:
        # Docker's --cpus: a CFS quota of that many cores' time
        kwargs["nano_cpus"] = int(layout.cpus * 1e9)
    return kwargs


def gpu_device_request() -> Any:
    """``--gpus all`` as docker-py spells it."""
    try:
        from docker.types import DeviceRequest
    except ImportError:  # the spec stays inspectable without the containers extra
        return {"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}
    return DeviceRequest(count=-1, capabilities=[["gpu"]])


# --- can it run here? -----------------------------------------------------------------------


def missing_packages(names: Sequence[str]) -> list[str]:
    import importlib.util

    return [n for n in names if importlib.util.find_spec(n) is None]


def docker_engine_problem(timeout: float = 5.0) -> str | None:
    """Why no Docker engine can be used from here, or None when one answers."""
    missing = missing_packages(["docker", "testcontainers"])
    if missing:
        return (
            f"the Python package(s) {', '.join(missing)} are not installed "
            "(pip install 'servegate[containers]')"
        )
    import docker
    from docker.utils import kwargs_from_env

    where = kwargs_from_env().get("base_url") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=int(timeout))
    except Exception as exc:  # docker-py wraps every transport error differently
        return f"no Docker engine answers at {where} ({_transport_reason(exc)})"
    try:
        client.ping()
    except Exception as exc:
        return f"no Docker engine answers at {where} ({_transport_reason(exc)})"
    finally:
        client.close()
    return None


def _transport_reason(exc: BaseException) -> str:
    text = str(exc)
    for marker, reason in (
        ("FileNotFoundError", "no such socket: is the engine running?"),
        ("ConnectionRefused", "connection refused"),
        ("Connection refused", "connection refused"),
        ("PermissionError", "permission denied: is this user in the docker group?"),
        ("Permission denied", "permission denied: is this user in the docker group?"),
        ("timed out", "timed out"),
    ):
        if marker in text:
            return reason
    return _first_line(exc)


def docker_gpu_problem(timeout: float = 5.0) -> str | None:
    """Why the Docker engine cannot hand a GPU to a container, or None when it can."""
    problem = docker_engine_problem(timeout)
    if problem:
        return problem
    import docker

    client = docker.from_env(timeout=int(timeout))
    try:
        runtimes = client.info().get("Runtimes") or {}
    finally:
        client.close()
    if "nvidia" not in runtimes:
        return "the Docker engine has no nvidia runtime (install the NVIDIA Container Toolkit)"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def require_engine(backend: str, gpu: bool) -> None:
    """ServegateError in one line when ``backend`` cannot reach what it needs."""
    problem = docker_gpu_problem() if gpu else docker_engine_problem()
    if problem:
        needs = "a Docker engine with GPU support" if gpu else "a Docker engine"
        raise ServegateError(f"backend {backend} needs {needs}: {problem}; run `servegate doctor`")


# --- the run half: testcontainers -----------------------------------------------------------

#: log lines quoted when a container dies or is not ready in time
TAIL_LINES = 25
#: the staged repositories of every run, one folder per run (see container_owner)
STAGING = Path("run") / "containers"

_running: set[ContainerServer] = set()
#: staging roots this process has used, emptied of its own folder at exit
_staging_roots: set[Path] = set()
_names = itertools.count(1)
#: whether this process has started a container (else its exit asks the engine nothing)
_started_any = False


class ContainerServer:
    """A reference server in a container; ``stop`` removes it and its staged files."""

    def __init__(self, name: str, spec: ContainerSpec, log_path: Path):
        from testcontainers.core.container import DockerContainer

        # every container servegate starts names its owner, so that it is found and removed
        spec = replace(spec, labels={**current_owner().labels(), **spec.labels})
        kwargs = docker_create_kwargs(spec)
        self.name = name
        self.spec = spec
        self.log_path: Path | None = log_path
        self.target = Target(name=name, http_url="http://127.0.0.1:0")
        self.container_name = f"servegate-{name}-{current_owner().run_id}-{next(_names)}"
        container = DockerContainer(kwargs.pop("image"), command=kwargs.pop("command"))
        container.with_name(self.container_name)
        container.with_envs(**kwargs.pop("environment"))
        # testcontainers' with_bind_ports keeps only a host port and would publish on every
        # interface; docker-py takes (host address, host port): loopback, port chosen by Docker
        container.ports.update(kwargs.pop("ports"))
        for host, mount in kwargs.pop("volumes").items():
            container.with_volume_mapping(host, mount["bind"], mount["mode"])
        container.with_kwargs(**kwargs)
        self._container = container
        self._started = False
        self._follower: threading.Thread | None = None

    def start(self) -> None:
        """Create and start the container; ServerStartError when the engine refuses to."""
        from testcontainers.core.config import testcontainers_config

        # the reaper is a container whose image comes from a registry; servegate's own cleanup
        # (container_owner) covers what it did
        testcontainers_config.ryuk_disabled = True
        global _started_any
        _started_any = True
        _remove_on_sigterm()
        _running.add(self)
        self._started = True
        try:
            self._container.start()
        except Exception as exc:
            raise ServerStartError(
                f"{self.name}: the engine could not start container {self.container_name} "
                f"({self.spec.layout.image}): {_engine_reason(exc)}"
            ) from None
        self._follower = threading.Thread(target=self._follow_logs, daemon=True)
        self._follower.start()

    def _wrapped(self) -> Any:
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        return wrapped

    def _follow_logs(self) -> None:
        if self.log_path is None:
            return
        try:
            stream = self._container.get_wrapped_container().logs(stream=True, follow=True)
            with self.log_path.open("ab") as out:
                for chunk in stream:
                    out.write(chunk)
                    out.flush()
        except Exception:  # the container went away; the log holds what it said
            return

    def host_port(self, container_port: int) -> int:
        """The loopback port Docker published ``container_port`` on (read from the running
        container, not from what was asked)."""
        bindings = (self._wrapped().attrs["NetworkSettings"]["Ports"] or {}).get(
            f"{container_port}/tcp"
        )
        if not bindings:
            raise ServerStartError(
                f"{self.name}: container {self.container_name} published no port for "
                f"{container_port}"
            )
        exposed = {b.get("HostIp") for b in bindings}
        if exposed - {"127.0.0.1"}:
            # a model server open on every interface is a defect, not a detail
            raise ServerStartError(
                f"{self.name}: container {self.container_name} published {container_port} on "
                f"{', '.join(sorted(str(a) for a in exposed))}, not only on 127.0.0.1"
            )
        return int(bindings[0]["HostPort"])

    def host_pid(self) -> int | None:
        """The pid, on this machine, of the container's first process (None once stopped)."""
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        pid = int(wrapped.attrs.get("State", {}).get("Pid") or 0)
        return pid or None

    def exit_code(self) -> int | None:
        """The container's exit code once it has stopped, else None."""
        wrapped = self._wrapped()
        if wrapped.status in ("exited", "dead"):
            return int(wrapped.attrs.get("State", {}).get("ExitCode", -1))
        return None

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The container's last log lines, from the engine (the followed log may lag)."""
        try:
            raw = self._container.get_wrapped_container().logs(tail=lines)
        except Exception:
            return log_tail(self.log_path, lines) if self.log_path else ""
        return bytes(raw).decode("utf-8", errors="replace").rstrip()

    def state(self) -> str:
        """The container's state in words: status, health, exit code where it has one."""
        try:
            state = self._wrapped().attrs.get("State", {})
        except Exception as exc:
            return f"state unknown ({_first_line(exc)})"
        health = (state.get("Health") or {}).get("Status") or "none (the image has no check)"
        words = f"status {state.get('Status', '?')}, health {health}"
        if state.get("Status") in ("exited", "dead"):
            words += f", exit code {state.get('ExitCode')}"
        if state.get("OOMKilled"):
            words += ", killed for want of memory"
        return words

    def start_failure(self, cause: ServerStartError, timeout: float | None) -> ServerStartError:
        """The error of a container that died while starting (its exit code) or, with
        ``timeout``, was not ready in time (its state), in one first line naming the container
        and its image, then the last lines of its log; ``cause`` when it did neither."""
        image = self.spec.layout.image
        code = None
        with contextlib.suppress(Exception):
            code = self.exit_code()
        if code is not None:
            return ServerStartError(
                f"{self.name}: container {self.container_name} ({image}) exited with code "
                f"{code} while starting (log: {self.log_path})",
                self.log_tail(),
            )
        if timeout is None:
            return cause
        first = str(cause).splitlines()[0]
        pending = first.partition("(waiting for: ")[2].partition(";")[0]
        return ServerStartError(
            f"{self.name}: container {self.container_name} ({image}) was not ready within "
            f"{timeout:.0f} s ({self.state()}; waiting for: {pending or 'the server'}; "
            f"log: {self.log_path})",
            self.log_tail(),
        )

    def stop(self) -> None:
        """Remove the container (and its anonymous volumes) and the staged repository."""
        if self._started:
            # also after a failed start: a container created but never running is removed too
            with contextlib.suppress(Exception):  # already gone
                self._container.stop(force=True, delete_volume=True)
            self._started = False
        if self._follower is not None:
            self._follower.join(timeout=5)
            self._follower = None
        shutil.rmtree(self.spec.repository, ignore_errors=True)
        _running.discard(self)


def _engine_reason(exc: BaseException) -> str:
    # docker-py's APIError carries the engine's own words apart from the HTTP status line
    explanation = getattr(exc, "explanation", None)
    return str(explanation).strip().splitlines()[0] if explanation else _first_line(exc)


def _cleanup_own() -> None:
    """Remove this run's containers and staged files: every server it started, then whatever
    carries its label (a container created but never handed back)."""
    owner = current_owner()
    for server in list(_running):
        server.stop()
    if not _started_any:
        return
    import docker

    with contextlib.suppress(Exception):  # no engine any more: nothing to reach
        client = docker.from_env(timeout=30)
        try:
            remove_own(client, owner, None)
        finally:
            client.close()
    for root in _staging_roots:
        shutil.rmtree(root / owner.run_id, ignore_errors=True)


@atexit.register
def _stop_all() -> None:
    # a forked child inherits this hook and the set of servers: only their owner removes them
    if os.getpid() == current_owner().pid:
        _cleanup_own()


_sigterm_installed = False


def _remove_on_sigterm() -> None:
    """SIGTERM (a CI runner cancelling, kill) ends Python without atexit hooks: remove this
    run's containers first, then end as the signal would have. Only where no one else has
    claimed SIGTERM (``servegate serve`` turns it into Ctrl-C, which stops the server too)."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, _frame: Any) -> None:
        with contextlib.suppress(Exception):
            _cleanup_own()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    _sigterm_installed = True


def _use_own_cleanup(state_dir: Path, log: Callable[[str], None]) -> Path:
    """Remove what runs killed outright left behind, and make sure this run's containers go
    at its end; the staging root of this state dir."""
    import docker

    root = Path(state_dir).resolve() / STAGING
    client = docker.from_env(timeout=30)
    try:
        remove_orphans(client, root, log)
    finally:
        client.close()
    _staging_roots.add(root)
    return root


def start_container(
    runtime: str,
    spec: ServerSpec,
    fixtures: FixtureSet,
    *,
    state_dir: Path,
    logs_dir: Path,
    log: Callable[[str], None] = print,
) -> ContainerServer:
    """Start ``runtime``'s image and wait until it and every model are ready.

    ServerStartError when the container dies (its exit code and last log lines) or is not
    ready in time (its state and last log lines); nothing is left behind then. Containers and
    staged files are removed at exit, on SIGINT and SIGTERM, and, after SIGKILL, by the next
    start (see container_owner).
    """
    from servegate.reference_servers.local import wait_until_ready

    require_engine("testcontainers", gpu=spec.device == "cuda")
    root = _use_own_cleanup(state_dir, log)
    owner = current_owner()
    name = f"{runtime}-{spec.device}"
    image, labels = resolve_image(runtime, spec, log)
    spec = replace(spec, options={**spec.options, "image": image})
    repository = run_folder(root, owner) / f"{name}-{uuid.uuid4().hex[:8]}"
    try:
        layout = stage_repository(runtime, spec, fixtures, repository, labels)
    except BaseException:
        shutil.rmtree(repository, ignore_errors=True)
        raise
    logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = logs_dir / f"{name}-container.log"
    log_path.write_text("")
    server = ContainerServer(
        name, ContainerSpec(layout, repository, labels={LABEL_STAGED: str(repository)}), log_path
    )
    try:
        log(f"[{runtime}] starting {layout.image} as {server.container_name}")
        server.start()
        try:
            # a container that dies at once has no ports to read: its exit code is the news
            http_port, grpc_port = (server.host_port(layout.ports[p]) for p in ("http", "grpc"))
        except ServerStartError as exc:
            raise server.start_failure(exc, timeout=None) from None
        server.target = container_target(
            name, layout, fixtures, http_port=http_port, grpc_port=grpc_port
        )
        try:
            wait_until_ready(
                server.target,
                spec.ready_timeout,
                name=f"{name} ({layout.image})",
                log_path=log_path,
                exit_code=server.exit_code,
            )
        except ServerStartError as exc:
            raise server.start_failure(exc, timeout=spec.ready_timeout) from None
    except BaseException as exc:
        server.stop()
        if isinstance(exc, ServegateError | KeyboardInterrupt | SystemExit):
            raise
        raise ServerStartError(
            f"{name}: could not start {layout.image}: {_first_line(exc)} (log: {log_path})"
        ) from exc
    return server


def resolve_image(
    runtime: str, spec: ServerSpec, log: Callable[[str], None] = print
) -> tuple[str, Mapping[str, str]]:
    """The image to run and its labels: the requested one (the official image unless
    ``image=``/``version=`` say otherwise) where present or pullable; else, for the default,
    servegate's own build of the local env's pins where present (said in the log and, through
    the layout's implementation, in the report); else ServegateError naming the image, why,
    and the command that builds one."""
    from servegate.reference_servers import image_build
    from servegate.reference_servers.image_recipes import build_command, runtime_tag

    backend_opts, _ = split_options(spec.options)
    wanted = image_for(runtime, spec.device, backend_opts)
    client = image_build.docker_client()
    try:
        image = image_build.local_image(client, wanted)
        problem = None
        if image is None:
            log(f"[{runtime}] {wanted} is not here; pulling it")
            problem = image_build.pull_problem(client, wanted)
            image = image_build.local_image(client, wanted) if problem is None else None
        if image is not None:
            return wanted, image_build.image_labels(image)
        build = build_command(runtime, spec.device)
        own = runtime_tag(runtime, spec.device)
        fallback = None
        if not (backend_opts.get("image") or backend_opts.get("version")):
            fallback = image_build.local_image(client, own)
        if fallback is not None:
            log(
                f"[{runtime}] {wanted} cannot be pulled ({problem}); using servegate's build "
                f"{own} of the local env's pins instead"
            )
            return own, image_build.image_labels(fallback)
    finally:
        client.close()
    raise ServegateError(
        f"image {wanted} is not present and cannot be pulled ({problem or 'not found'}); "
        f"`{build}` builds {own} from servegate's pins (used by default when the official "
        f"image cannot be had, or name it with --option image={own})"
    )


def container_target(
    name: str, layout: ServerLayout, fixtures: FixtureSet, *, http_port: int, grpc_port: int
) -> Target:
    """The Target of a layout reachable on these local ports (a mapped port, a port-forward)."""
    models = {}
    for model, task in layout.models.items():
        fx = fixtures.models.get(model)
        models[model] = ModelInfo(
            name=model,
            task=task,
            labels=fx.labels if fx else (),
            hidden_size=fx.hidden_size if fx else None,
            mask_token=fx.mask_token if fx else None,
        )
    return Target(
        name=name,
        http_url=f"http://127.0.0.1:{http_port}",
        grpc_address=f"127.0.0.1:{grpc_port}",
        models=models,
        implementation=layout.implementation,
        features=layout.declared_features,
    )
