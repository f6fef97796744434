"""OpenAI embeddings: one vector per input, one length for all, base64 equal to floats, usage
(openapi.yaml, ``POST /embeddings``)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from servegate.checks import expect, expect_model, expect_status
from servegate.protocols.http import Reply
from servegate.protocols.openai import EmbeddingList, OpenAIClient, decode_base64_embedding
from servegate.targets import ModelInfo
from servegate.tasks import examples

INPUTS = [examples.EMBED, examples.SENTIMENT, examples.NER]
TASK = ["feature-extraction"]


def embed(
    openai_client: OpenAIClient, model: ModelInfo, rule: str, **params: Any
) -> tuple[EmbeddingList, Reply]:
    body = {"model": model.name, "input": INPUTS, **params}
    reply = openai_client.embeddings(body)
    expect_status(reply, 200, rule)
    result = expect_model(EmbeddingList, reply.json(), rule, reply)
    expect(result.object == "list", rule, f"object {result.object!r}", reply)
    return result, reply


def _floats(vector: Any, rule: str, reply: Reply) -> list[float]:
    expect(
        isinstance(vector, list)
        and vector
        and all(isinstance(v, int | float) and math.isfinite(v) for v in vector),
        rule,
        f"embedding is not a list of finite numbers: {str(vector)[:120]}",
        reply,
    )
    return list(vector)


@pytest.mark.features("openai-embeddings")
@pytest.mark.parametrize("task", TASK)
def test_embeddings_return_one_vector_per_input(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """A list of inputs answers one embedding object per input, indexes in input order; a
    single string answers one.

    openapi.yaml: input: "To embed multiple inputs in a single request, pass an array of
    strings"; Embedding ``index`` "The index of the embedding in the list of embeddings",
    ``object`` "always "embedding""."""
    rule = "one embedding per input, in input order"
    result, reply = embed(openai_client, task_model, rule)
    expect(
        [d.index for d in result.data] == list(range(len(INPUTS))),
        rule,
        f"indexes {[d.index for d in result.data]} for {len(INPUTS)} inputs",
        reply,
    )
    expect(
        all(d.object == "embedding" for d in result.data),
        rule,
        f"objects {[d.object for d in result.data]}",
        reply,
    )
    single, reply = embed(openai_client, task_model, rule, input=examples.EMBED)
    expect(len(single.data) == 1, rule, f"{len(single.data)} embeddings for one string", reply)


@pytest.mark.features("openai-embeddings")
@pytest.mark.parametrize("task", TASK)
def test_embeddings_have_the_model_dimension(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """Every embedding is a list of finite floats, all of one length.

    openapi.yaml: embedding "The embedding vector, which is a list of floats. The length of
    vector depends on the model": one model, one length. Which length (the hidden size for a
    mean-pooled HuggingFace encoder) the spec leaves to the model."""
    rule = "embeddings are float vectors of the model's one dimension"
    result, reply = embed(openai_client, task_model, rule, encoding_format="float")
    lengths = {len(_floats(d.embedding, rule, reply)) for d in result.data}
    expect(len(lengths) == 1, rule, f"vector lengths {sorted(lengths)}", reply)


@pytest.mark.features("openai-embeddings")
@pytest.mark.parametrize("task", TASK)
def test_embeddings_base64_decodes_to_the_float_vectors(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """encoding_format "base64" answers little-endian float32 bytes equal to the float
    answer.

    openapi.yaml: encoding_format "The format to return the embeddings in. Can be either
    `float` or `base64`" (the official clients decode base64 as little-endian float32)."""
    floats, _ = embed(openai_client, task_model, "float embeddings", encoding_format="float")
    rule = "base64 embeddings decode to the same vectors as float ones"
    encoded, reply = embed(openai_client, task_model, rule, encoding_format="base64")
    expect(
        len(encoded.data) == len(floats.data),
        rule,
        f"{len(encoded.data)} base64 vs {len(floats.data)} float embeddings",
        reply,
    )
    for plain, packed in zip(floats.data, encoded.data, strict=False):
        expect(
            isinstance(packed.embedding, str),
            rule,
            f"embedding {str(packed.embedding)[:80]} is not a base64 string",
            reply,
        )
        assert isinstance(packed.embedding, str)
        try:
            decoded = decode_base64_embedding(packed.embedding)
        except ValueError as exc:
            expect(False, rule, f"embedding {packed.index}: {exc}", reply)
            raise
        vector = _floats(plain.embedding, rule, reply)
        expect(
            len(decoded) == len(vector),
            rule,
            f"embedding {packed.index}: {len(decoded)} values vs {len(vector)}",
            reply,
        )
        worst = max(abs(a - b) for a, b in zip(decoded, vector, strict=True))
        expect(
            worst <= 1e-6 * max(1.0, max(abs(v) for v in vector)),
            rule,
            f"embedding {packed.index} differs by up to {worst:g}",
            reply,
        )


@pytest.mark.features("openai-embeddings")
@pytest.mark.parametrize("task", TASK)
def test_embeddings_usage_counts_prompt_tokens(
    openai_client: OpenAIClient, task: str, task_model: ModelInfo
) -> None:
    """usage.prompt_tokens counts the input tokens (at least one per input) and
    total_tokens equals it.

    openapi.yaml: CreateEmbeddingResponse requires ``usage`` with prompt_tokens "The number of
    tokens used by the prompt" and total_tokens "The total number of tokens used by the
    request" (an embedding request uses only its input); an input "cannot be an empty
    string", so each counts at least one token."""
    rule = "embeddings usage counts the input tokens"
    result, reply = embed(openai_client, task_model, rule)
    usage = result.usage
    expect(
        usage.prompt_tokens >= len(INPUTS),
        rule,
        f"prompt_tokens {usage.prompt_tokens} for {len(INPUTS)} inputs",
        reply,
    )
    expect(
        usage.total_tokens == usage.prompt_tokens,
        rule,
        f"total_tokens {usage.total_tokens} != prompt_tokens {usage.prompt_tokens}",
        reply,
    )
