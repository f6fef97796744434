"""The MLServer reference runtime: the files prepare() writes, and the real server they start."""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from servegate.fixtures.catalog import FixtureModel, FixtureSet, build_fixtures
from servegate.reference_servers.base import Ports, ServerSpec
from servegate.reference_servers.mlserver import runtime as mls
from servegate.tasks import examples
from tests.conftest import project_python

REPO = Path(__file__).resolve().parents[1]
PORTS = Ports(http=18080, grpc=18081, metrics=18082)
BOGUS_PYTHON = Path("/nonexistent/bin/python")


# ------------------------------------------------------------------------------ prepare()


def fake_fixtures(root: Path) -> FixtureSet:
    models = {}
    for task in sorted(mls.SUPPORTED_TASKS):
        name = f"tiny-{task}"
        path = root / name
        path.mkdir(parents=True)
        (path / "config.json").write_text(json.dumps({"torch_dtype": "float32"}))
        (path / "model.safetensors").write_bytes(b"weights")
        models[name] = FixtureModel(
            name=name,
            task=task,
            path=path,
            architecture="X",
            labels=(),
            hidden_size=32,
            max_position_embeddings=128,
            mask_token=None,
        )
    return FixtureSet(root=root, key="test", models=models)


def prepare(tmp_path: Path, ports: Ports = PORTS, device: str = "cpu", **options):
    fixtures = fake_fixtures(tmp_path / "fixtures")
    spec = ServerSpec(runtime="mlserver", device=device, options=options)
    workdir = tmp_path / "work"
    launch = mls.RUNTIME.prepare(spec, fixtures, BOGUS_PYTHON, ports, workdir)
    return launch, workdir, fixtures


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_settings_json_binds_localhost_on_the_given_ports(tmp_path: Path) -> None:
    """settings.json: the given ports on 127.0.0.1, debug off, state kept in the workdir."""
    _, workdir, _ = prepare(tmp_path)
    settings = read_json(workdir / "settings.json")
    assert settings["host"] == "127.0.0.1"
    assert (settings["http_port"], settings["grpc_port"], settings["metrics_port"]) == (
        18080,
        18081,
        18082,
    )
    assert settings["debug"] is False
    assert settings["parallel_workers"] == 1
    assert settings["model_repository_root"] == str(workdir / "models")
    assert settings["metrics_dir"].startswith(str(workdir))
    assert settings["environments_dir"].startswith(str(workdir))


def test_no_metrics_port_disables_the_metrics_server(tmp_path: Path) -> None:
    _, workdir, _ = prepare(tmp_path, ports=Ports(http=1, grpc=2))
    settings = read_json(workdir / "settings.json")
    assert settings["metrics_endpoint"] is None
    assert "metrics_port" not in settings


def test_one_hf_model_folder_per_fixture(tmp_path: Path) -> None:
    """Every fixture model gets model-settings.json naming its task and directory."""
    launch, workdir, fixtures = prepare(tmp_path)
    for model in fixtures.models.values():
        settings = read_json(workdir / "models" / model.name / "model-settings.json")
        assert settings["name"] == model.name
        assert settings["implementation"] == "mlserver_huggingface.HuggingFaceRuntime"
        extra = settings["parameters"]["extra"]
        assert extra["task"] == model.task
        assert extra["pretrained_model"] == str(model.path)
        assert extra["device"] == "cpu"
        assert "max_batch_size" not in settings
        assert "model_kwargs" not in extra
        assert launch.models[model.name] == model.task


def test_cuda_device_maps_to_the_pipeline_device(tmp_path: Path) -> None:
    _, workdir, _ = prepare(tmp_path, device="cuda")
    settings = read_json(workdir / "models" / "tiny-fill-mask" / "model-settings.json")
    assert settings["parameters"]["extra"]["device"] == "cuda"


def test_batching_options_reach_every_text_model(tmp_path: Path) -> None:
    """max_batch_time_ms becomes MLServer's max_batch_time in seconds."""
    launch, workdir, _ = prepare(
        tmp_path, max_batch_size=8, max_batch_time_ms=25, parallel_workers=3
    )
    assert read_json(workdir / "settings.json")["parallel_workers"] == 3
    settings = read_json(workdir / "models" / "tiny-text-classification" / "model-settings.json")
    assert settings["max_batch_size"] == 8
    assert settings["max_batch_time"] == pytest.approx(0.025)
    # the image pipeline cannot load with max_batch_size > 1 (no tokenizer to pad with)
    assert "tiny-image-classification" not in launch.models
    assert not (workdir / "models" / "tiny-image-classification").exists()
    numeric = read_json(workdir / "models" / "numeric-echo" / "model-settings.json")
    assert "max_batch_size" not in numeric


