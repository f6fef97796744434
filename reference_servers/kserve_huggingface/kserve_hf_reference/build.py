"""Build this package's models from the command line, as upstream's ``__main__`` would."""

from __future__ import annotations

import argparse
from typing import Any

from transformers import AutoConfig

from .cli import ModelSpec, resolve_dtype
from .encoder import EncoderModel
from .generative import GenerativeModel
from .tasks import GENERATIVE, infer_task


def build_servegate(spec: ModelSpec, args: argparse.Namespace) -> Any:
    """One unloaded EncoderModel or GenerativeModel for ``spec``."""
    if args.predictor_host:
        raise ValueError("--predictor_host (transformer mode) is not implemented here")
    config = AutoConfig.from_pretrained(spec.path, trust_remote_code=args.trust_remote_code)
    task = spec.task or infer_task(config)
    common: dict[str, Any] = {
        "task": task,
        "config": config,
        "dtype": resolve_dtype(args.dtype),
        "max_length": args.max_model_len,
        "do_lower_case": not args.disable_lower_case,
    }
    if task in GENERATIVE:
        return GenerativeModel(spec.name, spec.path, **common)
    return EncoderModel(
        spec.name,
        spec.path,
        add_special_tokens=not args.disable_special_tokens,
        return_token_type_ids=args.return_token_type_ids,
        **common,
    )
