"""The tasks huggingfaceserver 0.14.1 knows, how it infers one from a model, and its context length.

Task names are huggingfaceserver's (``sequence_classification`` ...), not the HF pipeline names:
they are what ``--task`` takes on the official command line.
"""

from __future__ import annotations

import logging
from enum import Enum

from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PretrainedConfig,
)

log = logging.getLogger("kserve")


class Task(str, Enum):
    sequence_classification = "sequence_classification"
    token_classification = "token_classification"
    fill_mask = "fill_mask"
    text_generation = "text_generation"
    text2text_generation = "text2text_generation"
    text_embedding = "text_embedding"


#: every task name the official --task accepts as a name; the ones it does not serve are refused
KNOWN_UNSERVED = ("table_question_answering", "question_answering", "multiple_choice")

GENERATIVE = frozenset({Task.text_generation, Task.text2text_generation})

# Architecture-name suffix -> task, checked in this order (the first suffix that matches wins).
# None marks architectures upstream recognises but refuses to serve.
_SUFFIXES: tuple[tuple[str, Task | None, str], ...] = (
    ("TapasForQuestionAnswering", None, "table_question_answering"),
    ("ForQuestionAnswering", None, "question_answering"),
    ("ForTokenClassification", Task.token_classification, ""),
    ("ForSequenceClassification", Task.sequence_classification, ""),
    ("ForMultipleChoice", None, "multiple_choice"),
    ("ForMaskedLM", Task.fill_mask, ""),
    ("ForCausalLM", Task.text_generation, ""),
    ("ForConditionalGeneration", Task.text2text_generation, ""),
    ("MTModel", Task.text2text_generation, ""),
    ("EncoderDecoderModel", Task.text2text_generation, ""),
)

AUTO_CLASS = {
    Task.sequence_classification: AutoModelForSequenceClassification,
    Task.token_classification: AutoModelForTokenClassification,
    Task.fill_mask: AutoModelForMaskedLM,
    Task.text_generation: AutoModelForCausalLM,
    Task.text2text_generation: AutoModelForSeq2SeqLM,
    Task.text_embedding: AutoModel,
}


def _supported_list() -> str:
    return ", ".join(t.value for t in Task)


def parse_task(name: str) -> Task:
    """The task named on the command line, refused with upstream's message when not served."""
    try:
        return Task(name)
    except ValueError:
        raise ValueError(
            f"Unsupported task: {name}. Currently supported tasks are: {_supported_list()}"
        ) from None


def infer_task(config: PretrainedConfig) -> Task:
    """The task implied by ``config.architectures[0]``; text_embedding is never inferred."""
    architecture = (config.architectures or [""])[0]
    for suffix, task, unserved in _SUFFIXES:
        if architecture.endswith(suffix):
            if task is None:
                raise ValueError(
                    f"Task {unserved} is not supported. "
                    f"Currently supported tasks are: {_supported_list()}."
                )
            return task
    raise ValueError(
        f"Task couldn't be inferred from {architecture}. Please manually set `task` option. "
    )


def try_infer_task(config: PretrainedConfig) -> Task | None:
    try:
        return infer_task(config)
    except ValueError:
        return None


# Config keys that bound a model's context, smallest wins (the list vLLM and upstream use).
_LENGTH_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)
_DEFAULT_CONTEXT = 2048


def context_length(config: PretrainedConfig, requested: int | None) -> int:
    """The maximum number of tokens the server lets a request use.

    Derived from the config like upstream: the smallest length key, 2048 when there is none
    (e.g. T5), scaled by rope_scaling; a ``--max_length`` above the derived value is an error.
    """
    derived: float = float("inf")
    derived_key = None
    for key in _LENGTH_KEYS:
        value = getattr(config, key, None)
        if value is not None and value < derived:
            derived, derived_key = value, key
    if derived == float("inf"):
        if requested is not None:
            return requested
        log.warning(
            "The model's config.json has none of %s; assuming a context of %d tokens.",
            list(_LENGTH_KEYS),
            _DEFAULT_CONTEXT,
        )
        derived = _DEFAULT_CONTEXT
    rope = getattr(config, "rope_scaling", None)
    if rope is not None and rope.get("type") != "su":
        if rope.get("type") == "yarn":
            derived = rope["original_max_position_embeddings"]
        derived *= rope["factor"]
    if requested is None:
        return int(derived)
    if requested > derived:
        model_max = getattr(config, "model_max_length", None)
        if model_max is None or requested > model_max:
            raise ValueError(
                f"User-specified max_model_len ({requested}) is greater than the derived "
                f"max_model_len ({derived_key}={derived} or model_max_length={model_max} "
                "in model's config.json)."
            )
    return int(requested)
