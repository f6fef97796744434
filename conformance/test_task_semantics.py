"""One inference per task in MLServer's HuggingFace encoding (feature hf-v2-kwargs), with a check
of what the answer means (servegate/tasks/semantics.py, one check per task)."""

from __future__ import annotations

import pytest

from servegate.checks import expect, expect_model, expect_status
from servegate.features import TASKS
from servegate.protocols.v2_models import InferenceResponse
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import ModelInfo
from servegate.tasks import hf_v2_kwargs, semantics


@pytest.mark.features("v2-rest", "hf-v2-kwargs")
@pytest.mark.parametrize("task", TASKS)
def test_v2_pipeline_result_is_meaningful(
    v2: V2RestClient, task: str, task_model: ModelInfo
) -> None:
    """MLServer's HuggingFace runtime answers with one output named `output`, BYTES, each
    element a JSON pipeline result (content type hg_jsonlist; the runtime's encoding, not the
    protocol's): the task's example input gives a result whose content makes sense for the
    task."""
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
    semantics.check_task_result(task, hf_v2_kwargs.single_result(items), task_model, reply)
