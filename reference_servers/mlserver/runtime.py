"""MLServer with mlserver-huggingface: the settings files it reads and the command that starts it.

One MLServer model per fixture model (``mlserver_huggingface.HuggingFaceRuntime``, the fixture
directory as ``pretrained_model``) plus ``numeric-echo``, a small custom runtime
(numeric_runtime.py) that echoes every V2 datatype.

Options (``ServerSpec.options``):

- ``parallel_workers`` (int, MLServer's default 1; 0 runs inference in the server process)
- ``max_batch_size`` (int) and ``max_batch_time_ms`` (float): adaptive batching of the HF models;
  MLServer only batches when both are set (size > 1, time > 0). The HF runtime also uses
  max_batch_size as the pipeline's batch size.
- ``dtype`` ("auto", "float32", "float16", "bfloat16"): see :func:`_dtype_model_dir`.
- ``optimum`` (bool): ONNX Runtime through optimum (``optimum_model``). Not in
  :data:`OPTIONS_VERIFIED`: the model is exported to ONNX at load, and torch 2.13's exporter
  imports onnxscript, which the pinned env lacks; the model fails to load and MLServer exits.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servegate.reference_servers.base import Launch, Ports, ServerSpec

if TYPE_CHECKING:
    from servegate.fixtures.catalog import FixtureModel, FixtureSet

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
NUMERIC_RUNTIME_SOURCE = HERE / "numeric_runtime.py"

NUMERIC_MODEL_NAME = "numeric-echo"
NUMERIC_TASK = "custom-numeric"
HF_IMPLEMENTATION = "mlserver_huggingface.HuggingFaceRuntime"
NUMERIC_IMPLEMENTATION = "numeric_runtime.NumericEcho"

#: V2 datatypes the numeric model declares one input (and echo output) for, by lower-case name
V2_DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)

#: Pipeline tasks checked to load and infer with mlserver-huggingface 1.7.1 and the fixtures.
SUPPORTED_TASKS = frozenset(
    {
        "text-classification",
        "token-classification",
        "question-answering",
        "fill-mask",
        "text-generation",
        "text2text-generation",
        "feature-extraction",
        "image-classification",
    }
)

#: tasks that fail to load when max_batch_size > 1 (see :func:`servable_tasks`)
BATCHING_UNSUPPORTED_TASKS = frozenset({"image-classification"})

DEVICE_SETTING = {"cpu": "cpu", "cuda": "cuda"}
DTYPES = ("auto", "float32", "float16", "bfloat16")

# Discovery finds these too (GET /v2 names the server "mlserver"); declared so that they hold
# whatever MLServer's `server_name` setting says.
DECLARED_FEATURES = frozenset({"v2-rest", "v2-grpc", "hf-v2-kwargs"})

# `mlserver` has no __main__ module; `-m mlserver.cli.main` works but warns (runpy finds the
# module already imported), and the console script may point at a moved interpreter.
MLSERVER_MAIN = "from mlserver.cli.main import main; main()"

SERVER_ENV = {
    # Fixture models are local directories; nothing may reach a model hub.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # mlserver-huggingface imports tensorflow itself; keep transformers on the PyTorch path and
    # TensorFlow's start-up banner out of the logs.
    "USE_TF": "0",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # Parallel workers are forked processes; the tokenizers' thread pool warns and may deadlock.
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


class MLServerRuntime:
    """The :class:`reference_servers.base.Runtime` for MLServer."""

    name = "mlserver"

    def __init__(self) -> None:
        self._versions: dict[Path, dict[str, str]] = {}

    def requirements_file(self) -> Path:
        return REQUIREMENTS

    def supported_tasks(self) -> frozenset[str]:
        return SUPPORTED_TASKS

    def prepare(
        self, spec: ServerSpec, fixtures: FixtureSet, python: Path, ports: Ports, workdir: Path
    ) -> Launch:
        """Write settings.json and one model folder per model into ``workdir``."""
        options = dict(spec.options)
        unknown = set(options) - KNOWN_OPTIONS
        if unknown:
            raise ValueError(
                f"unknown MLServer option(s) {sorted(unknown)}; known: {sorted(KNOWN_OPTIONS)}"
            )
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        models_root = workdir / "models"
        if models_root.exists():
            # a previous prepare's model folders would still be picked up by MLServer's scan
            shutil.rmtree(models_root)
        models_root.mkdir()

        _write_json(workdir / "settings.json", server_settings(options, ports, workdir))

        served: dict[str, str] = {}
        for model in select_models(fixtures, spec.models, options):
            folder = models_root / model.name
            folder.mkdir()
            pretrained = _dtype_model_dir(Path(model.path), folder, options.get("dtype"))
            _write_json(
                folder / "model-settings.json",
                hf_model_settings(model.name, model.task, pretrained, spec.device, options),
            )
            served[model.name] = model.task

        folder = models_root / NUMERIC_MODEL_NAME
        folder.mkdir()
        # MLServer puts a model's folder on sys.path before importing its implementation, in the
        # server and in every parallel worker, so a copy beside model-settings.json is enough.
        shutil.copyfile(NUMERIC_RUNTIME_SOURCE, folder / NUMERIC_RUNTIME_SOURCE.name)
        _write_json(folder / "model-settings.json", numeric_model_settings())
        served[NUMERIC_MODEL_NAME] = NUMERIC_TASK

        return Launch(
            argv=[str(python), "-c", MLSERVER_MAIN, "start", str(workdir)],
            env={**SERVER_ENV, "HF_HOME": str(workdir / "hf-home")},
            cwd=workdir,
            models=served,
            implementation=self.implementation(python),
            declared_features=DECLARED_FEATURES,
        )

    def implementation(self, python: Path) -> str:
        """'MLServer X with mlserver-huggingface Y', read from the env, else from the pins."""
        versions = self._versions.get(python)
        if versions is None:
            versions = installed_versions(python) or pinned_versions(REQUIREMENTS)
            self._versions[python] = versions
        return (
            f"MLServer {versions.get('mlserver', 'unknown')} with mlserver-huggingface "
            f"{versions.get('mlserver-huggingface', 'unknown')}"
        )


KNOWN_OPTIONS = frozenset(
    {"parallel_workers", "max_batch_size", "max_batch_time_ms", "dtype", "optimum"}
)
#: options seen to work end to end with the pinned env (optimum is not: see the module doc)
OPTIONS_VERIFIED = frozenset({"parallel_workers", "max_batch_size", "max_batch_time_ms", "dtype"})


def server_settings(options: Mapping[str, Any], ports: Ports, workdir: Path) -> dict[str, Any]:
    """MLServer's settings.json."""
    settings: dict[str, Any] = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": ports.http,
        "grpc_port": ports.grpc,
        "parallel_workers": int(options.get("parallel_workers", 1)),
        "model_repository_root": str(workdir / "models"),
        "load_models_at_startup": True,
        # Both default to folders under the current directory; keep them in the workdir.
        "metrics_dir": str(workdir / "metrics"),
        "environments_dir": str(workdir / "envs"),
    }
    if ports.metrics is None:
        # No port to give it: no metrics server at all rather than one on MLServer's 8082.
        settings["metrics_endpoint"] = None
    else:
        settings["metrics_port"] = ports.metrics
    return settings


