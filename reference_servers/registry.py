"""The reference-server runtimes by name."""

from __future__ import annotations

import importlib

from servegate.errors import BadTarget
from servegate.reference_servers.base import Runtime

#: runtime name -> module holding its RUNTIME object
RUNTIMES = {
    "mlserver": "servegate.reference_servers.mlserver.runtime",
    "kserve": "servegate.reference_servers.kserve_huggingface.runtime",
    "triton": "servegate.reference_servers.triton.runtime",
    "vllm": "servegate.reference_servers.vllm.runtime",
    "vllm-embeddings": "servegate.reference_servers.vllm.embeddings",
}


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``; BadTarget naming the known ones otherwise."""
    try:
        module = RUNTIMES[name]
    except KeyError:
        known = ", ".join(sorted(RUNTIMES))
        raise BadTarget(f"unknown reference server {name!r}; known: {known}") from None
    runtime: Runtime = importlib.import_module(module).RUNTIME
    return runtime
