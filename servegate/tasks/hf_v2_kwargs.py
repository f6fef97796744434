"""The MLServer HuggingFace encoding of tasks over V2.

Every request input becomes a pipeline keyword argument, except ``args`` (positional) and
``array_inputs`` (the first positional, as a list); inputs default to the string codec.
The response is one BYTES output, ``output``, of shape [N, 1] and content type
``hg_jsonlist``: each element is the JSON of one item of the pipeline's result.
"""

from __future__ import annotations

import json
from typing import Any

from servegate.protocols.v2_models import tensor
from servegate.tasks import examples

OUTPUT_NAME = "output"
CONTENT_TYPE = "hg_jsonlist"


def _text(name: str, value: str) -> dict[str, Any]:
    return tensor(name, "BYTES", [1], [value], content_type="str")


def request_for(task: str) -> dict[str, Any]:
    """The V2 request that asks a model of ``task`` about its example input."""
    if task == "question-answering":
        inputs = [_text("question", examples.QUESTION), _text("context", examples.CONTEXT)]
    elif task == "image-classification":
        # the image pipeline's argument is `images`; `inputs` is not accepted there
        inputs = [
            tensor("images", "BYTES", [1], [examples.png_base64()], content_type="pillow_image")
        ]
    else:
        text = {
            "text-classification": examples.SENTIMENT,
            "token-classification": examples.NER,
            "fill-mask": examples.FILL_MASK,
            "text-generation": examples.PROMPT,
            "text2text-generation": examples.TEXT2TEXT,
            "feature-extraction": examples.EMBED,
        }[task]
        inputs = [_text("args", text)]
    return {"inputs": inputs}


def decode_output(output: dict[str, Any]) -> list[Any]:
    """The pipeline result items carried by an ``hg_jsonlist`` output."""
    items = []
    for element in output.get("data") or []:
        items.append(json.loads(element) if isinstance(element, str) else element)
    return items


def single_result(items: list[Any]) -> Any:
    """The result for the one input sent: pipelines return a list of dicts for one input
    (e.g. fill-mask top-k) and a list of those for a batch; undo the batch level."""
    if (
        len(items) == 1
        and isinstance(items[0], list)
        and items[0]
        and isinstance(items[0][0], dict)
    ):
        return items[0]
    return items
