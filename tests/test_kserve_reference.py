"""The KServe HuggingFace reference server: the command prepare() builds, the real server it
starts, and (where the official huggingfaceserver is installed) the same answers as upstream's."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from servegate.fixtures.catalog import FixtureModel, FixtureSet, build_fixtures
from servegate.protocols import binary_tensor
from servegate.protocols.v2_grpc import V2GrpcClient, build_request, output_values
from servegate.protocols.v2_models import flatten
from servegate.reference_servers.base import Ports, ServerSpec
from servegate.reference_servers.kserve_huggingface import runtime as ks
from servegate.tasks import numeric_echo
from tests.conftest import project_python

REPO = Path(__file__).resolve().parents[1]
PORTS = Ports(http=18080, grpc=18081)
BOGUS_PYTHON = Path("/nonexistent/bin/python")
#: where an env with the official huggingfaceserver may be: the project's own (if a user
#: installed it there), else one prepared by hand in /tmp
SERVER_ENV_GLOBS = (
    (REPO / ".servegate" / "envs", "kserve*/bin/python"),
    (Path("/tmp/envs"), "ks*/bin/python"),
)


def server_pythons() -> list[tuple[Path, ks.EnvProbe]]:
    """Every candidate interpreter that has kserve, with what else it has."""
    found = []
    for root, pattern in SERVER_ENV_GLOBS:
        for python in sorted(root.glob(pattern)):
            probe = ks.probe_env(python)
            if probe.kserve is not None:
                found.append((python, probe))
    return found


def kserve_python(official: bool = False) -> Path | None:
    """An interpreter with kserve (and, when asked, the official huggingfaceserver)."""
    for python, probe in server_pythons():
        if not official or probe.huggingfaceserver is not None:
            return python
    return None


# ------------------------------------------------------------------------------ prepare()

ALL_TASKS = (*ks.SUPPORTED_TASKS, "question-answering", "image-classification")


def fake_fixtures(root: Path) -> FixtureSet:
    models = {}
    for task in sorted(ALL_TASKS):
        name = f"tiny-{task}"
        (root / name).mkdir(parents=True)
        models[name] = FixtureModel(
            name=name,
            task=task,
            path=root / name,
            architecture="X",
            labels=(),
            hidden_size=32,
            max_position_embeddings=128,
            mask_token=None,
        )
    return FixtureSet(root=root, key="test", models=models)


def no_official(python: Path) -> ks.EnvProbe:
    return ks.EnvProbe(kserve="0.14.1", huggingfaceserver=None)


def with_official(python: Path) -> ks.EnvProbe:
    return ks.EnvProbe(kserve="0.14.1", huggingfaceserver="0.14.1")


def prepare(tmp_path: Path, *, probe=no_official, device: str = "cpu", models=(), **options):
    runtime = ks.KServeHuggingFaceRuntime(probe=probe)
    spec = ServerSpec(runtime="kserve", device=device, models=tuple(models), options=options)
    fixtures = fake_fixtures(tmp_path / "fixtures")
    return runtime.prepare(spec, fixtures, BOGUS_PYTHON, PORTS, tmp_path / "work"), fixtures


def flag(argv, name: str) -> str:
    return argv[argv.index(name) + 1]


def test_runtime_object_names_its_six_tasks() -> None:
    """RUNTIME is the Runtime of 'kserve': the six tasks huggingfaceserver serves, no QA/image."""
    assert ks.RUNTIME.name == "kserve"
    assert ks.RUNTIME.supported_tasks() == {
        "text-classification",
        "token-classification",
        "fill-mask",
        "text-generation",
        "text2text-generation",
        "feature-extraction",
    }
    assert ks.RUNTIME.requirements_file().is_file()
    assert "kserve==0.14.1" in ks.RUNTIME.requirements_file().read_text().split()


def test_argv_runs_the_package_on_the_given_interpreter_and_ports(tmp_path: Path) -> None:
    """argv: `<python> -m kserve_hf_reference`, the given ports, listening on 127.0.0.1 only."""
    launch, _ = prepare(tmp_path)
    assert list(launch.argv[:3]) == [str(BOGUS_PYTHON), "-m", "kserve_hf_reference"]
    assert flag(launch.argv, "--http_port") == "18080"
    assert flag(launch.argv, "--grpc_port") == "18081"
    assert flag(launch.argv, "--bind_address") == "127.0.0.1"
    assert launch.cwd == tmp_path / "work" and launch.cwd.is_dir()


def test_every_supported_fixture_model_is_served_with_an_explicit_task(tmp_path: Path) -> None:
    """One --model NAME=DIR:TASK per supported fixture, with huggingfaceserver's task names."""
    launch, fixtures = prepare(tmp_path)
    given = [launch.argv[i + 1] for i, a in enumerate(launch.argv) if a == "--model"]
    expected = {
        f"tiny-{t}={fixtures.models[f'tiny-{t}'].path}:{ks.KSERVE_TASKS[t]}"
        for t in ks.SUPPORTED_TASKS
    }
    assert set(given) == expected
    assert dict(launch.models) == {
        **{f"tiny-{t}": t for t in ks.SUPPORTED_TASKS},
        "numeric-echo": "custom-numeric",
    }
    assert ks.KSERVE_TASKS["feature-extraction"] == "text_embedding"


