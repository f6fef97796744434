"""HuggingFace tasks over V2 in each runtime's encoding, over REST and gRPC, with checks of
meaning that hold for random-weight models; and the runtimes' documented request examples.

MLServer's encoding (feature hf-v2-kwargs) is in servegate/tasks/hf_v2_kwargs.py, KServe's
(hf-v2-input0) in servegate/tasks/hf_v2_input0.py. The REST check of MLServer's encoding is
test_task_semantics.py's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from servegate.checks import expect, expect_model, expect_status
from servegate.discovery import task_from_name
from servegate.features import TASKS
from servegate.fixtures.payloads import list_payloads, load_payload
from servegate.protocols.v2_grpc import V2GrpcClient, build_request, output_values
from servegate.protocols.v2_models import InferenceResponse, flatten, tensor_problems
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import ModelInfo, Target
from servegate.tasks import hf_v2_input0, hf_v2_kwargs, semantics
from servegate.unsupported import unsupported

MLSERVER_EXAMPLES = [n for n in list_payloads() if n.startswith("v2_mlserver_")]
KSERVE_EXAMPLES = [n for n in list_payloads() if n.startswith("v2_kserve_")]


def _rest_output(v2: V2RestClient, model: str, body: dict, name: str, rule: str):
    reply = v2.infer(model, body)
    expect_status(reply, 200, rule)
    response = expect_model(InferenceResponse, reply.json(), rule, reply)
    problems = [
        p for o in response.outputs for p in tensor_problems(o.name, o.datatype, o.shape, o.data)
    ]
    expect(not problems, "response tensors are well formed", "; ".join(problems), reply)
    outputs = {o.name: o for o in response.outputs}
    expect(
        name in outputs, f"the result is the output {name!r}", f"outputs: {sorted(outputs)}", reply
    )
    return reply, outputs[name].model_dump()


@pytest.mark.features("v2-rest", "hf-v2-input0")
@pytest.mark.parametrize("task", hf_v2_input0.TASKS)
def test_v2_input0_result_is_meaningful(v2: V2RestClient, task: str, task_model: ModelInfo) -> None:
    """With the text in inputs[0], the task's answer is one `output-0` whose values mean what
    the task returns (class ids, label ids per token, filled tokens, unit embeddings)."""
    reply, output = _rest_output(
        v2,
        task_model.name,
        hf_v2_input0.request_for(task),
        hf_v2_input0.OUTPUT_NAME,
        f"V2 {task} over inputs[0] answers",
    )
    hf_v2_input0.check_output(task, output, task_model, 1, reply)


@pytest.mark.features("v2-rest", "hf-v2-input0")
@pytest.mark.parametrize("task", hf_v2_input0.TASKS)
def test_v2_input0_batch_gives_one_row_per_text(
    v2: V2RestClient, task: str, task_model: ModelInfo
) -> None:
    """inputs[0] of shape [N] is N texts: the answer has N rows."""
    text = hf_v2_input0.TEXTS[task]
    reply, output = _rest_output(
        v2,
        task_model.name,
        hf_v2_input0.request_for(task, [text, text, text]),
        hf_v2_input0.OUTPUT_NAME,
        f"V2 {task} over inputs[0] answers",
    )
    hf_v2_input0.check_output(task, output, task_model, 3, reply)


def _grpc_request(model: str, body: dict[str, Any]):
    """A gRPC ModelInferRequest carrying a V2 JSON request's inputs and their parameters."""
    rows = [(t["name"], t["datatype"], t["shape"], flatten(t["data"])) for t in body["inputs"]]
    request = build_request(model, rows)
    for tensor_pb, t in zip(request.inputs, body["inputs"], strict=True):
        for key, value in (t.get("parameters") or {}).items():
            tensor_pb.parameters[key].string_param = str(value)
    return request


def _grpc_output(v2_grpc: V2GrpcClient, model: str, body: dict, name: str, rule: str):
    reply = v2_grpc.infer(_grpc_request(model, body))
    expect(reply.ok, rule, f"status {reply.code.name}: {reply.details}", reply)
    by_name = {o.name: i for i, o in enumerate(reply.message.outputs)}
    expect(
        name in by_name, f"the result is the output {name!r}", f"outputs: {sorted(by_name)}", reply
    )
    out = reply.message.outputs[by_name[name]]
    values = [
        v.decode() if isinstance(v, bytes) else v
        for v in output_values(reply.message, by_name[name])
    ]
    problems = tensor_problems(name, out.datatype, list(out.shape), values)
    expect(not problems, "response tensors are well formed", "; ".join(problems), reply)
    return reply, {"name": name, "datatype": out.datatype, "shape": list(out.shape), "data": values}


