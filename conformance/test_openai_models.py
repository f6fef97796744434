"""OpenAI models: the list and one model (openapi.yaml, ``GET /models`` and
``GET /models/{model}``)."""

from __future__ import annotations

import pytest

from servegate.checks import expect, expect_model, expect_status
from servegate.protocols.openai import ModelCard, ModelCardList, OpenAIClient


def listed_models(openai_client: OpenAIClient) -> list[str]:
    """The ids of GET {base}/models, checked as that rule says."""
    rule = "GET {base}/models returns 200 with a list object of model objects"
    reply = openai_client.models()
    expect_status(reply, 200, rule)
    cards = expect_model(ModelCardList, reply.json(), rule, reply)
    expect(cards.object == "list", rule, f"object {cards.object!r}", reply)
    expect(cards.data, rule, "no model listed", reply)
    for card in cards.data:
        expect(card.object == "model", rule, f"model {card.id!r} has object {card.object!r}", reply)
    ids = [card.id for card in cards.data]
    expect(all(ids) and len(set(ids)) == len(ids), rule, f"ids {ids} are not distinct names", reply)
    return ids


@pytest.mark.features("openai")
def test_openai_models_list_lists_model_objects(openai_client: OpenAIClient) -> None:
    """GET {base}/models answers {"object": "list", "data": [{"id", "object": "model"}]}.

    openapi.yaml: ``GET /models`` "Lists the currently available models"; ListModelsResponse
    requires ``object`` ("list") and ``data``; a Model's ``object`` is "always "model"" and its
    ``id`` is "The model identifier, which can be referenced in the API endpoints"."""
    listed_models(openai_client)


@pytest.mark.features("openai")
def test_openai_model_retrieve_describes_the_model(openai_client: OpenAIClient) -> None:
    """GET {base}/models/{id} answers the model object of every listed model.

    openapi.yaml: ``GET /models/{model}`` "Retrieves a model instance"; its 200 answer is a
    Model (``id``, ``object`` "model")."""
    for model in listed_models(openai_client):
        rule = f"GET {{base}}/models/{model} returns 200 with that model object"
        reply = openai_client.model(model)
        expect_status(reply, 200, rule)
        card = expect_model(ModelCard, reply.json(), rule, reply)
        expect(card.id == model, rule, f"id {card.id!r}", reply)
        expect(card.object == "model", rule, f"object {card.object!r}", reply)


@pytest.mark.features("openai")
def test_openai_unknown_model_retrieve_is_refused(openai_client: OpenAIClient) -> None:
    """GET {base}/models/{id} of a model the server does not serve answers an error status.

    openapi.yaml: ``GET /models/{model}`` "Retrieves a model instance" for "The ID of the model
    to use"; a 200 would describe a model that cannot be used. The error status itself is not
    in openapi.yaml (404 is the hardening profile's)."""
    reply = openai_client.model("servegate-no-such-model")
    expect(
        reply.status >= 400,
        "retrieving an unknown model is refused",
        f"status {reply.status}",
        reply,
    )


@pytest.mark.features("openai", "hardening")
def test_openai_unknown_model_retrieve_is_a_404(openai_client: OpenAIClient) -> None:
    """Hardening: GET {base}/models/{id} of a model the server does not serve answers 404, as
    OpenAI's service does; openapi.yaml documents only the 200 answer."""
    expect_status(
        openai_client.model("servegate-no-such-model"),
        404,
        "retrieving an unknown model answers 404",
    )