def test_named_models_only_and_unserved_tasks_refused(tmp_path: Path) -> None:
    """spec.models picks models; QA and image models are refused by name, unknown names too."""
    launch, _ = prepare(tmp_path, models=["tiny-fill-mask"])
    assert dict(launch.models) == {"tiny-fill-mask": "fill-mask", "numeric-echo": "custom-numeric"}
    assert "openai-chat" not in launch.declared_features
    with pytest.raises(ValueError, match="does not serve 'tiny-question-answering'"):
        prepare(tmp_path / "b", models=["tiny-question-answering"])
    with pytest.raises(ValueError, match="no fixture model 'nope'"):
        prepare(tmp_path / "c", models=["nope"])


@pytest.mark.parametrize("models", [(), ("tiny-fill-mask",)])
def test_numeric_echo_is_always_served(tmp_path: Path, models: tuple[str, ...]) -> None:
    """Whichever HF models are chosen, the process also hosts numeric-echo (task custom-numeric),
    the custom kserve.Model the suite's V2 datatype checks find by that name and task."""
    launch, _ = prepare(tmp_path, models=models)
    assert flag(launch.argv, "--numeric_model") == ks.NUMERIC_MODEL_NAME == "numeric-echo"
    assert launch.argv.count("--numeric_model") == 1
    assert launch.models[ks.NUMERIC_MODEL_NAME] == ks.NUMERIC_TASK == "custom-numeric"
    assert ks.NUMERIC_MODEL_NAME not in {
        a.split("=", 1)[0] for i, a in enumerate(launch.argv[1:]) if launch.argv[i] == "--model"
    }


def test_binary_tensor_extension_is_declared(tmp_path: Path) -> None:
    """kserve 0.14.1 implements the binary tensor data extension without listing it in GET /v2,
    so the launcher declares it for the checks to run."""
    launch, _ = prepare(tmp_path, models=["tiny-fill-mask"])
    assert "v2-binary-tensor" in launch.declared_features


def test_numeric_echo_implementation_string_names_only_the_hf_server(tmp_path: Path) -> None:
    """The implementation string describes the HF server; the numeric model does not change it."""
    launch, _ = prepare(tmp_path)
    assert "numeric" not in launch.implementation


def test_env_is_offline_and_finds_the_package(tmp_path: Path) -> None:
    """env: PYTHONPATH holds the package's parent; the hub is off; the CPU hides every GPU."""
    launch, _ = prepare(tmp_path)
    assert Path(launch.env["PYTHONPATH"], "kserve_hf_reference", "__main__.py").is_file()
    assert launch.env["HF_HUB_OFFLINE"] == "1" and launch.env["TRANSFORMERS_OFFLINE"] == "1"
    assert launch.env["CUDA_VISIBLE_DEVICES"] == ""


