"""A KServe HuggingFace model server on the kserve SDK, answering like huggingfaceserver 0.14.1.

Standalone: it runs in its own virtualenv (kserve, torch, transformers) and imports nothing of
servegate. ``python -m kserve_hf_reference --help`` lists the flags.
"""

#: the huggingfaceserver release whose behaviour this package reproduces
UPSTREAM_VERSION = "0.14.1"
SERVER_NAME = "servegate-kserve-huggingface"
OFFICIAL_SERVER_NAME = "kserve-huggingfaceserver"
