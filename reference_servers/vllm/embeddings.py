"""vLLM's CPU build serving the embedding fixture (``--servers vllm-embeddings``): the same
runtime and env as ``vllm``, another process, since vLLM serves one model per process."""

from __future__ import annotations

from servegate.reference_servers.vllm.runtime import EMBEDDING_MODEL, VllmCpuRuntime

RUNTIME = VllmCpuRuntime(name="vllm-embeddings", default_model=EMBEDDING_MODEL)