def test_cuda_device_leaves_the_gpu_visible(tmp_path: Path) -> None:
    """Upstream has no device flag and uses CUDA whenever torch sees it: cuda means 'leave the
    GPUs visible' (and dtype auto then loads float16, as upstream)."""
    launch, _ = prepare(tmp_path, device="cuda")
    assert "CUDA_VISIBLE_DEVICES" not in launch.env
    assert "--device" not in launch.argv
    assert flag(launch.argv, "--dtype") == "auto"


def test_options_become_flags(tmp_path: Path) -> None:
    """dtype, max_length, return_probabilities and workers reach the command line."""
    launch, _ = prepare(
        tmp_path, dtype="bfloat16", max_length=64, return_probabilities=True, workers=2
    )
    assert flag(launch.argv, "--dtype") == "bfloat16"
    assert flag(launch.argv, "--max_length") == "64"
    assert "--return_probabilities" in launch.argv
    assert flag(launch.argv, "--workers") == "2"
    plain, _ = prepare(tmp_path / "b")
    assert "--max_length" not in plain.argv and "--return_probabilities" not in plain.argv


@pytest.mark.parametrize(
    "options, message",
    [
        ({"dtype": "int8"}, "dtype"),
        ({"workers": 0}, "workers"),
        ({"max_length": "64"}, "max_length"),
        ({"return_probabilities": "yes"}, "return_probabilities"),
        ({"parallel_workers": 2}, "unknown kserve option"),
        ({"implementation": "mine"}, "implementation"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prepare(tmp_path, **options)


def test_implementation_names_what_runs(tmp_path: Path) -> None:
    """Ours says it is servegate's on the kserve SDK; the official classes are used (and named)
    where huggingfaceserver is installed, unless implementation=servegate asks for ours."""
    ours, _ = prepare(tmp_path / "a")
    assert ours.implementation.startswith("servegate KServe HF server")
    assert "kserve 0.14.1" in ours.implementation
    assert flag(ours.argv, "--implementation") == "servegate"
    official, _ = prepare(tmp_path / "b", probe=with_official)
    assert official.implementation.startswith("KServe huggingfaceserver 0.14.1 (official)")
    assert flag(official.argv, "--implementation") == "official"
    forced, _ = prepare(tmp_path / "c", probe=with_official, implementation="servegate")
    assert flag(forced.argv, "--implementation") == "servegate"
    with pytest.raises(ValueError, match="huggingfaceserver is not installed"):
        prepare(tmp_path / "d", implementation="official")


def test_probe_of_a_missing_interpreter_finds_nothing() -> None:
    assert ks.probe_env(BOGUS_PYTHON) == ks.EnvProbe(kserve=None, huggingfaceserver=None)


# ------------------------------------------------------------------------------ the server

OFFICIAL_PYTHON = kserve_python(official=True)
#: starts the server from the project's kserve env (created on first use)
e2e = pytest.mark.slow
differential = pytest.mark.skipif(
    OFFICIAL_PYTHON is None,
    reason="the official huggingfaceserver is not importable in any kserve env (install it "
    "with pip install --no-deps <kserve source v0.14.1>/python/huggingfaceserver)",
)

CLS, TOK, FILL = "tiny-text-classification", "tiny-token-classification", "tiny-fill-mask"
EMB, GEN, T2T = "tiny-feature-extraction", "tiny-text-generation", "tiny-text2text-generation"
OPENAI_ONLY = "is of type OpenAIModel. It does not support the infer method."


def start(tmp_path_factory: pytest.TempPathFactory, python: Path, implementation: str):
    from servegate.reference_servers.local import start_local

    state = tmp_path_factory.mktemp(f"kserve-{implementation}")
    # the fixtures env builds the models, as the suite does (a server env may lack pillow)
    fixtures = build_fixtures(state, project_python("fixtures"), log=lambda line: None)
    started = time.monotonic()
    running = start_local(
        ks.RUNTIME,
        ServerSpec(runtime="kserve", ready_timeout=240, options={"implementation": implementation}),
        fixtures,
        python,
        state_dir=state,
        logs_dir=state / "logs",
        name=f"kserve-{implementation}",
    )
    running.ready_seconds = time.monotonic() - started
    running.fixtures = fixtures
    return running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    running = start(tmp_path_factory, project_python("kserve"), "servegate")
    yield running
    running.stop()


def url(server, path: str) -> str:
    return f"{server.target.http_url}{path}"


def v1(server, model: str, instances: list) -> httpx.Response:
    return httpx.post(
        url(server, f"/v1/models/{model}:predict"), json={"instances": instances}, timeout=60
    )


def v2(server, model: str, texts: list[str]) -> httpx.Response:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}
    return httpx.post(url(server, f"/v2/models/{model}/infer"), json=body, timeout=60)


def openai(server, route: str, body: dict) -> httpx.Response:
    return httpx.post(url(server, f"/openai/v1/{route}"), json=body, timeout=120)


def sse_events(response: httpx.Response) -> list[Any]:
    """The data of each `data: ...` event; the stream must end with `data: [DONE]`."""
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block]
    assert all(e.startswith("data: ") for e in events), response.text
    assert events[-1] == "data: [DONE]"
    return [json.loads(e[len("data: ") :]) for e in events[:-1]]


def only_output(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    [output] = response.json()["outputs"]
    assert output["name"] == "output-0"
    return output


@e2e
@pytest.mark.slow
def test_server_names_itself_and_serves_every_model(server) -> None:
    """GET /v2 names our implementation; V1 and V2 list and ready every model."""
    meta = httpx.get(url(server, "/v2")).json()
    assert meta["name"] == "servegate-kserve-huggingface" and meta["version"] == "0.14.1"
    names = set(server.target.models)
    assert set(httpx.get(url(server, "/v1/models")).json()["models"]) == names
    for name in names:
        ready = httpx.get(url(server, f"/v2/models/{name}/ready")).json()
        assert ready == {"name": name, "ready": True}


@e2e
@pytest.mark.slow
def test_v1_sequence_classification_predicts_a_class_id_per_instance(server) -> None:
    labels = server.fixtures.models[CLS].labels
    response = v1(server, CLS, ["i love it", "i hate it"])
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2 and all(0 <= p < len(labels) for p in predictions)


@e2e
@pytest.mark.slow
def test_v1_token_classification_gives_one_label_id_per_token(server) -> None:
    """[[ids]] per instance, padded to the longest instance (special tokens included)."""
    labels = server.fixtures.models[TOK].labels
    predictions = v1(server, TOK, ["paris is in france", "hi"]).json()["predictions"]
    assert [len(p) for p in predictions] == [1, 1]
    assert len(predictions[0][0]) == len(predictions[1][0]) >= 4
    assert all(0 <= i < len(labels) for row in predictions for i in row[0])


@e2e
@pytest.mark.slow
def test_v1_fill_mask_decodes_the_masked_token(server) -> None:
    """The arg-max token at the mask, decoded; no mask gives an empty string."""
    mask = server.fixtures.models[FILL].mask_token
    response = v1(server, FILL, [f"paris is the {mask} of france", "no mask"])
    predictions = response.json()["predictions"]
    assert isinstance(predictions[0], str) and predictions[0]
    assert predictions[1] == ""


@e2e
@pytest.mark.slow
@pytest.mark.parametrize(
    "model, datatype, shape",
    [
        (CLS, "INT64", lambda n, h: [n]),
        (FILL, "BYTES", lambda n, h: [n]),
        (EMB, "FP64", lambda n, h: [n, h]),
    ],
)
def test_v2_rest_output_0_datatype_and_shape(server, model, datatype, shape) -> None:
    """V2 reads inputs[0] (BYTES) only; one output `output-0` of the task's datatype."""
    mask = server.fixtures.models[FILL].mask_token
    output = only_output(v2(server, model, [f"a {mask} b", "c d"]))
    assert output["datatype"] == datatype
    assert output["shape"] == shape(2, server.fixtures.models[model].hidden_size)


@e2e
@pytest.mark.slow
def test_v2_rest_token_classification_is_int64_n_1_tokens(server) -> None:
    output = only_output(v2(server, TOK, ["paris is in france", "hi"]))
    assert output["datatype"] == "INT64"
    n, one, tokens = output["shape"]
    assert (n, one) == (2, 1) and len(output["data"]) == n * tokens


@e2e
@pytest.mark.slow
def test_embeddings_are_unit_vectors_of_the_hidden_size(server) -> None:
    """text_embedding: mean-pooled, L2-normalised; served over V1/V2 (0.14.1 has no
    /openai/v1/embeddings route)."""
    hidden = server.fixtures.models[EMB].hidden_size
    rows = v1(server, EMB, ["one text", "another text"]).json()["predictions"]
    assert [len(r) for r in rows] == [hidden, hidden]
    assert all(math.isclose(math.hypot(*r), 1.0, rel_tol=1e-5) for r in rows)
    assert openai(server, "embeddings", {"model": EMB, "input": "x"}).status_code == 404


@e2e
@pytest.mark.slow
@pytest.mark.parametrize("model", [GEN, T2T])
def test_v1_and_v2_infer_on_a_generative_model_is_a_400(server, model: str) -> None:
    """Generative models answer only OpenAI routes; infer is InvalidInput, 400 {"error": ...}."""
    for response in (v1(server, model, ["hello"]), v2(server, model, ["hello"])):
        assert response.status_code == 400
        assert response.json() == {"error": f"Model {model} {OPENAI_ONLY}"}


@e2e
@pytest.mark.slow
def test_grpc_metadata_and_the_upstream_bytes_failure(server) -> None:
    """gRPC serves metadata and readiness; ModelInfer on a text model fails as upstream's does:
    gRPC BYTES arrive as bytes, which the tokenizer refuses (StatusCode.UNKNOWN)."""
    grpc = pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException

    client = grpc.InferenceServerClient(server.target.grpc_address)
    assert client.get_server_metadata().name == "servegate-kserve-huggingface"
    assert client.is_model_ready(CLS)
    text = grpc.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hello world"], dtype=object))
    with pytest.raises(InferenceServerException) as failure:
        client.infer(CLS, [text])
    assert failure.value.status() == "StatusCode.UNKNOWN"
    assert "text input must be of type" in str(failure.value)
    with pytest.raises(InferenceServerException, match="OpenAIModel"):
        client.infer(GEN, [text])


NUMERIC = ks.NUMERIC_MODEL_NAME
FP16_JSON_REFUSED = (
    "Sending FP16 data via JSON is not supported. Please use the binary data format for input x"
)


def _check_numeric_echo(datatype: str, sent: list, outputs: dict[str, tuple[str, list, list]]):
    """outputs: name -> (datatype, shape, flat values) of a numeric-echo answer to input x."""
    assert outputs["x"][:2] == (datatype, [2, 2])
    assert numeric_echo.same_values(datatype, sent, outputs["x"][2])
    if datatype == "BYTES":
        assert set(outputs) == {"x"}
    else:
        assert outputs["x_sum"] == ("FP64", [1], [numeric_echo.expected_sum(datatype, sent)])


@e2e
@pytest.mark.slow
@pytest.mark.parametrize("datatype", numeric_echo.DATATYPES)
def test_numeric_echo_round_trips_every_datatype_over_rest(server, datatype: str) -> None:
    """numeric-echo returns each datatype's [2, 2] tensor exactly over JSON REST, with its FP64
    sum. FP16 is kserve 0.14.1's exception: JSON FP16 is refused (400) before the model runs,
    and the same tensor round-trips as binary tensor data."""
    sent = numeric_echo.SAMPLES[datatype]
    body = {"inputs": [{"name": "x", "datatype": datatype, "shape": [2, 2], "data": sent}]}
    infer = url(server, f"/v2/models/{NUMERIC}/infer")
    response = httpx.post(infer, json=body, timeout=60)
    if datatype == "FP16":
        assert response.status_code == 400
        assert response.json() == {"error": FP16_JSON_REFUSED}
        content, length = binary_tensor.encode_body(
            {**body, "parameters": {"binary_data_output": True}}, ["x"]
        )
        response = httpx.post(
            infer,
            content=content,
            headers={binary_tensor.HEADER: str(length), "content-type": "application/octet-stream"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        parsed = binary_tensor.split_body(
            response.content, response.headers.get(binary_tensor.HEADER), "outputs"
        )
    else:
        assert response.status_code == 200, response.text
        parsed = response.json()
    _check_numeric_echo(
        datatype,
        sent,
        {o["name"]: (o["datatype"], o["shape"], flatten(o["data"])) for o in parsed["outputs"]},
    )


@e2e
@pytest.mark.slow
@pytest.mark.parametrize("datatype", numeric_echo.DATATYPES)
def test_numeric_echo_round_trips_every_datatype_over_grpc_raw(server, datatype: str) -> None:
    """Sent as raw_input_contents, each datatype comes back exactly, as raw_output_contents
    (one entry per output), with its FP64 sum."""
    sent = numeric_echo.SAMPLES[datatype]
    client = V2GrpcClient(server.target.grpc_address)
    try:
        reply = client.infer(build_request(NUMERIC, [("x", datatype, [2, 2], sent)], raw=True))
    finally:
        client.close()
    assert reply.ok, reply.details
    message = reply.message
    assert len(message.raw_output_contents) == len(message.outputs)
    _check_numeric_echo(
        datatype,
        sent,
        {
            o.name: (o.datatype, list(o.shape), output_values(message, i))
            for i, o in enumerate(message.outputs)
        },
    )


@e2e
@pytest.mark.slow
def test_numeric_echo_zero_element_raw_output_is_dropped_upstream(server) -> None:
    """kserve 0.14.1's to_grpc turns an output into raw bytes only when its data list is
    non-empty: a zero-element echo stays in typed contents, so raw_output_contents has one entry
    (the sum's) for two outputs (infer_type.py L1415-L1434, a listed deviation)."""
    client = V2GrpcClient(server.target.grpc_address)
    try:
        reply = client.infer(build_request(NUMERIC, [("x", "INT32", [0], [])], raw=True))
    finally:
        client.close()
    assert reply.ok, reply.details
    assert [o.name for o in reply.message.outputs] == ["x", "x_sum"]
    assert len(reply.message.raw_output_contents) == 1


@e2e
@pytest.mark.slow
def test_numeric_echo_refuses_misfit_tensors(server) -> None:
    """A tensor whose values do not fit its datatype is kserve's InvalidInput: 400 {"error"}
    over REST; over gRPC the SDK's servicer lets it escape, so grpcio answers UNKNOWN."""
    bad = [{"name": "x", "datatype": "UINT8", "shape": [2], "data": [255, 256]}]
    response = httpx.post(
        url(server, f"/v2/models/{NUMERIC}/infer"), json={"inputs": bad}, timeout=60
    )
    assert response.status_code == 400
    assert response.json() == {"error": "input 'x': 256 is out of range for UINT8"}
    client = V2GrpcClient(server.target.grpc_address)
    try:
        reply = client.infer(build_request(NUMERIC, [("x", "UINT8", [2], [255, 300])]))
    finally:
        client.close()
    assert reply.code.name == "UNKNOWN"
    assert "InvalidInput" in reply.details and "300 is out of range for UINT8" in reply.details


@e2e
@pytest.mark.slow
@pytest.mark.parametrize("model", [GEN, T2T])
def test_completion_is_greedy_and_finishes_by_length(server, model: str) -> None:
    """finish_reason is "length" whenever no stop sequence fired; usage counts tokens."""
    body = {"model": model, "prompt": "hello world", "max_tokens": 4}
    first, again = openai(server, "completions", body), openai(server, "completions", body)
    assert first.status_code == 200, first.text
    result = first.json()
    assert result["object"] == "text_completion" and result["model"] == model
    [choice] = result["choices"]
    assert choice["finish_reason"] == "length" and choice["text"]
    assert again.json()["choices"][0]["text"] == choice["text"]
    usage = result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@e2e
@pytest.mark.slow
def test_chat_completion_answers_as_the_assistant(server) -> None:
    body = {"model": GEN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    response = openai(server, "chat/completions", body)
    assert response.status_code == 200, response.text
    [choice] = response.json()["choices"]
    assert response.json()["object"] == "chat.completion"
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]


@e2e
@pytest.mark.slow
def test_streams_are_sse_chunks_ending_with_done(server) -> None:
    """Streaming: `data: {json}` events then `data: [DONE]`; every chunk carries finish_reason,
    one id per stream; the chunks add up to the non-streamed text."""
    body = {"model": GEN, "prompt": "hello world", "max_tokens": 6}
    whole = openai(server, "completions", body).json()["choices"][0]["text"]
    chunks = sse_events(openai(server, "completions", {**body, "stream": True}))
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["choices"][0]["finish_reason"] == "length" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks).strip() == whole.strip()
    chat = {
        "model": GEN,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "stream": True,
    }
    deltas = sse_events(openai(server, "chat/completions", chat))
    assert {d["object"] for d in deltas} == {"chat.completion.chunk"}
    assert all(d["choices"][0]["delta"]["role"] == "assistant" for d in deltas)


@e2e
@pytest.mark.slow
def test_openai_errors_of_the_sdk(server) -> None:
    """Unknown or non-generative model: 404 {"error"}; chat n=2: 400; completion n=2 and too
    many tokens: 500 "ValueError : ..."; missing model: FastAPI's 422 {"detail"}."""
    cases = [
        ("completions", {"model": CLS, "prompt": "x"}, 404, "does not exist"),
        (
            "chat/completions",
            {"model": GEN, "messages": [{"role": "user", "content": "x"}], "n": 2},
            400,
            "n != 1 is not supported",
        ),
        ("completions", {"model": GEN, "prompt": "x", "n": 2}, 500, "ValueError : 'n' > 1"),
        (
            "completions",
            {"model": GEN, "prompt": "x", "max_tokens": 100000},
            500,
            "maximum context length",
        ),
    ]
    for route, body, status, message in cases:
        response = openai(server, route, body)
        assert response.status_code == status, (body, response.text)
        assert message in response.json()["error"]
    missing = openai(server, "completions", {"prompt": "x"})
    assert missing.status_code == 422 and "detail" in missing.json()


# ------------------------------------------------------------------------------ vs upstream


def differential_requests(fixtures: FixtureSet) -> list[tuple[str, str, Any]]:
    """The same requests for both implementations: every route, task and documented error."""
    mask = fixtures.models[FILL].mask_token
    texts = [f"the capital of france is {mask} .", "hello world"]
    v2_body = {"inputs": [{"name": "t", "datatype": "BYTES", "shape": [2], "data": texts}]}
    chat = [{"role": "user", "content": "hi"}]
    out: list[tuple[str, str, Any]] = []
    for model in (CLS, TOK, FILL, EMB, GEN, T2T):
        out += [
            ("POST", f"/v1/models/{model}:predict", {"instances": texts}),
            ("POST", f"/v2/models/{model}/infer", v2_body),
            ("GET", f"/v2/models/{model}", None),
            ("GET", f"/v2/models/{model}/ready", None),
            ("GET", f"/v1/models/{model}", None),
        ]
    out += [
        ("GET", "/v2/models", None),
        ("GET", "/v1/models", None),
        ("GET", "/openai/v1/models", None),
        ("POST", f"/v1/models/{CLS}:predict", {"foo": 1}),
        ("POST", "/v1/models/nope:predict", {"instances": ["a"]}),
        (
            "POST",
            f"/v2/models/{CLS}/infer",
            {"inputs": [{"name": "t", "datatype": "INT32", "shape": [1], "data": [1]}]},
        ),
        ("POST", f"/v2/models/{CLS}/infer", {"inputs": []}),
        ("POST", f"/v1/models/{FILL}:predict", {"instances": ["no mask", f"{mask} and {mask}"]}),
    ]
    for body in (
        {"model": GEN, "prompt": "hello world", "max_tokens": 5},
        {"model": GEN, "prompt": ["hello world", "a b"], "max_tokens": 4},
        {"model": GEN, "prompt": [5, 6, 7], "max_tokens": 4},
        {"model": GEN, "prompt": "hello world", "max_tokens": 5, "echo": True},
        {"model": GEN, "prompt": "hello world", "max_tokens": 8, "stop": [" "]},
        {"model": GEN, "prompt": "hello world", "max_tokens": 100000},
        {"model": GEN, "prompt": "hello world", "n": 2},
        {"model": GEN, "prompt": "hello world", "max_tokens": 5, "stream": True},
        {"model": T2T, "prompt": "hello world", "max_tokens": 6},
        {"model": T2T, "prompt": "hello world", "echo": True},
        {"model": T2T, "prompt": "hello world", "max_tokens": 4, "stream": True},
        {"model": CLS, "prompt": "hello"},
        {"prompt": "hello"},
    ):
        out.append(("POST", "/openai/v1/completions", body))
    for body in (
        {"model": GEN, "messages": chat, "max_tokens": 5},
        {"model": GEN, "messages": chat, "max_tokens": 5, "stream": True},
        {"model": GEN, "messages": chat, "n": 2},
        {"model": T2T, "messages": chat, "max_tokens": 4},
    ):
        out.append(("POST", "/openai/v1/chat/completions", body))
    return out


VOLATILE = {"id", "created"}
# the one place a class name shows: "Model of type <class> does not support inference"
CLASS_NAME = re.compile(r"Model of type \w+ does")


def comparable(value: Any) -> Any:
    """A response with what legitimately differs per call (ids, timestamps) blanked out."""
    if isinstance(value, dict):
        return {k: "*" if k in VOLATILE else comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, str):
        return CLASS_NAME.sub("Model of type <class> does", value)
    return value


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def answer(server, method: str, path: str, body: Any) -> tuple[int, Any]:
    response = httpx.request(method, url(server, path), json=body, timeout=120)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return response.status_code, comparable(sse_events(response))
    try:
        return response.status_code, comparable(response.json())
    except ValueError:
        return response.status_code, response.text


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    assert OFFICIAL_PYTHON is not None
    ours = start(tmp_path_factory, OFFICIAL_PYTHON, "servegate")
    try:
        official = start(tmp_path_factory, OFFICIAL_PYTHON, "official")
    except BaseException:
        ours.stop()
        raise
    yield ours, official
    official.stop()
    ours.stop()


@differential
@pytest.mark.slow
def test_same_answers_as_the_official_classes(pair) -> None:
    """Every request gets the same status and body (ids and timestamps aside) from ours and from
    huggingfaceserver's own model classes: output names, datatypes, shapes, values, errors."""
    ours, official = pair
    assert official.target.implementation.startswith("KServe huggingfaceserver")
    assert httpx.get(url(official, "/v2")).json()["name"] == "kserve-huggingfaceserver"
    differences = []
    for method, path, body in differential_requests(ours.fixtures):
        mine, theirs = answer(ours, method, path, body), answer(official, method, path, body)
        if not same(mine, theirs):
            differences.append(
                f"{method} {path} {json.dumps(body)}\n  ours:     {mine}\n  official: {theirs}"
            )
    assert not differences, "\n".join(differences)
