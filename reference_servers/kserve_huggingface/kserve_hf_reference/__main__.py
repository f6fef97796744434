"""Entry point: ``python -m kserve_hf_reference --model_dir DIR --model_name NAME ...``."""

from __future__ import annotations

import sys
from importlib import metadata

from kserve import logging as kserve_logging
from kserve.logging import logger

from . import OFFICIAL_SERVER_NAME, SERVER_NAME, UPSTREAM_VERSION
from .cli import build_parser, model_specs


def main(argv: list[str] | None = None) -> int:
    args, _ = build_parser().parse_known_args(argv)
    if args.configure_logging:
        kserve_logging.configure_logging(args.log_config_file)
    try:
        from .official import official_available, official_version

        use_official = args.implementation == "official" or (
            args.implementation == "auto" and official_available()
        )
        if args.backend == "vllm":
            raise RuntimeError("Backend is set to 'vllm' but vLLM is not available")
        if use_official:
            from .official import build_official as build

            if not official_available():
                raise RuntimeError("--implementation official: huggingfaceserver is not installed")
            name, version = OFFICIAL_SERVER_NAME, official_version()
            logger.info(f"Implementation: KServe huggingfaceserver {version} (official classes)")
        else:
            from .build import build_servegate as build

            name, version = SERVER_NAME, metadata.version("kserve")
            logger.info(
                f"Implementation: servegate KServe HF server (huggingfaceserver "
                f"{UPSTREAM_VERSION} behaviour) on kserve {version}"
            )
        if args.return_probabilities:
            logger.warning(
                "--return_probabilities has no effect: huggingfaceserver "
                f"{UPSTREAM_VERSION} does not pass it to its models"
            )
        models = []
        for spec in model_specs(args):
            model = build(spec, args)
            model.load()
            models.append(model)
        if args.numeric_model:
            from .numeric import NumericEcho

            if any(m.name == args.numeric_model for m in models):
                raise ValueError(f"--numeric_model {args.numeric_model}: name already taken")
            numeric = NumericEcho(args.numeric_model)
            numeric.load()
            models.append(numeric)
        from .server import serve

        serve(models, args, name, version)
    except Exception as exc:
        logger.error(f"Failed to start model server: {exc}", exc_info=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