def test_batching_an_image_model_by_name_is_refused(tmp_path: Path) -> None:
    fixtures = fake_fixtures(tmp_path / "fixtures")
    spec = ServerSpec(
        runtime="mlserver", models=("tiny-image-classification",), options={"max_batch_size": 4}
    )
    with pytest.raises(ValueError, match="tiny-image-classification"):
        mls.RUNTIME.prepare(spec, fixtures, BOGUS_PYTHON, PORTS, tmp_path / "work")


def test_half_precision_loads_through_a_config_that_names_the_dtype(tmp_path: Path) -> None:
    """dtype float16: model_kwargs torch_dtype "auto" and a config.json saying float16."""
    _, workdir, fixtures = prepare(tmp_path, dtype="float16")
    folder = workdir / "models" / "tiny-fill-mask"
    extra = read_json(folder / "model-settings.json")["parameters"]["extra"]
    assert extra["model_kwargs"] == {"torch_dtype": "auto"}
    weights = Path(extra["pretrained_model"])
    assert weights.parent == folder
    assert read_json(weights / "config.json")["torch_dtype"] == "float16"
    source = fixtures.models["tiny-fill-mask"].path
    assert (weights / "model.safetensors").resolve() == (source / "model.safetensors").resolve()
    # the fixture itself is untouched
    assert read_json(source / "config.json")["torch_dtype"] == "float32"


def test_unknown_option_or_dtype_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_batch_tme"):
        prepare(tmp_path / "a", max_batch_tme=3)
    with pytest.raises(ValueError, match="int4"):
        prepare(tmp_path / "b", dtype="int4")


def test_numeric_model_folder_holds_its_runtime(tmp_path: Path) -> None:
    """numeric-echo: the custom runtime beside its settings, metadata for every datatype."""
    launch, workdir, _ = prepare(tmp_path)
    folder = workdir / "models" / "numeric-echo"
    assert (folder / "numeric_runtime.py").read_bytes() == mls.NUMERIC_RUNTIME_SOURCE.read_bytes()
    settings = read_json(folder / "model-settings.json")
    assert settings["implementation"] == "numeric_runtime.NumericEcho"
    assert [t["datatype"] for t in settings["inputs"]] == list(mls.V2_DATATYPES)
    outputs = {t["name"] for t in settings["outputs"]}
    assert {"fp16", "fp16_sum", "bytes"} <= outputs and "bytes_sum" not in outputs
    assert launch.models["numeric-echo"] == "custom-numeric"


def test_launch_runs_mlserver_offline(tmp_path: Path) -> None:
    launch, workdir, _ = prepare(tmp_path)
    assert list(launch.argv[:2]) == [str(BOGUS_PYTHON), "-c"]
    assert list(launch.argv[-2:]) == ["start", str(workdir)]
    assert launch.cwd == workdir
    assert launch.env["HF_HUB_OFFLINE"] == "1" and launch.env["TRANSFORMERS_OFFLINE"] == "1"
    # no interpreter to ask: the version comes from the pins
    assert launch.implementation == "MLServer 1.7.1 with mlserver-huggingface 1.7.1"
    assert mls.RUNTIME.requirements_file().is_file()
    assert mls.name == "mlserver"


def test_prepare_twice_leaves_no_stale_model(tmp_path: Path) -> None:
    prepare(tmp_path)
    fixtures = fake_fixtures(tmp_path / "fixtures2")
    spec = ServerSpec(runtime="mlserver", models=("tiny-fill-mask",))
    launch = mls.RUNTIME.prepare(spec, fixtures, BOGUS_PYTHON, PORTS, tmp_path / "work")
    assert sorted(p.name for p in (tmp_path / "work" / "models").iterdir()) == [
        "numeric-echo",
        "tiny-fill-mask",
    ]
    assert set(launch.models) == {"numeric-echo", "tiny-fill-mask"}


# ------------------------------------------------------------------------------ end to end

#: starts the real MLServer from the project's env (created on first use)
e2e = pytest.mark.slow


