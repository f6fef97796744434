"""The kind backend: manifests checked against what KServe's CRDs need (no cluster needed), the
modelcar build spec, cluster config, the one-line error without the tools, and an end-to-end
deployment where kind and an engine exist."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from servegate.errors import ServegateError
from servegate.exit_codes import SERVER_START_FAILED
from servegate.fixtures.catalog import FixtureSet
from servegate.reference_servers.base import ServerSpec
from servegate.reference_servers.containers import stage_repository
from servegate.reference_servers.kind import cluster, manifests, modelcar
from servegate.reference_servers.kind.backend import isvc_ready, plan, require_kind

from .test_containers import NO_ENGINE, make_fake_fixtures

CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.fixture
def fake_fixtures(tmp_path: Path) -> FixtureSet:
    return make_fake_fixtures(tmp_path / "fixtures")


def _plan(tmp_path, fixtures, runtime, device="cpu", models=(), kind_opts=None, **options):
    spec = ServerSpec(runtime=runtime, device=device, models=models, options=options)
    layout = stage_repository(runtime, spec, fixtures, tmp_path / "repo")
    run_plan = plan(runtime, layout, dict(kind_opts or {}), "ab12cd34")
    # what kubectl would read: every object survives a YAML round trip
    docs = list(yaml.safe_load_all(manifests.to_yaml(*run_plan.objects)))
    assert docs == run_plan.objects
    return run_plan, {o["kind"]: o for o in docs}


def _all_text(objects) -> str:
    return json.dumps(list(objects.values()) if isinstance(objects, dict) else objects)


def _assert_names_valid(objects: dict) -> None:
    for obj in objects.values():
        assert DNS_LABEL.match(obj["metadata"]["name"]), obj["metadata"]["name"]


def _assert_ports_and_probes(container: dict) -> None:
    ports = {p["containerPort"]: p["name"] for p in container["ports"]}
    assert ports == {8080: "http1", 8081: "h2c"}
    assert container["ports"][0]["containerPort"] == 8080  # raw mode's Service takes the first
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"]["port"] == 8080


# --- MLServer on KServe -----------------------------------------------------------------------


def test_mlserver_serving_runtime_and_isvc_have_what_the_crds_require(tmp_path, fake_fixtures):
    run_plan, objs = _plan(tmp_path, fake_fixtures, "mlserver")
    assert list(objs) == [
        "Namespace", "PersistentVolume", "PersistentVolumeClaim", "ServingRuntime",
        "InferenceService",
    ]  # fmt: skip
    runtime = objs["ServingRuntime"]
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert runtime["metadata"]["namespace"] == run_plan.namespace
    spec = runtime["spec"]
    assert spec["supportedModelFormats"][0]["name"] == manifests.MLSERVER_MODEL_FORMAT
    assert "v2" in spec["protocolVersions"]
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == "seldonio/mlserver:1.7.1-huggingface"
    assert container["args"] == ["mlserver", "start", "/mnt/models"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLSERVER_MODELS_DIR"] == "/mnt/models"
    assert (env["MLSERVER_HTTP_PORT"], env["MLSERVER_GRPC_PORT"]) == ("8080", "8081")
    _assert_ports_and_probes(container)

    isvc = objs["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == manifests.MLSERVER_MODEL_FORMAT
    assert model["runtime"] == "servegate-mlserver"
    assert model["protocolVersion"] == "v2"
    assert model["storageUri"] == "pvc://servegate-models/repository"
    assert "nvidia.com/gpu" not in _all_text(objs)
    _assert_names_valid(objs)


def test_volume_delivery_binds_a_hostpath_volume_on_the_nodes_mount(tmp_path, fake_fixtures):
    run_plan, objs = _plan(tmp_path, fake_fixtures, "mlserver")
    pv, pvc = objs["PersistentVolume"], objs["PersistentVolumeClaim"]
    assert pv["spec"]["hostPath"]["path"] == f"{manifests.NODE_MODELS_DIR}/ab12cd34"
    assert pv["spec"]["claimRef"] == {"namespace": run_plan.namespace, "name": "servegate-models"}
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"] == run_plan.pv_name
    assert pvc["spec"]["storageClassName"] == pv["spec"]["storageClassName"] == ""
    assert pv["spec"]["accessModes"] == pvc["spec"]["accessModes"] == ["ReadOnlyMany"]


def test_mlserver_gpu_variant_asks_for_one_gpu(tmp_path, fake_fixtures):
    _, objs = _plan(tmp_path, fake_fixtures, "mlserver", device="cuda")
    limits = objs["InferenceService"]["spec"]["predictor"]["model"]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in json.dumps(objs["ServingRuntime"])


# --- KServe HuggingFace, both forms -----------------------------------------------------------


def test_hf_isvc_model_format_form(tmp_path, fake_fixtures):
    run_plan, objs = _plan(tmp_path, fake_fixtures, "kserve")
    assert "ServingRuntime" not in objs  # KServe's own kserve-huggingfaceserver runtime
    isvc = objs["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["name"] == run_plan.isvc_name == "kserve"
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "huggingface"}
    assert model["runtimeVersion"] == "v0.14.1"
    assert model["storageUri"] == "pvc://servegate-models/repository"
    assert model["command"] == ["python", "-m", "kserve_hf_reference"]
    assert "--model=tiny-fill-mask=/mnt/models/tiny-fill-mask:fill_mask" in model["args"]
    _assert_ports_and_probes(model)
    assert "nvidia.com/gpu" not in _all_text(objs)
    _assert_names_valid(objs)


def test_hf_isvc_huggingface_predictor_form_with_upstream_entry_point(tmp_path, fake_fixtures):
    run_plan, objs = _plan(
        tmp_path, fake_fixtures, "kserve", models=("tiny-text-classification",),
        kind_opts={"form": "huggingface"}, layout="per-model",
    )  # fmt: skip
    predictor = objs["InferenceService"]["spec"]["predictor"]
    assert set(predictor) == {"huggingface"}
    hf = predictor["huggingface"]
    assert "modelFormat" not in hf and "command" not in hf
    assert run_plan.isvc_name == "tiny-text-classification"
    assert "--model_name=tiny-text-classification" in hf["args"]
    assert "--task=sequence_classification" in hf["args"]
    assert "--model_dir=/mnt/models/tiny-text-classification" in hf["args"]
    _assert_ports_and_probes(hf)


def test_hf_gpu_variant_uses_the_gpu_image_half_precision_and_a_gpu(tmp_path, fake_fixtures):
    _, objs = _plan(tmp_path, fake_fixtures, "kserve", device="cuda")
    model = objs["InferenceService"]["spec"]["predictor"]["model"]
    assert model["runtimeVersion"] == "v0.14.1-gpu"
    assert "--dtype=float16" in model["args"]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert model["resources"]["requests"]["nvidia.com/gpu"] == "1"


def test_unknown_form_or_delivery_is_a_clear_error(tmp_path, fake_fixtures):
    with pytest.raises(ServegateError, match="form='predictor'"):
        _plan(tmp_path, fake_fixtures, "kserve", kind_opts={"form": "predictor"})
    with pytest.raises(ServegateError, match="delivery='s3'"):
        _plan(tmp_path, fake_fixtures, "kserve", kind_opts={"delivery": "s3"})


# --- modelcar ---------------------------------------------------------------------------------


def test_modelcar_delivery_is_an_oci_storage_uri_and_no_volume(tmp_path, fake_fixtures):
    run_plan, objs = _plan(tmp_path, fake_fixtures, "kserve", kind_opts={"delivery": "modelcar"})
    assert run_plan.modelcar_image == "servegate.local/models:ab12cd34"
    model = objs["InferenceService"]["spec"]["predictor"]["model"]
    assert model["storageUri"] == "oci://servegate.local/models:ab12cd34"
    assert "PersistentVolume" not in objs and run_plan.pv_name is None


def test_modelcar_dockerfile_copies_the_staged_repository_and_downloads_nothing(tmp_path):
    text = modelcar.dockerfile()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == f"FROM {modelcar.BASE_IMAGE}"
    assert "COPY repository/ /models/" in lines
    assert not re.search(r"\b(curl|wget|pip|git|ADD)\b", text)
    with pytest.raises(FileNotFoundError):
        modelcar.write_build_context(tmp_path)
    (tmp_path / "repository").mkdir()
    assert modelcar.write_build_context(tmp_path).read_text() == text


# --- cluster ----------------------------------------------------------------------------------


def test_kind_cluster_config_mounts_models_and_gpus_only_for_gpu():
    cpu = manifests.kind_cluster_config("/host/models")
    (node,) = cpu["nodes"]
    assert cpu["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert node["extraMounts"] == [
        {"hostPath": "/host/models", "containerPath": "/servegate/models", "readOnly": True}
    ]
    gpu = manifests.kind_cluster_config("/host/models", gpu=True)
    assert {"hostPath": "/dev/null", "containerPath": "/var/run/nvidia-container-devices/all"} in (
        gpu["nodes"][0]["extraMounts"]
    )


def test_kserve_release_manifests_follow_the_configured_versions():
    urls = cluster.ClusterConfig(kserve_version="v0.15.2", cert_manager_version="v1.17.0")
    assert urls.install_urls() == [
        "https://github.com/cert-manager/cert-manager/releases/download/v1.17.0/cert-manager.yaml",
        "https://github.com/kserve/kserve/releases/download/v0.15.2/kserve.yaml",
        "https://github.com/kserve/kserve/releases/download/v0.15.2/kserve-cluster-resources.yaml",
    ]


def test_kserve_config_patch_sets_raw_deployment_and_modelcars_keeping_the_rest():
    data = {
        "deploy": json.dumps({"defaultDeploymentMode": "Serverless"}),
        "storageInitializer": json.dumps({"image": "kserve/storage-initializer:v0.14.1"}),
        "ingress": "{}",
    }
    patched = cluster.patched_kserve_config(data)
    assert json.loads(patched["deploy"]) == {"defaultDeploymentMode": "RawDeployment"}
    storage = json.loads(patched["storageInitializer"])
    assert storage == {"image": "kserve/storage-initializer:v0.14.1", "enableModelcar": True}
    assert "ingress" not in patched


def test_isvc_ready_reads_the_ready_condition():
    assert not isvc_ready({})
    assert not isvc_ready({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert isvc_ready({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})


# --- without the tools ------------------------------------------------------------------------


def test_without_kind_the_backend_says_so_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither kind nor kubectl
    with pytest.raises(ServegateError) as err:
        require_kind()
    message = str(err.value)
    assert message == (
        "backend kind needs kind, kubectl and a Docker engine: kind and kubectl not on PATH; "
        "run `servegate doctor`"
    )


def test_plugin_with_kind_backend_and_no_tools_fails_with_one_clear_line(pytester, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    result = pytester.runpytest_subprocess(
        str(CONFORMANCE), "-p", "no:cacheprovider", "--backend=kind", "--servers=kserve",
        f"--state-dir={pytester.path / 'state'}", f"--reports-dir={pytester.path / 'reports'}",
    )  # fmt: skip
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == SERVER_START_FAILED
    assert "backend kind needs kind, kubectl and a Docker engine" in out
    assert "Traceback" not in out


# --- end to end, where kind and an engine exist -----------------------------------------------


def _kind_problem() -> str | None:
    from servegate.reference_servers.containers import docker_engine_problem

    if shutil.which("kind") is None or shutil.which("kubectl") is None:
        return "kind or kubectl is not on PATH"
    return docker_engine_problem(timeout=2)


_KIND_PROBLEM = _kind_problem()


@pytest.mark.slow
@pytest.mark.skipif(
    _KIND_PROBLEM is not None, reason=f"needs kind, kubectl and a Docker engine: {_KIND_PROBLEM}"
)
@pytest.mark.parametrize(
    ("runtime", "options"),
    [
        ("mlserver", {}),
        ("kserve", {"delivery": "modelcar", "form": "huggingface"}),
    ],
)
def test_kind_deploys_waits_forwards_and_deletes(tmp_path, runtime, options):
    from servegate.protocols.v2_rest import V2RestClient
    from servegate.reference_servers.manager import start_reference

    server = start_reference(
        runtime, state_dir=Path(".servegate").resolve(), logs_dir=tmp_path / "logs",
        backend="kind", options=options, ready_timeout=600,
    )  # fmt: skip
    namespace = server.plan.namespace
    try:
        client = V2RestClient(server.target.http_url)
        assert client.ready().status == 200
        client.close()
    finally:
        server.stop()
    out = cluster.kubectl(server.kubeconfig, "get", "namespace", namespace, check=False)
    assert "Active" not in out
