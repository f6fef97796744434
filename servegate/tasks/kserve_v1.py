"""KServe huggingfaceserver's V1 encoding of the encoder tasks.

``{"instances": [text, ...]}`` answers ``{"predictions": [...]}`` with one entry per instance:
sequence classification a class id, token classification label ids per token, fill-mask the
decoded token(s), text embedding a mean-pooled, L2-normalised vector.
"""

from __future__ import annotations

from typing import Any

from servegate.tasks import examples

#: the tasks the V1 predict route answers, with the example instance for each
V1_EXAMPLES = {
    "text-classification": examples.SENTIMENT,
    "token-classification": examples.NER,
    "fill-mask": examples.FILL_MASK,
    "feature-extraction": examples.EMBED,
}


def request_for(task: str) -> dict[str, Any]:
    return {"instances": [V1_EXAMPLES[task]]}


def nested_ints(value: Any) -> list[int]:
    """Every integer of a nested list (token-classification ids per token)."""
    if isinstance(value, list):
        out: list[int] = []
        for item in value:
            out.extend(nested_ints(item))
        return out
    return [value]
