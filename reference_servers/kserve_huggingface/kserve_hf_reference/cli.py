"""The command line: huggingfaceserver 0.14.1's flags, plus ``--model`` to host several models.

``python -m kserve_hf_reference --model_dir DIR --model_name NAME [--task T]`` starts one model
exactly like ``python -m huggingfaceserver``; ``--model NAME=DIR[:TASK]`` (repeatable) adds
models to the same process. kserve's own ModelServer flags (``--http_port``, ``--grpc_port``,
``--workers`` ...) come from the SDK's parser, as upstream.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import kserve
import torch

from .tasks import KNOWN_UNSERVED, Task, parse_task

DTYPE_CHOICES = ("auto", "float16", "float32", "bfloat16", "float", "half")
TORCH_DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
}
#: where upstream looks when neither --model_dir nor --model_id is given
DEFAULT_MODEL_DIR = "/mnt/models"
IMPLEMENTATIONS = ("auto", "servegate", "official")


@dataclass(frozen=True)
class ModelSpec:
    """One model to serve: its endpoint name, its directory and, optionally, its task."""

    name: str
    path: str
    task: Task | None


def _comma_list(value: str) -> list[str]:
    return value.split(",")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kserve_hf_reference",
        description="KServe HF server (huggingfaceserver 0.14.1 behaviour) on the kserve SDK",
        parents=[kserve.model_server.parser],
    )
    add = parser.add_argument
    add("--model_dir", default=None, help=f"model directory (default {DEFAULT_MODEL_DIR})")
    add("--model_id", default=None, help="HuggingFace model id or local path (offline here)")
    add("--model_revision", default=None)
    add("--tokenizer_revision", default=None)
    add(
        "--max_length",
        dest="max_model_len",
        type=int,
        default=None,
        help="max tokens per request; alias of --max_model_len, as upstream",
    )
    add("--max_model_len", type=int, default=None)
    add("--disable_lower_case", action="store_true")
    add("--disable_special_tokens", action="store_true")
    add("--trust_remote_code", action="store_true")
    add("--tensor_input_names", type=_comma_list, default=None)
    add("--task", default=None, help=f"one of {', '.join(t.value for t in Task)}")
    add("--backend", default="auto", choices=("auto", "huggingface", "vllm"))
    add("--return_token_type_ids", action="store_true")
    add(
        "--return_probabilities",
        action="store_true",
        help="accepted, and ignored: huggingfaceserver 0.14.1 never passes it to its models",
    )
    add("--disable_log_requests", action="store_true")
    add("--max_log_len", "--max-log-len", type=int, default=None)
    add(
        "--dtype",
        default="auto",
        choices=DTYPE_CHOICES,
        help="weights dtype; auto is float16 on a GPU, float32 on the CPU",
    )
    add(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="NAME=DIR[:TASK]",
        help="serve another model in this process (repeatable)",
    )
    add(
        "--implementation",
        default="auto",
        choices=IMPLEMENTATIONS,
        help="official: huggingfaceserver's model classes; servegate: this package's; "
        "auto: official where importable",
    )
    add(
        "--numeric_model",
        default=None,
        metavar="NAME",
        help="also serve NAME, a custom kserve.Model echoing every V2 datatype (numeric.py)",
    )
    add(
        "--bind_address",
        default=None,
        help="listen on this address only (upstream listens on every interface)",
    )
    return parser


def resolve_dtype(name: str) -> torch.dtype:
    if name == "auto":
        return torch.float16 if torch.cuda.is_available() else torch.float32
    return TORCH_DTYPES[name]


def parse_model_option(value: str) -> ModelSpec:
    """``NAME=DIR[:TASK]``; a ``:TASK`` suffix counts only when it names a task."""
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"--model {value!r}: expected NAME=DIR[:TASK]")
    path, colon, task_name = rest.rpartition(":")
    known = {t.value for t in Task} | set(KNOWN_UNSERVED)
    if colon and path and task_name in known:
        return ModelSpec(name, path, parse_task(task_name))
    return ModelSpec(name, rest, None)


def model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    """Every model the command line asks for, the upstream-style one first."""
    specs = [parse_model_option(v) for v in args.models]
    single = args.model_id or args.model_dir
    if single or not specs:
        task = parse_task(args.task) if args.task else None
        specs.insert(0, ModelSpec(args.model_name, single or DEFAULT_MODEL_DIR, task))
    elif args.task:
        raise argparse.ArgumentTypeError("--task applies to --model_dir; use --model NAME=DIR:TASK")
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise argparse.ArgumentTypeError(f"model names used twice: {', '.join(duplicates)}")
    for spec in specs:
        if not Path(spec.path).is_dir():
            raise FileNotFoundError(f"model {spec.name}: no directory {spec.path}")
    return specs
