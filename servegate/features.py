"""The catalogue of features a target may support, and the profiles that group them.

A feature is a named capability a test needs. A target supports a feature when discovery finds
it or the user declares it; a test whose features the target lacks is *unsupported*, which the
report counts apart from passed, failed and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

TASKS = (
    "text-classification",
    "token-classification",
    "question-answering",
    "fill-mask",
    "text-generation",
    "text2text-generation",
    "feature-extraction",
    "image-classification",
)


@dataclass(frozen=True)
class Feature:
    name: str
    description: str


_FEATURES = [
    Feature("v2-rest", "Open Inference Protocol (V2) over REST: GET /v2 answers"),
    Feature("v2-grpc", "Open Inference Protocol (V2) over gRPC: ServerLive answers"),
    Feature("v1", "KServe V1 protocol: GET /v1/models answers"),
    Feature("openai", "OpenAI API routes: the models list answers"),
    Feature(
        "hf-v2-kwargs",
        "HuggingFace tasks over V2 with inputs named after pipeline arguments and a BYTES "
        "'output' of JSON strings (MLServer HuggingFace runtime encoding)",
    ),
    Feature(
        "hf-v2-input0",
        "HuggingFace tasks over V2 with the text in inputs[0] and outputs named output-0 "
        "(KServe huggingfaceserver encoding)",
    ),
    *(Feature(f"task-{t}", f"serves a model for the HuggingFace task {t}") for t in TASKS),
]

FEATURES: dict[str, Feature] = {f.name: f for f in _FEATURES}


def unknown_features(names: list[str] | set[str] | frozenset[str]) -> list[str]:
    return sorted(n for n in names if n not in FEATURES)


#: the reason prefix by which the report tells "unsupported" from an ordinary skip
UNSUPPORTED_PREFIX = "unsupported:"


def unsupported_reason(target_name: str, missing: list[str]) -> str:
    return f"{UNSUPPORTED_PREFIX} {target_name} lacks feature(s) {', '.join(missing)}"