@pytest.mark.features("v2-grpc", "hf-v2-kwargs")
@pytest.mark.parametrize("task", TASKS)
def test_v2_kwargs_grpc_result_is_meaningful(
    v2_grpc: V2GrpcClient, task: str, task_model: ModelInfo
) -> None:
    """Over gRPC too, the task's example (inputs named after pipeline arguments) gives one
    BYTES `output` of JSON results that make sense for the task."""
    reply, output = _grpc_output(
        v2_grpc,
        task_model.name,
        hf_v2_kwargs.request_for(task),
        hf_v2_kwargs.OUTPUT_NAME,
        f"gRPC {task} inference answers",
    )
    expect(
        output["datatype"] == "BYTES",
        "the pipeline result is BYTES",
        f"datatype {output['datatype']}",
        reply,
    )
    result = hf_v2_kwargs.single_result(hf_v2_kwargs.decode_output(output))
    semantics.check_task_result(task, result, task_model, reply)


@pytest.mark.features("v2-grpc", "hf-v2-input0")
@pytest.mark.parametrize("task", hf_v2_input0.TASKS)
def test_v2_input0_grpc_result_is_meaningful(
    v2_grpc: V2GrpcClient, task: str, task_model: ModelInfo
) -> None:
    """Over gRPC too, inputs[0] texts give an `output-0` that means what the task returns."""
    reply, output = _grpc_output(
        v2_grpc,
        task_model.name,
        hf_v2_input0.request_for(task),
        hf_v2_input0.OUTPUT_NAME,
        f"gRPC {task} inference answers",
    )
    hf_v2_input0.check_output(task, output, task_model, 1, reply)


def _example_model(target: Target, name: str) -> tuple[str, ModelInfo]:
    task = task_from_name(name.split("_", 2)[2])
    models = target.models_for_task(task) if task else []
    if not models:
        unsupported(target, f"task-{task}" if task else [], f"serves no model for {name}")
    return task or "", models[0]


@pytest.mark.features("v2-rest", "hf-v2-kwargs")
@pytest.mark.parametrize("example", MLSERVER_EXAMPLES)
def test_mlserver_documented_example_is_answered(
    target: Target, v2: V2RestClient, example: str
) -> None:
    """MLServer's documented HuggingFace request for the task is answered with 200 and one
    BYTES `output` whose every element is a JSON pipeline result."""
    task, model = _example_model(target, example)
    reply, output = _rest_output(
        v2,
        model.name,
        load_payload(example),
        hf_v2_kwargs.OUTPUT_NAME,
        f"the documented {task} request is answered",
    )
    items = flatten(output.get("data"))
    expect(
        output["datatype"] == "BYTES" and items,
        "the pipeline result is BYTES JSON items",
        f"datatype {output['datatype']}, {len(items)} items",
        reply,
    )
    for item in items:
        try:
            json.loads(item)
        except (TypeError, ValueError):
            expect(False, "each element of `output` is JSON", f"element {item!r:.80}", reply)


@pytest.mark.features("v2-rest", "hf-v2-input0")
@pytest.mark.parametrize("example", KSERVE_EXAMPLES)
def test_kserve_documented_example_is_answered(
    target: Target, v2: V2RestClient, example: str
) -> None:
    """KServe's documented V2 request for the task (texts in inputs[0]) is answered with one
    `output-0` row per text, meaning what the task returns."""
    task, model = _example_model(target, example)
    body = load_payload(example)
    reply, output = _rest_output(
        v2, model.name, body, hf_v2_input0.OUTPUT_NAME, f"the documented {task} request is answered"
    )
    hf_v2_input0.check_output(task, output, model, body["inputs"][0]["shape"][0], reply)


def _check_declared(v2: V2RestClient, model: ModelInfo, body: dict) -> None:
    meta = v2.model_metadata(model.name)
    rule = "every output returned is declared in the model's metadata"
    expect_status(meta, 200, rule)
    declared = {o.get("name") for o in meta.json().get("outputs") or []}
    reply = v2.infer(model.name, body)
    expect_status(reply, 200, rule)
    returned = [o.get("name") for o in reply.json().get("outputs") or []]
    missing = [n for n in returned if n not in declared]
    expect(
        not missing,
        rule,
        f"outputs {missing} are returned but the metadata at "
        f"{meta.exchange.url} declares {sorted(declared)}",
        reply,
    )


@pytest.mark.features("v2-rest", "hf-v2-kwargs")
@pytest.mark.parametrize("task", TASKS)
def test_kwargs_outputs_are_declared_in_model_metadata(
    v2: V2RestClient, task: str, task_model: ModelInfo
) -> None:
    """Model metadata lists "the outputs produced by the model": every output the task's
    answer (MLServer's encoding) carries is named among them."""
    _check_declared(v2, task_model, hf_v2_kwargs.request_for(task))


@pytest.mark.features("v2-rest", "hf-v2-input0")
@pytest.mark.parametrize("task", hf_v2_input0.TASKS)
def test_input0_outputs_are_declared_in_model_metadata(
    v2: V2RestClient, task: str, task_model: ModelInfo
) -> None:
    """Model metadata lists the outputs produced: every output of the task's answer (KServe's
    encoding) is named among them."""
    _check_declared(v2, task_model, hf_v2_input0.request_for(task))