def group_processes(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from servegate.reference_servers.local import start_local

    python = project_python("mlserver")
    state = tmp_path_factory.mktemp("mlserver-state")
    # the fixtures env builds the models, as the suite does (a server env may lack pillow)
    fixtures = build_fixtures(state, project_python("fixtures"), log=lambda line: None)
    started = time.monotonic()
    running = start_local(
        mls.RUNTIME,
        ServerSpec(runtime="mlserver", ready_timeout=240),
        fixtures,
        python,
        state_dir=state,
        logs_dir=state / "logs",
    )
    running.ready_seconds = time.monotonic() - started
    running.fixtures = fixtures
    yield running
    running.stop()


def infer(server, model: str, inputs: list[dict], **extra) -> httpx.Response:
    body = {"inputs": inputs, **extra}
    return httpx.post(f"{server.target.http_url}/v2/models/{model}/infer", json=body, timeout=60)


def text(name: str, value: str) -> dict:
    return {"name": name, "datatype": "BYTES", "shape": [1], "data": [value]}


def results(response: httpx.Response) -> list:
    """The pipeline results of an MLServer HF response: one BYTES `output` of JSON strings."""
    assert response.status_code == 200, response.text
    [output] = response.json()["outputs"]
    assert output["name"] == "output" and output["datatype"] == "BYTES"
    assert output["parameters"]["content_type"] == "hg_jsonlist"
    assert output["shape"] == [len(output["data"]), 1]
    return [json.loads(element) for element in output["data"]]


def labels_of(server, task: str) -> set[str]:
    return set(server.fixtures.for_task(task).labels)


@e2e
@pytest.mark.slow
def test_every_model_is_ready_and_served(server) -> None:
    index = httpx.post(f"{server.target.http_url}/v2/repository/index", json={}).json()
    assert {m["name"]: m["state"] for m in index} == {
        name: "READY" for name in server.target.models
    }


@e2e
@pytest.mark.slow
def test_text_classification_returns_a_configured_label(server) -> None:
    [result] = results(
        infer(server, "tiny-text-classification", [text("array_inputs", examples.SENTIMENT)])
    )
    assert result["label"] in labels_of(server, "text-classification")
    assert 0.0 <= result["score"] <= 1.0


@e2e
@pytest.mark.slow
def test_token_classification_tags_spans_of_the_input(server) -> None:
    [entities] = results(
        infer(server, "tiny-token-classification", [text("array_inputs", examples.NER)])
    )
    assert entities
    labels = labels_of(server, "token-classification")
    for entity in entities:
        assert entity["entity"] in labels
        assert 0.0 <= entity["score"] <= 1.0
        assert examples.NER[entity["start"] : entity["end"]].strip()


@e2e
@pytest.mark.slow
def test_question_answering_answer_is_a_span_of_the_context(server) -> None:
    [answer] = results(
        infer(
            server,
            "tiny-question-answering",
            [text("question", examples.QUESTION), text("context", examples.CONTEXT)],
        )
    )
    assert answer["answer"] == examples.CONTEXT[answer["start"] : answer["end"]]


@e2e
@pytest.mark.slow
def test_fill_mask_puts_the_token_in_the_sequence(server) -> None:
    items = results(infer(server, "tiny-fill-mask", [text("array_inputs", examples.FILL_MASK)]))
    # the pipeline unwraps a one-element batch: top-k dicts as rows, or one row of them
    candidates = items[0] if len(items) == 1 and isinstance(items[0], list) else items
    assert candidates
    for candidate in candidates:
        assert candidate["token_str"].strip().lstrip("#") in candidate["sequence"]


@e2e
@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "prompt"),
    [
        ("tiny-text-generation", examples.PROMPT),
        ("tiny-text2text-generation", examples.TEXT2TEXT),
    ],
)
def test_generation_returns_text(server, model: str, prompt: str) -> None:
    [generated] = results(infer(server, model, [text("array_inputs", prompt)]))
    [item] = generated if isinstance(generated, list) else [generated]
    assert isinstance(item["generated_text"], str) and item["generated_text"]


@e2e
@pytest.mark.slow
def test_feature_extraction_has_the_hidden_size(server) -> None:
    [embedding] = results(
        infer(server, "tiny-feature-extraction", [text("array_inputs", examples.EMBED)])
    )
    tokens = np.asarray(embedding, dtype=float)
    assert tokens.ndim == 3 and tokens.shape[0] == 1
    assert tokens.shape[-1] == server.fixtures.for_task("feature-extraction").hidden_size


@e2e
@pytest.mark.slow
def test_image_classification_returns_configured_labels(server) -> None:
    """The image goes in `images` (the pipeline's argument), base64, content type pillow_image."""
    image = {
        "name": "images",
        "datatype": "BYTES",
        "shape": [1],
        "data": [base64.b64encode(examples.png_image()).decode()],
        "parameters": {"content_type": "pillow_image"},
    }
    [ranked] = results(infer(server, "tiny-image-classification", [image]))
    labels = labels_of(server, "image-classification")
    assert {item["label"] for item in ranked} <= labels
    assert all(0.0 <= item["score"] <= 1.0 for item in ranked)


