"""The testcontainers backend: container specs (no engine needed), the one-line error without an
engine, through the plugin too, and an end-to-end start where an engine exists."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from servegate.errors import ServegateError
from servegate.exit_codes import SERVER_START_FAILED
from servegate.fixtures.catalog import TASKS, FixtureModel, FixtureSet
from servegate.reference_servers.base import ServerSpec
from servegate.reference_servers.container_owner import LABEL_OWNER, current_owner
from servegate.reference_servers.containers import (
    ContainerSpec,
    docker_create_kwargs,
    docker_engine_problem,
    image_for,
    require_engine,
    stage_repository,
)

CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance"
NO_ENGINE = "unix:///nonexistent/servegate-test-docker.sock"


@pytest.fixture
def fake_fixtures(tmp_path: Path) -> FixtureSet:
    return make_fake_fixtures(tmp_path / "fixtures")


def make_fake_fixtures(root: Path) -> FixtureSet:
    """A fixture set whose models are a config.json and a weights file each (enough to stage)."""
    models = {}
    for task in TASKS:
        name = f"tiny-{task}"
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"architectures": ["X"]}))
        (folder / "model.safetensors").write_bytes(b"\0" * 16)
        (folder / "model.safetensors").chmod(0o600)  # staging must make it readable to uid 1000
        models[name] = FixtureModel(
            name=name, task=task, path=folder, architecture="X", labels=("NEG", "POS"),
            hidden_size=8, max_position_embeddings=64, mask_token="[MASK]",
        )  # fmt: skip
    return FixtureSet(root=root, key="test", models=models)


def _stage(tmp_path, fixtures, runtime, device="cpu", models=(), **options):
    spec = ServerSpec(runtime=runtime, device=device, models=models, options=options)
    dest = tmp_path / "repo"
    return stage_repository(runtime, spec, fixtures, dest), dest


def _no_host_paths(dest: Path, host: Path) -> None:
    for path in dest.rglob("*.json"):
        assert str(host) not in path.read_text(), f"{path} names a path of this machine"


# --- MLServer ---------------------------------------------------------------------------------


def test_mlserver_cpu_container_serves_every_model_from_model_settings(tmp_path, fake_fixtures):
    layout, dest = _stage(tmp_path, fake_fixtures, "mlserver")
    assert layout.image == "seldonio/mlserver:1.7.1-huggingface"
    assert layout.args == ("mlserver", "start", "/mnt/models")
    assert dict(layout.ports) == {"http": 8080, "grpc": 8081, "metrics": 8082}
    settings = json.loads((dest / "settings.json").read_text())
    assert settings["host"] == "0.0.0.0"
    assert (settings["http_port"], settings["grpc_port"], settings["metrics_port"]) == (
        8080, 8081, 8082,
    )  # fmt: skip
    assert settings["model_repository_root"] == "/mnt/models"
    assert "numeric-echo" in layout.models
    for name, task in layout.models.items():
        if name == "numeric-echo":
            continue
        model_settings = json.loads((dest / name / "model-settings.json").read_text())
        extra = model_settings["parameters"]["extra"]
        assert extra["pretrained_model"] == f"/mnt/models/{name}/model"
        assert extra["task"] == task
        assert extra["device"] == "cpu"
        assert (dest / name / "model" / "config.json").is_file()
    _no_host_paths(dest, tmp_path)
    kwargs = docker_create_kwargs(ContainerSpec(layout, dest))
    assert kwargs["volumes"] == {str(dest.resolve()): {"bind": "/mnt/models", "mode": "ro"}}
    assert set(kwargs["ports"]) == {"8080/tcp", "8081/tcp", "8082/tcp"}
    assert all(host == ("127.0.0.1", None) for host in kwargs["ports"].values())
    assert "device_requests" not in kwargs
    assert "entrypoint" not in kwargs
    assert kwargs["environment"]["HF_HUB_OFFLINE"] == "1"


def test_mlserver_gpu_variant_asks_for_gpus_and_loads_on_cuda_in_half_precision(
    tmp_path, fake_fixtures
):
    layout, dest = _stage(
        tmp_path, fake_fixtures, "mlserver", device="cuda", models=("tiny-fill-mask",),
        dtype="float16",
    )  # fmt: skip
    model_settings = json.loads((dest / "tiny-fill-mask" / "model-settings.json").read_text())
    assert model_settings["parameters"]["extra"]["device"] == "cuda"
    assert model_settings["parameters"]["extra"]["model_kwargs"] == {"torch_dtype": "auto"}
    config = json.loads((dest / "tiny-fill-mask" / "model" / "config.json").read_text())
    assert config["torch_dtype"] == "float16"
    kwargs = docker_create_kwargs(ContainerSpec(layout, dest))
    (request,) = kwargs["device_requests"]
    assert request["Capabilities"] == [["gpu"]]
    assert request["Count"] == -1


def test_staged_files_are_readable_by_the_images_user(tmp_path, fake_fixtures):
    _, dest = _stage(tmp_path, fake_fixtures, "mlserver", models=("tiny-fill-mask",))
    weights = dest / "tiny-fill-mask" / "model" / "model.safetensors"
    assert weights.stat().st_mode & stat.S_IROTH
    assert (dest / "tiny-fill-mask").stat().st_mode & stat.S_IXOTH


def test_image_versions_are_options():
    assert (
        image_for("mlserver", "cpu", {"version": "1.6.1"}) == "seldonio/mlserver:1.6.1-huggingface"
    )
    assert image_for("kserve", "cpu", {"version": "0.15.2"}) == "kserve/huggingfaceserver:v0.15.2"
    assert image_for("kserve", "cuda", {}) == "kserve/huggingfaceserver:v0.14.1-gpu"
    assert image_for("kserve", "cuda", {"image": "me/hf:dev"}) == "me/hf:dev"


def test_unknown_option_is_one_clear_error(tmp_path, fake_fixtures):
    with pytest.raises(ServegateError, match="unknown MLServer option"):
        _stage(tmp_path, fake_fixtures, "mlserver", workers=2)
    with pytest.raises(ServegateError, match="unknown kserve option"):
        _stage(tmp_path, fake_fixtures, "kserve", parallel_workers=2)


# --- KServe -----------------------------------------------------------------------------------


def test_kserve_single_layout_runs_official_classes_for_every_model(tmp_path, fake_fixtures):
    layout, dest = _stage(tmp_path, fake_fixtures, "kserve")
    assert layout.image == "kserve/huggingfaceserver:v0.14.1"
    assert layout.entrypoint == ("python", "-m", "kserve_hf_reference")
    assert "--implementation=official" in layout.args
    assert "--model=tiny-fill-mask=/mnt/models/tiny-fill-mask:fill_mask" in layout.args
    assert "--model=tiny-feature-extraction=/mnt/models/tiny-feature-extraction:text_embedding" in (
        layout.args
    )
    assert "--dtype=auto" in layout.args
    assert {"--http_port=8080", "--grpc_port=8081"} <= set(layout.args)
    assert "tiny-question-answering" not in layout.models  # upstream rejects QA
    # the numeric echo model, as the local KServe server hosts it
    assert "--numeric_model=numeric-echo" in layout.args
    assert layout.models["numeric-echo"] == "custom-numeric"
    assert layout.env["PYTHONPATH"] == "/mnt/models/_servegate"
    assert (dest / "_servegate" / "kserve_hf_reference" / "__main__.py").is_file()
    assert not list(dest.rglob("__pycache__"))
    kwargs = docker_create_kwargs(ContainerSpec(layout, dest))
    assert kwargs["entrypoint"] == ["python", "-m", "kserve_hf_reference"]
    assert set(kwargs["ports"]) == {"8080/tcp", "8081/tcp"}
    assert "device_requests" not in kwargs
    _no_host_paths(dest, tmp_path)


def test_kserve_per_model_layout_is_upstreams_entry_point_with_its_flags(tmp_path, fake_fixtures):
    layout, _ = _stage(
        tmp_path, fake_fixtures, "kserve", models=("tiny-fill-mask",), layout="per-model"
    )
    assert layout.entrypoint is None  # the image's python -m huggingfaceserver
    assert layout.args[:4] == (
        "--model_name=tiny-fill-mask",
        "--model_dir=/mnt/models/tiny-fill-mask",
        "--task=fill_mask",
        "--backend=huggingface",
    )
    assert "--dtype=auto" in layout.args
    assert dict(layout.models) == {"tiny-fill-mask": "fill-mask"}
    assert "openai-chat" not in layout.declared_features


def test_kserve_per_model_layout_needs_one_model(tmp_path, fake_fixtures):
    with pytest.raises(ServegateError, match="serves one model"):
        _stage(tmp_path, fake_fixtures, "kserve", layout="per-model")


def test_kserve_gpu_variant_uses_the_gpu_image_half_precision_and_gpus(tmp_path, fake_fixtures):
    layout, dest = _stage(tmp_path, fake_fixtures, "kserve", device="cuda")
    assert layout.image == "kserve/huggingfaceserver:v0.14.1-gpu"
    assert "--dtype=float16" in layout.args
    kwargs = docker_create_kwargs(ContainerSpec(layout, dest))
    assert kwargs["device_requests"][0]["Capabilities"] == [["gpu"]]
    bf16, _ = _stage(tmp_path, fake_fixtures, "kserve", device="cuda", dtype="bfloat16")
    assert "--dtype=bfloat16" in bf16.args


# --- without an engine ------------------------------------------------------------------------


def test_without_an_engine_the_backend_says_so_in_one_line(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    with pytest.raises(ServegateError) as err:
        require_engine("testcontainers", gpu=False)
    message = str(err.value)
    assert message.startswith("backend testcontainers needs a Docker engine: ")
    assert NO_ENGINE in message
    assert message.endswith("run `servegate doctor`")
    assert "\n" not in message


def test_plugin_without_an_engine_fails_with_one_clear_line(pytester, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    result = pytester.runpytest_subprocess(
        str(CONFORMANCE), "-p", "no:cacheprovider", "--backend=testcontainers",
        "--servers=mlserver", f"--state-dir={pytester.path / 'state'}",
        f"--reports-dir={pytester.path / 'reports'}",
    )  # fmt: skip
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == SERVER_START_FAILED
    assert "backend testcontainers needs a Docker engine" in out
    assert "servegate doctor" in out
    assert "Traceback" not in out
    # nothing was built before the check
    assert not (pytester.path / "state" / "fixtures").exists()


# --- end to end, where an engine exists -------------------------------------------------------

_ENGINE_PROBLEM = docker_engine_problem(timeout=2)


@pytest.mark.slow
@pytest.mark.skipif(_ENGINE_PROBLEM is not None, reason=f"needs a Docker engine: {_ENGINE_PROBLEM}")
@pytest.mark.parametrize("runtime", ["kserve", "mlserver"])
def test_official_image_starts_serves_and_leaves_nothing(tmp_path, runtime):
    import docker

    from servegate.protocols.v2_rest import V2RestClient
    from servegate.reference_servers.manager import start_reference

    server = start_reference(
        runtime, state_dir=Path(".servegate").resolve(), logs_dir=tmp_path / "logs",
        backend="testcontainers", ready_timeout=600,
    )  # fmt: skip
    try:
        client = V2RestClient(server.target.http_url)
        assert client.ready().status == 200
        for model in server.target.models:
            assert client.model_ready(model).status == 200
        client.close()
    finally:
        server.stop()
    mine = f"{LABEL_OWNER}={current_owner().run_id}"
    leftovers = docker.from_env().containers.list(all=True, filters={"label": mine})
    assert leftovers == []