def hf_model_settings(
    name: str, task: str, pretrained: Path, device: str, options: Mapping[str, Any]
) -> dict[str, Any]:
    """model-settings.json of one HuggingFace pipeline model."""
    if task not in SUPPORTED_TASKS:
        raise ValueError(f"MLServer cannot serve task {task!r} (model {name!r})")
    extra: dict[str, Any] = {
        "task": task,
        "pretrained_model": str(pretrained),
        "device": DEVICE_SETTING[device],
        "framework": "pt",
    }
    dtype = options.get("dtype")
    if dtype not in (None, "float32"):
        # mlserver-huggingface passes model_kwargs to from_pretrained, which takes a torch dtype
        # object or "auto" only; JSON can carry "auto", which reads config.json's torch_dtype.
        extra["model_kwargs"] = {"torch_dtype": "auto"}
    if options.get("optimum"):
        extra["optimum_model"] = True
    settings: dict[str, Any] = {
        "name": name,
        "implementation": HF_IMPLEMENTATION,
        "parameters": {"extra": extra},
    }
    batch_size = int(options.get("max_batch_size", 0) or 0)
    if batch_size:
        settings["max_batch_size"] = batch_size
    batch_time_ms = float(options.get("max_batch_time_ms", 0) or 0)
    if batch_time_ms:
        settings["max_batch_time"] = batch_time_ms / 1000.0
    return settings


