"""Checks of meaning per task that hold for any model, random weights included.

Each takes the decoded result, what is known of the model (ModelInfo), and the reply as
evidence, and raises RuleViolation naming the rule it breaks.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from typing import Any

from servegate.checks import HasExchange, expect
from servegate.targets import ModelInfo
from servegate.tasks import examples


def _score(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _labels_rule(model: ModelInfo) -> str:
    return "labels come from the model config" if model.labels else "labels are strings"


def check_label_scores(
    items: Sequence[Any], model: ModelInfo, evidence: HasExchange, task: str
) -> None:
    """Classification results: {label, score} dicts, labels from the config, scores in [0,1]."""
    rule = f"{task} returns labels with scores in [0, 1]"
    expect(items, rule, "no result", evidence)
    for item in items:
        expect(
            isinstance(item, dict) and "label" in item and "score" in item,
            rule,
            f"result item {item!r} is not a {{label, score}} object",
            evidence,
        )
        expect(_score(item["score"]), rule, f"score {item['score']!r} not in [0, 1]", evidence)
        label = item["label"]
        if model.labels:
            expect(
                label in model.labels,
                _labels_rule(model),
                f"label {label!r} not among the config's {list(model.labels)}",
                evidence,
            )
        else:
            expect(
                isinstance(label, str) and label,
                _labels_rule(model),
                f"label {label!r} is not a non-empty string",
                evidence,
            )


def _normalise(text: str) -> str:
    """What tokenizers do to a word: lower-case, strip accents, drop word-piece markers."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return text.replace("##", "").replace(" ", "").replace("\u0120", "").replace("\u2581", "")


def check_entities(
    entities: Sequence[Any], model: ModelInfo, text: str, evidence: HasExchange
) -> None:
    """Token classification: at least one entity (the example names an organisation, a person
    and two places); each entity's start/end lie in the input and `word` is that slice (after
    the tokenizer's normalisation); its label is a config label; score in [0,1]."""
    rule = "token-classification entities point at the input text they name"
    # an empty list would pass every per-entity rule below; a sentence full of names is not
    # answered by "no entity" (the fixture's random-weight model finds 13)
    expect(
        isinstance(entities, list | tuple) and entities,
        "token-classification finds entities in a sentence that names some",
        f"result {entities!r:.200} is no entity list",
        evidence,
    )
    for ent in entities:
        expect(isinstance(ent, dict), rule, f"entity {ent!r} is not an object", evidence)
        start, end = ent.get("start"), ent.get("end")
        expect(
            isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text),
            rule,
            f"entity {ent!r}: start/end not inside the {len(text)}-character input",
            evidence,
        )
        word = ent.get("word")
        expect(
            isinstance(word, str) and _normalise(word) == _normalise(text[start:end]),
            rule,
            f"entity word {word!r} differs from the input slice {text[start:end]!r}",
            evidence,
        )
        label = ent.get("entity", ent.get("entity_group"))
        if model.labels:
            allowed = set(model.labels) | {lab.split("-", 1)[-1] for lab in model.labels}
            expect(
                label in allowed,
                "entity labels come from the model config",
                f"label {label!r} not among {sorted(allowed)}",
                evidence,
            )
        expect(
            _score(ent.get("score")), rule, f"score {ent.get('score')!r} not in [0, 1]", evidence
        )


def check_answer(answer: Any, context: str, evidence: HasExchange) -> None:
    """Question answering: the answer is the context slice its start/end point at."""
    rule = "question-answering answer equals context[start:end]"
    expect(isinstance(answer, dict), rule, f"answer {answer!r} is not an object", evidence)
    start, end = answer.get("start"), answer.get("end")
    expect(
        isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(context),
        rule,
        f"start/end {start!r}/{end!r} not inside the context",
        evidence,
    )
    expect(
        answer.get("answer") == context[start:end],
        rule,
        f"answer {answer.get('answer')!r} but context[{start}:{end}] is {context[start:end]!r}",
        evidence,
    )
    expect(
        _score(answer.get("score")), rule, f"score {answer.get('score')!r} not in [0, 1]", evidence
    )


