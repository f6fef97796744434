"""Build models with huggingfaceserver's own classes, where that package is installed.

The official server loads one model per process; this builds each model the way its
``__main__`` does (same constructor arguments, same defaults), so one process can host several
official models. Import lazily: the package is optional and pulls accelerate.
"""

from __future__ import annotations

import argparse
import importlib.util
from importlib import metadata
from typing import Any

from transformers import AutoConfig

from .cli import ModelSpec, resolve_dtype


def official_available() -> bool:
    return importlib.util.find_spec("huggingfaceserver") is not None


def official_version() -> str:
    try:
        return metadata.version("huggingfaceserver")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_official(spec: ModelSpec, args: argparse.Namespace) -> Any:
    """One unloaded HuggingfaceEncoderModel or HuggingfaceGenerativeModel for ``spec``."""
    from huggingfaceserver.encoder_model import HuggingfaceEncoderModel
    from huggingfaceserver.generative_model import HuggingfaceGenerativeModel
    from huggingfaceserver.request_logger import RequestLogger
    from huggingfaceserver.task import (
        SUPPORTED_TASKS,
        MLTask,
        infer_task_from_model_architecture,
        is_generative_task,
    )
    from kserve.model import PredictorConfig

    config = AutoConfig.from_pretrained(
        spec.path, revision=args.model_revision, trust_remote_code=args.trust_remote_code
    )
    if spec.task is not None:
        task = MLTask[spec.task.value]
        if task not in SUPPORTED_TASKS:
            raise ValueError(f"Unsupported task: {spec.task.value}")
    else:
        task = infer_task_from_model_architecture(config)
    logger = None if args.disable_log_requests else RequestLogger(max_log_len=args.max_log_len)
    common: dict[str, Any] = {
        "model_id_or_path": spec.path,
        "task": task,
        "model_config": config,
        "model_revision": args.model_revision,
        "tokenizer_revision": args.tokenizer_revision,
        "do_lower_case": not args.disable_lower_case,
        "max_length": args.max_model_len,
        "dtype": resolve_dtype(args.dtype),
        "trust_remote_code": args.trust_remote_code,
        "request_logger": logger,
    }
    if is_generative_task(task):
        return HuggingfaceGenerativeModel(spec.name, **common)
    # upstream 0.14.1 passes no return_probabilities here either (the flag has no effect)
    return HuggingfaceEncoderModel(
        model_name=spec.name,
        add_special_tokens=not args.disable_special_tokens,
        tensor_input_names=args.tensor_input_names,
        return_token_type_ids=args.return_token_type_ids,
        predictor_config=PredictorConfig(
            args.predictor_host,
            args.predictor_protocol,
            args.predictor_use_ssl,
            args.predictor_request_timeout_seconds,
        ),
        **common,
    )
