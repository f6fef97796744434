"""One inference per task and protocol dialect, with a check of what the answer means."""

from __future__ import annotations

import pytest

from servegate.checks import expect, expect_model, expect_status
from servegate.features import TASKS
from servegate.protocols.v2_models import InferenceResponse
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import ModelInfo
from servegate.tasks import examples, hf_v2_kwargs, semantics


@pytest.mark.features("v2-rest", "hf-v2-kwargs")
@pytest.mark.parametrize("task", TASKS)
def test_v2_pipeline_result_is_meaningful(
    v2: V2RestClient, task: str, task_model: ModelInfo
) -> None:
    """A V2 inference with the task's example input returns one BYTES `output` of JSON
    results whose content makes sense for the task."""
    rule = "V2 infer returns 200 and an InferenceResponse"
    reply = v2.infer(task_model.name, hf_v2_kwargs.request_for(task))
    expect_status(reply, 200, rule)
    response = expect_model(InferenceResponse, reply.json(), rule, reply)
    outputs = {o.name: o for o in response.outputs}
    expect(
        hf_v2_kwargs.OUTPUT_NAME in outputs,
        "the pipeline result is the output 'output'",
        f"outputs: {sorted(outputs)}",
        reply,
    )
    output = outputs[hf_v2_kwargs.OUTPUT_NAME]
    expect(
        output.datatype == "BYTES",
        "the pipeline result is BYTES",
        f"datatype {output.datatype}",
        reply,
    )
    items = hf_v2_kwargs.decode_output(output.model_dump())
    result = hf_v2_kwargs.single_result(items)
    if task in ("text-classification", "image-classification"):
        semantics.check_label_scores(result, task_model, reply, task)
    elif task == "token-classification":
        semantics.check_entities(result, task_model, examples.NER, reply)
    elif task == "question-answering":
        semantics.check_answer(result[0] if result else None, examples.CONTEXT, reply)
    elif task == "fill-mask":
        semantics.check_fill_mask(result, task_model, reply)
    elif task == "text-generation":
        semantics.check_generated(
            result[0] if result else None, examples.PROMPT, reply, full_text=True
        )
    elif task == "text2text-generation":
        semantics.check_generated(
            result[0] if result else None, examples.TEXT2TEXT, reply, full_text=False
        )
    elif task == "feature-extraction":
        vectors = semantics.token_vectors(result)
        expect(vectors, "feature-extraction returns one vector per token", "no vectors", reply)
        for vector in vectors:
            semantics.check_vector(vector, task_model, reply)