def check_fill_mask(
    candidates: Sequence[Any],
    model: ModelInfo,
    evidence: HasExchange,
    sentence: str = examples.FILL_MASK,
) -> None:
    """Fill-mask: each candidate's sequence is the sentence with its token filled in; scores
    descend."""
    rule = "fill-mask candidates fill the mask with their token, best first"
    expect(candidates, rule, "no candidate", evidence)
    scores = []
    mask = model.mask_token or "[MASK]"
    prefix, _, suffix = sentence.partition(mask)
    for cand in candidates:
        expect(
            isinstance(cand, dict) and {"token_str", "sequence", "score"} <= set(cand),
            rule,
            f"candidate {cand!r} lacks token_str, sequence or score",
            evidence,
        )
        token = cand["token_str"].strip()
        seq = _normalise(cand["sequence"])
        expect(
            _normalise(token) in seq,
            rule,
            f"sequence {cand['sequence']!r} does not contain the token {token!r}",
            evidence,
        )
        expect(
            seq.startswith(_normalise(prefix)) and seq.endswith(_normalise(suffix)),
            rule,
            f"sequence {cand['sequence']!r} is not the sentence around the mask",
            evidence,
        )
        expect(_score(cand["score"]), rule, f"score {cand['score']!r} not in [0, 1]", evidence)
        scores.append(cand["score"])
    expect(
        scores == sorted(scores, reverse=True), rule, f"scores not descending: {scores}", evidence
    )


def check_generated(result: Any, prompt: str, evidence: HasExchange, *, full_text: bool) -> None:
    """Generation returns text; with the full text returned it starts with the prompt."""
    rule = "generation returns generated_text" + (" extending the prompt" if full_text else "")
    expect(
        isinstance(result, dict) and isinstance(result.get("generated_text"), str),
        rule,
        f"result {result!r} has no generated_text string",
        evidence,
    )
    if full_text:
        expect(
            result["generated_text"].startswith(prompt),
            rule,
            f"generated_text {result['generated_text'][:80]!r} does not start with the prompt "
            f"{prompt!r}",
            evidence,
        )


def check_vector(
    vector: Any, model: ModelInfo, evidence: HasExchange, *, unit_length: bool = False
) -> None:
    """An embedding: finite floats, the model's hidden size, unit length when normalised."""
    rule = "an embedding has the model's hidden size" + (" and unit length" if unit_length else "")
    expect(
        isinstance(vector, list)
        and vector
        and all(isinstance(v, int | float) and math.isfinite(v) for v in vector),
        rule,
        f"embedding is not a list of finite numbers: {str(vector)[:120]}",
        evidence,
    )
    if model.hidden_size:
        expect(
            len(vector) == model.hidden_size,
            rule,
            f"{len(vector)} values, hidden size is {model.hidden_size}",
            evidence,
        )
    if unit_length:
        norm = math.sqrt(sum(v * v for v in vector))
        expect(abs(norm - 1.0) < 1e-3, rule, f"L2 norm {norm:.6f}, expected 1", evidence)


def token_vectors(result: Any) -> list[list[float]]:
    """Per-token vectors of a feature-extraction result, whatever its batch nesting."""
    while (
        isinstance(result, list)
        and result
        and isinstance(result[0], list)
        and result[0]
        and isinstance(result[0][0], list)
    ):
        result = result[0]
    return result if isinstance(result, list) else []


def check_vectors(
    vectors: Sequence[Any], model: ModelInfo, evidence: HasExchange, *, unit_length: bool = False
) -> None:
    """Several embeddings (one per token or per text): each valid, all of one length."""
    expect(vectors, "feature-extraction returns one vector per token", "no vectors", evidence)
    for vector in vectors:
        check_vector(vector, model, evidence, unit_length=unit_length)
    lengths = sorted({len(v) for v in vectors})
    expect(
        len(lengths) == 1,
        "every embedding of one model has the same length",
        f"vector lengths {lengths}",
        evidence,
    )


def check_task_result(task: str, result: Any, model: ModelInfo, evidence: HasExchange) -> None:
    """The check of meaning for one pipeline result of ``task`` (MLServer's JSON items, after
    :func:`servegate.tasks.hf_v2_kwargs.single_result`) for the example input of that task."""
    if task in ("text-classification", "image-classification"):
        check_label_scores(result, model, evidence, task)
    elif task == "token-classification":
        check_entities(result, model, examples.NER, evidence)
    elif task == "question-answering":
        check_answer(result[0] if result else None, examples.CONTEXT, evidence)
    elif task == "fill-mask":
        check_fill_mask(result, model, evidence)
    elif task == "text-generation":
        check_generated(result[0] if result else None, examples.PROMPT, evidence, full_text=True)
    elif task == "text2text-generation":
        check_generated(
            result[0] if result else None, examples.TEXT2TEXT, evidence, full_text=False
        )
    elif task == "feature-extraction":
        check_vectors(token_vectors(result), model, evidence)
    else:
        # a task without a check of meaning must not pass unchecked
        raise LookupError(
            f"servegate has no check of meaning for task {task!r}: add one to "
            "servegate/tasks/semantics.py"
        )