NUMERIC_CASES = {
    "BOOL": [True, False, True],
    "UINT8": [0, 1, 255],
    "UINT16": [0, 65535, 7],
    "UINT32": [0, 2**32 - 1, 9],
    "UINT64": [0, 2**64 - 1, 3],
    "INT8": [-128, 127, 0],
    "INT16": [-32768, 32767, -1],
    "INT32": [-(2**31), 2**31 - 1, 5],
    "INT64": [-(2**63), 2**63 - 1, 11],
    "FP16": [1.5, -0.25, 65504.0],
    "FP32": [0.5, -2.0, 3.25],
    "FP64": [1e300, -2.5, 0.1],
    "BYTES": ["hello", "", "héllo"],
}


@e2e
@pytest.mark.slow
def test_numeric_model_echoes_every_datatype_over_rest(server) -> None:
    """Each input comes back with its name, datatype, shape and values; numerics add a sum."""
    inputs = [
        {"name": dt.lower(), "datatype": dt, "shape": [len(values)], "data": values}
        for dt, values in NUMERIC_CASES.items()
    ]
    response = infer(server, "numeric-echo", inputs, id="echo-1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "echo-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    for dt, values in NUMERIC_CASES.items():
        echoed = outputs[dt.lower()]
        assert (echoed["datatype"], echoed["shape"], echoed["data"]) == (dt, [len(values)], values)
        if dt != "BYTES":
            total = outputs[f"{dt.lower()}_sum"]
            assert (total["datatype"], total["shape"]) == ("FP64", [1])
            assert total["data"] == [math.fsum(float(v) for v in values)]
    assert "bytes_sum" not in outputs


@e2e
@pytest.mark.slow
def test_numeric_model_returns_only_the_requested_outputs(server) -> None:
    tensor = {"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}
    response = infer(server, "numeric-echo", [tensor], outputs=[{"name": "x_sum"}])
    assert response.status_code == 200, response.text
    assert [(o["name"], o["data"]) for o in response.json()["outputs"]] == [("x_sum", [10.0])]
    unknown = infer(server, "numeric-echo", [tensor], outputs=[{"name": "nope"}])
    assert unknown.status_code == 400 and "nope" in unknown.json()["error"]


@e2e
@pytest.mark.slow
def test_numeric_model_rejects_a_shape_that_does_not_fit_the_data(server) -> None:
    response = infer(
        server, "numeric-echo", [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]}]
    )
    assert response.status_code == 400
    assert "shape" in response.json()["error"]


@e2e
@pytest.mark.slow
def test_numeric_model_echoes_every_datatype_over_grpc(server) -> None:
    """tritonclient sends raw_input_contents; the echo comes back bit for bit."""
    grpcclient = pytest.importorskip("tritonclient.grpc")
    arrays = {
        dt: np.array(values, dtype=object if dt == "BYTES" else _NUMPY[dt])
        for dt, values in NUMERIC_CASES.items()
    }
    arrays["BYTES"] = np.array([b"\x00\xff", b"", "héllo".encode()], dtype=object)
    arrays["FP16"] = np.array([[1.5, np.inf], [0.1, -0.0]], dtype=np.float16)
    client = grpcclient.InferenceServerClient(server.target.grpc_address)
    try:
        inputs = []
        for dt, array in arrays.items():
            tensor = grpcclient.InferInput(dt.lower(), list(array.shape), dt)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        result = client.infer("numeric-echo", inputs, request_id="grpc-1")
        assert result.get_response().id == "grpc-1"
        for dt, array in arrays.items():
            echoed = result.as_numpy(dt.lower())
            assert echoed.dtype == array.dtype and echoed.shape == array.shape, dt
            if dt == "BYTES":
                assert list(echoed.flat) == list(array.flat)
            else:
                assert echoed.tobytes() == array.tobytes(), dt
                expected = math.fsum(float(v) for v in array.astype(np.float64).flat)
                assert result.as_numpy(f"{dt.lower()}_sum").tolist() == [expected], dt
    finally:
        client.close()


_NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


@e2e
@pytest.mark.slow
def test_stop_leaves_no_process_behind(server) -> None:
    """Runs last in this module: stop() ends the server and every worker it forked."""
    assert server.ready_seconds < 240
    pgid = server.proc.pid
    assert group_processes(pgid), "the server should be running before the stop"
    server.stop()
    deadline = time.monotonic() + 15
    while group_processes(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_processes(pgid) == []
