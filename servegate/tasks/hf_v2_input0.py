"""The KServe huggingfaceserver encoding of tasks over V2.

The server reads only ``inputs[0]``: BYTES strings, one per row. Every output is named
``output-0``; what it holds depends on the task:

- text-classification: INT64 [N], the arg-max class id per row;
- token-classification: INT64 [N, 1, seq], the arg-max label id per token;
- fill-mask: BYTES [N], the token filled in per row;
- feature-extraction (KServe's text_embedding): FP64 [N, hidden], L2-normalised.

Generative tasks answer only over KServe's OpenAI routes, so they have no V2 encoding here.
"""

from __future__ import annotations

import math
from typing import Any

from servegate.checks import HasExchange, expect
from servegate.protocols.v2_models import element_count, flatten, tensor
from servegate.targets import ModelInfo
from servegate.tasks import examples

OUTPUT_NAME = "output-0"
INPUT_NAME = "input-0"
#: the tasks this encoding defines over V2
TASKS = ("text-classification", "token-classification", "fill-mask", "feature-extraction")

TEXTS = {
    "text-classification": examples.SENTIMENT,
    "token-classification": examples.NER,
    "fill-mask": examples.FILL_MASK,
    "feature-extraction": examples.EMBED,
}


def request_for(task: str, texts: list[str] | None = None) -> dict[str, Any]:
    """The V2 request asking a model of ``task`` about ``texts`` (default: the example)."""
    rows = texts if texts is not None else [TEXTS[task]]
    return {"inputs": [tensor(INPUT_NAME, "BYTES", [len(rows)], rows)]}


def _rows(shape: list[int]) -> int:
    return shape[0] if shape else 0


def check_output(
    task: str, output: dict[str, Any], model: ModelInfo, rows: int, evidence: HasExchange
) -> None:
    """The meaning of ``output-0`` for ``rows`` texts of ``task``."""
    datatype, shape = output.get("datatype"), list(output.get("shape") or [])
    data = flatten(output.get("data") if output.get("data") is not None else [])
    rule = f"{task} over V2 (inputs[0] encoding) returns one row per text"
    expect(_rows(shape) == rows, rule, f"shape {shape} for {rows} text(s)", evidence)
    expect(
        len(data) == element_count(shape),
        "the output's data fills its shape",
        f"{len(data)} values for shape {shape}",
        evidence,
    )
    if task == "text-classification":
        rule = "text-classification returns an INT64 class id per text, a label index"
        expect(
            datatype == "INT64" and len(shape) == 1,
            rule,
            f"datatype {datatype}, shape {shape}",
            evidence,
        )
        limit = len(model.labels) if model.labels else None
        for value in data:
            expect(
                isinstance(value, int) and value >= 0 and (limit is None or value < limit),
                rule,
                f"class id {value!r} is not an index of the "
                f"{limit if limit is not None else 'model'}'s labels",
                evidence,
            )
    elif task == "token-classification":
        rule = "token-classification returns INT64 label ids shaped [texts, 1, tokens]"
        expect(
            datatype == "INT64" and len(shape) == 3 and shape[1] == 1 and shape[2] > 0,
            rule,
            f"datatype {datatype}, shape {shape}",
            evidence,
        )
        limit = len(model.labels) if model.labels else None
        for value in data:
            expect(
                isinstance(value, int) and value >= 0 and (limit is None or value < limit),
                rule,
                f"label id {value!r} is not a label index",
                evidence,
            )
    elif task == "fill-mask":
        rule = "fill-mask returns the filled-in token (a non-empty string) per text"
        expect(
            datatype == "BYTES" and len(shape) == 1,
            rule,
            f"datatype {datatype}, shape {shape}",
            evidence,
        )
        for value in data:
            expect(
                isinstance(value, str) and value.strip(),
                rule,
                f"token {value!r} is empty",
                evidence,
            )
    elif task == "feature-extraction":
        rule = "embeddings are FP64 rows of the hidden size with unit L2 length"
        expect(
            datatype == "FP64" and len(shape) == 2 and shape[1] > 0,
            rule,
            f"datatype {datatype}, shape {shape}",
            evidence,
        )
        if model.hidden_size:
            expect(
                shape[1] == model.hidden_size,
                rule,
                f"{shape[1]} values per row, hidden size is {model.hidden_size}",
                evidence,
            )
        width = shape[1]
        for r in range(_rows(shape)):
            row = data[r * width : (r + 1) * width]
            expect(
                all(isinstance(v, int | float) and math.isfinite(v) for v in row),
                rule,
                f"row {r} holds non-finite or non-numbers",
                evidence,
            )
            norm = math.sqrt(sum(v * v for v in row))
            expect(abs(norm - 1.0) < 1e-3, rule, f"row {r} has L2 norm {norm:.6f}", evidence)
