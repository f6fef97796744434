"""NVIDIA Triton Inference Server, as PyTriton bundles it: the models it binds and the command
that starts it.

One process (``python triton_models.py``, in the Triton env) starts ``tritonserver`` with
PyTriton and binds three Python models (triton_models.py): ``numeric-echo`` (servegate's
numeric-echo contract as far as a Triton model config can declare it), ``identity`` (FP32,
batched) and ``bytes-echo`` (BYTES). No HuggingFace fixture model is served: Triton serves HF
pipelines only through a user's own Python model, and that would test servegate's model, not
Triton.

The env is made from Debian's own python3.11 (:data:`BASE_INTERPRETER`): the Python-backend
stub bundled in nvidia-pytriton links the distribution's libpython3.11, and from a venv of
another 3.11 build the models fail to load. It runs CPU-only; Triton's NVML and DCGM warnings
at start are harmless.

Nothing is declared by hand: discovery reads GET /v2 (which lists ``binary_tensor_data``) and
probes the models. PyTriton restricts the repository, statistics, trace, logging and
shared-memory APIs to a random access token by default (HTTP 403 without the
``triton-access-token`` header); the reference keeps that default, as users get it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from servegate.errors import Unreachable
from servegate.protocols.v2_rest import V2RestClient
from servegate.reference_servers.base import Launch, Ports, ServerSpec
from servegate.reference_servers.envs import BaseInterpreter
from servegate.targets import Target

if TYPE_CHECKING:
    from servegate.fixtures.catalog import FixtureSet

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
SERVER_SCRIPT = HERE / "triton_models.py"

NUMERIC_MODEL_NAME = "numeric-echo"
NUMERIC_TASK = "custom-numeric"
#: model name -> task, as the launched server serves them; None: no task servegate knows
MODELS: dict[str, str | None] = {
    NUMERIC_MODEL_NAME: NUMERIC_TASK,
    "identity": None,
    "bytes-echo": None,
}

BASE_INTERPRETER = BaseInterpreter(
    candidates=("/usr/bin/python3.11", "python3.11"),
    prefix="/usr",
    hint="Debian's python3.11 with venv (apt-get install python3.11-venv)",
)


def pytriton_version(python: Path) -> str:
    """nvidia-pytriton's version in the env (cheap: no imports); "unknown" when unreadable."""
    script = "from importlib import metadata; print(metadata.version('nvidia-pytriton'))"
    try:
        out = subprocess.run(
            [str(python), "-c", script], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def describe(target: Target, pytriton: str) -> str:
    """What the running server says it is (GET /v2 name and version), and PyTriton's version.

    Written "Triton Inference Server (triton 2.51.0, nvidia-pytriton 0.7.0)": the version
    follows the name GET /v2 gives, as discovery writes it for a Triton found at a URL, so one
    deviation entry (``implementation: triton``) holds for both.
    """
    client = V2RestClient(target.http_url, target.connection)
    try:
        reply = client.server_metadata()
        meta = reply.json() if reply.status == 200 else {}
    except (Unreachable, AssertionError):
        meta = {}
    finally:
        client.close()
    name = str(meta.get("name", "triton")) if isinstance(meta, dict) else "triton"
    version = str(meta.get("version", "unknown")) if isinstance(meta, dict) else "unknown"
    return f"Triton Inference Server ({name} {version}, nvidia-pytriton {pytriton})"


class TritonRuntime:
    """The ``Runtime`` of Triton under PyTriton (see reference_servers/base.py)."""

    name = "triton"
    base_interpreter = BASE_INTERPRETER

    def requirements_file(self) -> Path:
        return REQUIREMENTS

    def supported_tasks(self) -> frozenset[str]:
        # no HF pipeline task: only the bound custom models
        return frozenset()

    def prepare(
        self, spec: ServerSpec, fixtures: FixtureSet, python: Path, ports: Ports, workdir: Path
    ) -> Launch:
        if spec.options:
            raise ValueError(f"triton takes no options (got {', '.join(sorted(spec.options))})")
        unknown = sorted(set(spec.models) - set(MODELS))
        if unknown:
            raise ValueError(
                f"triton serves only its own models ({', '.join(MODELS)}), not {', '.join(unknown)}"
            )
        if spec.device != "cpu":
            raise ValueError("the triton reference runs CPU-only (its models are numpy code)")
        assert ports.metrics is not None, "the local backend gives every server a metrics port"
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [str(python), str(SERVER_SCRIPT)]
        argv += ["--http-port", str(ports.http), "--grpc-port", str(ports.grpc)]
        argv += ["--metrics-port", str(ports.metrics), "--address", "127.0.0.1"]
        version = pytriton_version(python)
        return Launch(
            argv=argv,
            env={"PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""},
            cwd=workdir,
            models={name: task or "" for name, task in MODELS.items()},
            implementation=f"Triton Inference Server (nvidia-pytriton {version})",
            describe=lambda target: describe(target, version),
        )


RUNTIME = TritonRuntime()
