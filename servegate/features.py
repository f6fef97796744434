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
    "feature-extraction",
    "text-generation",
    "text2text-generation",
    "image-classification",
)


@dataclass(frozen=True)
class Feature:
    name: str
    description: str


_FEATURES = [
    Feature("v2-rest", "Open Inference Protocol (V2) over REST: GET /v2 answers"),
    Feature("v2-grpc", "Open Inference Protocol (V2) over gRPC: ServerLive answers"),
    Feature(
        "v2-binary-tensor", "V2 REST binary tensor data extension (Inference-Header-Content-Length)"
    ),
    Feature("v2-model-versions", "V2 routes with a model version: /v2/models/{m}/versions/{v}"),
    Feature("v2-repository", "V2 model repository extension: index, load and unload of models"),
    Feature(
        "v2-json-fp16",
        "FP16 tensor data as JSON numbers over V2 REST, which the protocol calls problematic and "
        "does not require (declare it with --features)",
    ),
    Feature("v1", "KServe V1 protocol: GET /v1/models answers"),
    Feature("openai", "OpenAI API routes: the models list answers"),
    Feature("openai-completions", "OpenAI (legacy) completions: POST {base}/completions"),
    Feature("openai-chat", "OpenAI chat completions: POST {base}/chat/completions"),
    Feature("openai-stream", "OpenAI streaming answers as server-sent events ending data: [DONE]"),
    Feature("openai-stream-usage", "OpenAI stream_options.include_usage: a final usage chunk"),
    Feature("openai-embeddings", "OpenAI embeddings: POST {base}/embeddings"),
    Feature(
        "openai-deterministic",
        "OpenAI sampling the server promises to repeat: temperature 0 and a fixed seed give the "
        "same text, streamed or not (the API does not promise it; declare it with --features)",
    ),
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
    Feature(
        "v1-hf-predictions",
        "KServe huggingfaceserver's meaning of V1 predictions per task (class ids, tokens, "
        "vectors); V1 itself leaves the response payload open",
    ),
    Feature(
        "hardening",
        "good practice beyond the specs (never a 5xx for bad input, size limits, the gRPC code "
        "that names the fault); checked only when the hardening profile is requested",
    ),
    *(Feature(f"task-{t}", f"serves a model for the HuggingFace task {t}") for t in TASKS),
    Feature(
        "task-custom-numeric",
        "serves a model keeping servegate's numeric echo contract (every V2 datatype echoed, "
        "<name>_sum outputs): a custom runtime like the reference servers' numeric-echo",
    ),
]

FEATURES: dict[str, Feature] = {f.name: f for f in _FEATURES}


def unknown_features(names: list[str] | set[str] | frozenset[str]) -> list[str]:
    return sorted(n for n in names if n not in FEATURES)


#: the feature a check of a task-parametrised test implies (its model must serve the task)
TASK_FEATURES = frozenset(f"task-{t}" for t in TASKS)


@dataclass(frozen=True)
class Profile:
    """A named set of features a runtime claims as a whole, as Gateway API's conformance
    profiles do: every *core* feature is required; *extended* features are optional, but the
    checks of those the target supports must pass."""

    name: str
    description: str
    core: frozenset[str]
    extended: frozenset[str]

    @property
    def features(self) -> frozenset[str]:
        return self.core | self.extended

    def covers(self, features: frozenset[str] | set[str]) -> bool:
        """Whether a check needing ``features`` belongs to this profile."""
        return bool(features) and features <= self.features

    def is_core(self, features: frozenset[str] | set[str]) -> bool:
        return bool(features) and features <= self.core


_PROFILES = [
    Profile(
        "oip-rest",
        "Open Inference Protocol (V2) over REST",
        core=frozenset({"v2-rest"}),
        extended=frozenset(
            {
                "hf-v2-kwargs",
                "hf-v2-input0",
                "v2-binary-tensor",
                "v2-model-versions",
                "v2-repository",
                "v2-json-fp16",
                "task-custom-numeric",
            }
        )
        | TASK_FEATURES,
    ),
    Profile(
        "oip-grpc",
        "Open Inference Protocol (V2) over gRPC",
        core=frozenset({"v2-grpc"}),
        extended=frozenset(
            {"hf-v2-kwargs", "hf-v2-input0", "v2-model-versions", "task-custom-numeric"}
        )
        | TASK_FEATURES,
    ),
    Profile(
        "kserve-v1",
        "KServe V1 protocol: model list, readiness, predict",
        core=frozenset({"v1"}),
        extended=frozenset({"v1-hf-predictions"}) | TASK_FEATURES,
    ),
    Profile(
        "openai",
        "OpenAI-compatible API: models list, completions, chat, streaming, embeddings",
        core=frozenset({"openai"}),
        extended=frozenset(
            {
                "openai-completions",
                "openai-chat",
                "openai-stream",
                "openai-stream-usage",
                "openai-embeddings",
                "openai-deterministic",
            }
        )
        | TASK_FEATURES,
    ),
    Profile(
        "hardening",
        "good practice beyond the specs, over every protocol: bad input never gets a 5xx, "
        "limits are enforced, gRPC codes name the fault",
        core=frozenset({"hardening"}),
        extended=frozenset(name for name in (f.name for f in _FEATURES) if name != "hardening"),
    ),
]

PROFILES: dict[str, Profile] = {p.name: p for p in _PROFILES}


def parse_profiles(value: str | None) -> tuple[str, ...]:
    """Split a comma-separated profile list; ValueError naming the unknown ones."""
    names = tuple(dict.fromkeys(n.strip() for n in (value or "").split(",") if n.strip()))
    unknown = [n for n in names if n not in PROFILES]
    if unknown:
        raise ValueError(f"unknown profile(s) {', '.join(unknown)}; known: {', '.join(PROFILES)}")
    return names


def case_features(features: tuple[str, ...] | list[str], task: str | None) -> frozenset[str]:
    """The features a check needs: those it declares, plus its task's when it has one."""
    implied = {f"task-{task}"} if task and f"task-{task}" in FEATURES else set()
    return frozenset(features) | implied


#: protocol of a check, from the first matching feature prefix (for the report's matrix)
PROTOCOL_PREFIXES = (
    ("v2-grpc", "V2 gRPC"),
    ("v2-", "V2 REST"),
    ("hf-v2-", "V2 REST"),
    ("v1", "KServe V1"),
    ("openai", "OpenAI"),
)


def protocol_of(features: tuple[str, ...] | list[str]) -> str:
    """The protocol a check exercises, named for people ("V2 REST"); "other" when none."""
    for prefix, protocol in PROTOCOL_PREFIXES:
        if any(f == prefix or f.startswith(prefix) for f in features):
            return protocol
    return "other"
