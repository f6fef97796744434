"""The KServe HuggingFace server: which fixture models it serves and the command that starts it.

One process (``python -m kserve_hf_reference``, in its own virtualenv) hosts every fixture model
whose task huggingfaceserver 0.14.1 serves, each passed as ``--model NAME=DIR:TASK``. The task is
always explicit: upstream infers it from the architecture name only for ``...ForCausalLM`` style
names (GPT2LMHeadModel is not one) and never for embeddings.

The same process always hosts ``numeric-echo`` (task ``custom-numeric``), a custom
``kserve.Model`` (kserve_hf_reference/numeric.py) that echoes every V2 datatype: it stands in for
a user's own model on the SDK's V2 layers, whichever implementation serves the HF models.

Where the official ``huggingfaceserver`` package is importable in that virtualenv, the same
entry point builds the models with the official classes; ``implementation`` says which.

Options (``ServerSpec.options``):

- ``dtype``: "auto" (float16 on a GPU, float32 on the CPU, as upstream), "float32", "float16",
  "bfloat16";
- ``max_length`` (int): the tokens a request may use; above a model's own context it fails to load;
- ``return_probabilities`` (bool): passed on, and without effect in 0.14.1 (upstream parses the
  flag but never hands it to its models);
- ``workers`` (int): kserve's ``--workers``; 0.14.1 logs the number but serves in one process;
- ``implementation``: "auto" (official where importable), "official", "servegate".
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servegate.reference_servers.base import Launch, Ports, ServerSpec

if TYPE_CHECKING:
    from servegate.fixtures.catalog import FixtureModel, FixtureSet

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
PACKAGE = "kserve_hf_reference"
#: the folder that goes on PYTHONPATH so that ``python -m kserve_hf_reference`` finds the package
PACKAGE_PARENT = HERE
UPSTREAM_VERSION = "0.14.1"
#: the custom numeric echo model served beside the HF models (servegate/tasks/numeric_echo.py)
NUMERIC_MODEL_NAME = "numeric-echo"
NUMERIC_TASK = "custom-numeric"

#: HF pipeline task (fixtures.catalog.TASKS) -> huggingfaceserver's --task name
KSERVE_TASKS: Mapping[str, str] = {
    "text-classification": "sequence_classification",
    "token-classification": "token_classification",
    "fill-mask": "fill_mask",
    "text-generation": "text_generation",
    "text2text-generation": "text2text_generation",
    "feature-extraction": "text_embedding",
}
SUPPORTED_TASKS = frozenset(KSERVE_TASKS)

DTYPES = ("auto", "float32", "float16", "bfloat16")
IMPLEMENTATIONS = ("auto", "official", "servegate")
OPTIONS = frozenset({"dtype", "max_length", "return_probabilities", "workers", "implementation"})

# OpenAI routes exist only when a generative model is loaded, and discovery cannot tell that
# chat and streaming work from /openai/v1/models alone. The SDK implements the binary tensor
# data extension (kserve/kserve#3685) but GET /v2 lists only "model_repository_extension".
DECLARED_FEATURES = frozenset({"v1", "openai-chat", "openai-stream", "v2-binary-tensor"})
OPENAI_FEATURES = frozenset({"openai-chat", "openai-stream"})
GENERATIVE_TASKS = frozenset({"text-generation", "text2text-generation"})


@dataclass(frozen=True)
class EnvProbe:
    """What the server's virtualenv has installed."""

    kserve: str | None
    huggingfaceserver: str | None


_PROBE_SCRIPT = """
from importlib import metadata
for name in ("kserve", "huggingfaceserver"):
    try:
        print(name, metadata.version(name))
    except metadata.PackageNotFoundError:
        print(name, "-")
"""