def numeric_model_settings() -> dict[str, Any]:
    """model-settings.json of the numeric echo model.

    It accepts inputs of any name; the metadata names one input per datatype (``bool``,
    ``uint8`` ... ``bytes``) and the outputs those produce, so a client can build a request
    from the metadata alone. No adaptive batching: requests with different inputs cannot merge.
    """
    inputs = [{"name": dt.lower(), "datatype": dt, "shape": [-1]} for dt in V2_DATATYPES]
    outputs = [dict(tensor) for tensor in inputs] + [
        {"name": f"{dt.lower()}_sum", "datatype": "FP64", "shape": [1]}
        for dt in V2_DATATYPES
        if dt != "BYTES"
    ]
    return {
        "name": NUMERIC_MODEL_NAME,
        "implementation": NUMERIC_IMPLEMENTATION,
        "platform": "custom",
        "inputs": inputs,
        "outputs": outputs,
    }


def servable_tasks(options: Mapping[str, Any]) -> frozenset[str]:
    """The tasks MLServer can serve with these options.

    With max_batch_size > 1, mlserver-huggingface 1.7.1 reads ``pipeline.tokenizer.pad_token_id``
    to set up padding; an image pipeline has no tokenizer (the runtime passes the model path
    as one, which stays a string), so the model fails to load and MLServer exits.
    """
    if int(options.get("max_batch_size", 0) or 0) > 1:
        return SUPPORTED_TASKS - BATCHING_UNSUPPORTED_TASKS
    return SUPPORTED_TASKS


def select_models(
    fixtures: FixtureSet, names: Iterable[str], options: Mapping[str, Any] | None = None
) -> list[FixtureModel]:
    """The fixture models to serve: those named, or every one of a task MLServer can serve."""
    tasks = servable_tasks(options or {})
    available = dict(fixtures.models)
    wanted = tuple(names)
    if not wanted:
        return [m for m in available.values() if m.task in tasks]
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ValueError(f"no fixture model(s) {missing}; there are {sorted(available)}")
    unsupported = [name for name in wanted if available[name].task not in tasks]
    if unsupported:
        raise ValueError(
            f"MLServer cannot serve {unsupported} with these options: their tasks are not in "
            f"{sorted(tasks)}"
        )
    return [available[name] for name in wanted]


def _dtype_model_dir(source: Path, folder: Path, dtype: str | None) -> Path:
    """The directory to give as pretrained_model for ``dtype``.

    For float16/bfloat16, a directory of links to the fixture's files whose config.json says
    that torch_dtype; with model_kwargs torch_dtype "auto" the weights load in that dtype.
    """
    if dtype not in DTYPES and dtype is not None:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype in (None, "float32", "auto"):
        return source
    target = folder / f"weights-{dtype}"
    target.mkdir()
    for item in source.iterdir():
        if item.name != "config.json":
            (target / item.name).symlink_to(item.resolve())
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    config["torch_dtype"] = dtype
    _write_json(target / "config.json", config)
    return target


def installed_versions(python: Path) -> dict[str, str]:
    """mlserver and mlserver-huggingface versions in ``python``'s env; {} when unknown."""
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({d: m.version(d) for d in ('mlserver', 'mlserver-huggingface')}))"
    )
    try:
        done = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, timeout=30, check=True
        )
        return dict(json.loads(done.stdout))
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def pinned_versions(requirements: Path) -> dict[str, str]:
    """``name==version`` pins of a requirements file."""
    pins: dict[str, str] = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        name, sep, version = line.partition("==")
        if sep:
            pins[name.strip().lower()] = version.strip()
    return pins


def _write_json(path: Path, content: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")


RUNTIME = MLServerRuntime()
name = RUNTIME.name