def probe_env(python: Path) -> EnvProbe:
    """Ask ``python`` which kserve and huggingfaceserver it has (cheap: no imports)."""
    try:
        out = subprocess.run(
            [str(python), "-c", _PROBE_SCRIPT],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return EnvProbe(kserve=None, huggingfaceserver=None)
    found = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    return EnvProbe(
        kserve=None if found.get("kserve", "-") == "-" else found["kserve"],
        huggingfaceserver=(
            None if found.get("huggingfaceserver", "-") == "-" else found["huggingfaceserver"]
        ),
    )


class KServeHuggingFaceRuntime:
    """The ``Runtime`` of the KServe HuggingFace server (see reference_servers/base.py)."""

    name = "kserve"

    def __init__(self, probe: Callable[[Path], EnvProbe] = probe_env):
        self._probe = probe

    def requirements_file(self) -> Path:
        return REQUIREMENTS

    def supported_tasks(self) -> frozenset[str]:
        return SUPPORTED_TASKS

    def prepare(
        self, spec: ServerSpec, fixtures: FixtureSet, python: Path, ports: Ports, workdir: Path
    ) -> Launch:
        options = _check_options(spec.options)
        models = self.select_models(spec, fixtures)
        env_info = self._probe(Path(python))
        official = _use_official(options["implementation"], env_info)
        argv = [str(python), "-m", PACKAGE]
        argv += ["--http_port", str(ports.http), "--grpc_port", str(ports.grpc)]
        argv += ["--bind_address", "127.0.0.1"]
        argv += ["--implementation", "official" if official else "servegate"]
        for model in models:
            argv += ["--model", f"{model.name}={model.path}:{KSERVE_TASKS[model.task]}"]
        argv += ["--numeric_model", NUMERIC_MODEL_NAME]
        argv += ["--dtype", options["dtype"]]
        if options["max_length"] is not None:
            argv += ["--max_length", str(options["max_length"])]
        if options["return_probabilities"]:
            argv.append("--return_probabilities")
        argv += ["--workers", str(options["workers"])]
        env = {
            "PYTHONPATH": str(PACKAGE_PARENT),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        if spec.device == "cpu":
            # upstream has no device flag: it takes a GPU whenever torch sees one
            env["CUDA_VISIBLE_DEVICES"] = ""
        features = DECLARED_FEATURES
        if not any(m.task in GENERATIVE_TASKS for m in models):
            features = features - OPENAI_FEATURES
        workdir.mkdir(parents=True, exist_ok=True)
        return Launch(
            argv=argv,
            env=env,
            cwd=workdir,
            models={**{m.name: m.task for m in models}, NUMERIC_MODEL_NAME: NUMERIC_TASK},
            implementation=_implementation(official, env_info),
            declared_features=features,
        )

    def select_models(self, spec: ServerSpec, fixtures: FixtureSet) -> list[FixtureModel]:
        """The fixture models to serve: the named ones, or every one of a supported task."""
        if not spec.models:
            chosen = [m for m in fixtures.models.values() if m.task in SUPPORTED_TASKS]
            if not chosen:
                raise ValueError(f"the fixture set at {fixtures.root} has no model kserve serves")
            return sorted(chosen, key=lambda m: m.name)
        chosen = []
        for name in spec.models:
            model = fixtures.models.get(name)
            if model is None:
                known = ", ".join(sorted(fixtures.models)) or "none"
                raise ValueError(f"no fixture model {name!r} (fixture models: {known})")
            if model.task not in SUPPORTED_TASKS:
                raise ValueError(
                    f"kserve's huggingfaceserver does not serve {name!r} (task {model.task}); "
                    f"it serves {', '.join(sorted(SUPPORTED_TASKS))}"
                )
            chosen.append(model)
        return chosen


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown kserve option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTIONS))}"
        )
    out = {
        "dtype": options.get("dtype", "auto"),
        "max_length": options.get("max_length"),
        "return_probabilities": options.get("return_probabilities", False),
        "workers": options.get("workers", 1),
        "implementation": options.get("implementation", "auto"),
    }
    if out["dtype"] not in DTYPES:
        raise ValueError(f"kserve option dtype={out['dtype']!r}: expected one of {DTYPES}")
    if out["implementation"] not in IMPLEMENTATIONS:
        raise ValueError(
            f"kserve option implementation={out['implementation']!r}: "
            f"expected one of {IMPLEMENTATIONS}"
        )
    for key in ("max_length", "workers"):
        value = out[key]
        if value is None and key == "max_length":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"kserve option {key}={value!r}: expected a positive integer")
    if not isinstance(out["return_probabilities"], bool):
        raise ValueError("kserve option return_probabilities: expected true or false")
    return out


def _use_official(choice: str, env_info: EnvProbe) -> bool:
    if choice == "official" and env_info.huggingfaceserver is None:
        raise ValueError(
            "kserve option implementation=official: huggingfaceserver is not installed in the "
            "server's virtualenv (install it from KServe's source, python/huggingfaceserver)"
        )
    return choice == "official" or (choice == "auto" and env_info.huggingfaceserver is not None)


def _implementation(official: bool, env_info: EnvProbe) -> str:
    kserve = env_info.kserve or "unknown"
    if official:
        version = env_info.huggingfaceserver
        return f"KServe huggingfaceserver {version} (official) on kserve {kserve}"
    return (
        f"servegate KServe HF server (huggingfaceserver {UPSTREAM_VERSION} behaviour) "
        f"on kserve {kserve} SDK"
    )


RUNTIME = KServeHuggingFaceRuntime()
