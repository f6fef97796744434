"""The Kubernetes objects of a kind run, as plain dicts (YAML-ready), built from container layouts.

- MLServer, the MLServer-on-KServe form: a namespaced ``ServingRuntime`` whose container is the
  official MLServer image started on ``/mnt/models`` (settings.json and one
  model-settings.json per model, from the staged repository), and an ``InferenceService`` whose
  ``predictor.model`` names that runtime and the storage.
- KServe HuggingFace, in the two forms users write: ``predictor.model`` with
  ``modelFormat: huggingface`` (KServe picks its ``kserve-huggingfaceserver``
  ClusterServingRuntime) and the older ``predictor.huggingface``. Both carry the server's
  options as ``args``: huggingfaceserver reads no environment variable for its task (its
  ``__main__`` only has ``--task``), so a ``TASK`` env would be ignored; ``--task`` is what
  works in either form.

Every object runs in RawDeployment mode (annotation), asks for ``nvidia.com/gpu`` only in GPU
variants, and declares ports 8080 (HTTP) and 8081 (gRPC) with HTTP readiness/liveness probes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from servegate.reference_servers.containers import GRPC_PORT, HTTP_PORT, ServerLayout

KSERVE_GROUP = "serving.kserve.io"
ISVC_VERSION = "v1beta1"
RUNTIME_VERSION = "v1alpha1"
ISVC_API = f"{KSERVE_GROUP}/{ISVC_VERSION}"
RUNTIME_API = f"{KSERVE_GROUP}/{RUNTIME_VERSION}"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
DEPLOYMENT_MODE = "RawDeployment"
MLSERVER_RUNTIME_NAME = "servegate-mlserver"
#: a format name of its own, so that KServe's built-in runtimes never auto-select it
MLSERVER_MODEL_FORMAT = "servegate-mlserver-huggingface"
HF_MODEL_FORMAT = "huggingface"
HF_FORMS = ("model-format", "huggingface")
GPU_RESOURCE = "nvidia.com/gpu"
LABEL = "servegate.run"
#: where kind's extraMount puts the host's staging folder on every node
NODE_MODELS_DIR = "/servegate/models"

#: tiny models, but MLServer imports torch and tensorflow: generous memory, modest CPU
DEFAULT_RESOURCES = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"cpu": "2", "memory": "6Gi"},
}


def resources(gpu: bool, cpus: float | None = None) -> dict[str, Any]:
    """Requests and limits of a predictor; one GPU in the GPU variants only; ``cpus`` (the
    ``cpus`` option) as the CPU limit."""
    out = {k: dict(v) for k, v in DEFAULT_RESOURCES.items()}
    if cpus is not None:
        out["limits"]["cpu"] = f"{cpus:g}"
    if gpu:
        out["limits"][GPU_RESOURCE] = "1"
        out["requests"][GPU_RESOURCE] = "1"
    return out


def container_ports() -> list[dict[str, Any]]:
    # KServe's raw-mode Service carries the first port only (kserve/kserve#2376): HTTP first;
    # servegate reaches both through a port-forward to the pod
    return [
        {"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"},
        {"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"},
    ]


def probes() -> dict[str, Any]:
    """Readiness on the V2 ready route (every model loaded); liveness patient with slow loads."""
    return {
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": HTTP_PORT},
            "initialDelaySeconds": 5,
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": HTTP_PORT},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
            "failureThreshold": 30,
        },
    }


def env_list(env: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": str(v)} for k, v in sorted(env.items())]


def namespace(name: str, run_id: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {LABEL: run_id}},
    }


def _metadata(name: str, ns: str, run_id: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": ns,
        "labels": {LABEL: run_id},
        "annotations": {DEPLOYMENT_MODE_ANNOTATION: DEPLOYMENT_MODE},
    }


def mlserver_serving_runtime(layout: ServerLayout, ns: str, run_id: str) -> dict[str, Any]:
    """The ServingRuntime of the official MLServer image reading model-settings.json files."""
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": layout.image,
        "args": list(layout.args),
        "env": env_list(
            {
                **layout.env,
                # the image's own defaults spelled out; settings.json says the same
                "MLSERVER_MODELS_DIR": "/mnt/models",
                "MLSERVER_HTTP_PORT": str(HTTP_PORT),
                "MLSERVER_GRPC_PORT": str(GRPC_PORT),
            }
        ),
        "ports": container_ports(),
        "resources": resources(False),
        **probes(),
    }
    if layout.entrypoint is not None:
        container["command"] = list(layout.entrypoint)
    meta = _metadata(MLSERVER_RUNTIME_NAME, ns, run_id)
    del meta["annotations"]
    return {
        "apiVersion": RUNTIME_API,
        "kind": "ServingRuntime",
        "metadata": meta,
        "spec": {
            "supportedModelFormats": [
                {"name": MLSERVER_MODEL_FORMAT, "version": "1", "autoSelect": True}
            ],
            "protocolVersions": ["v2", "grpc-v2"],
            "multiModel": False,
            "containers": [container],
        },
    }


def mlserver_inference_service(
    layout: ServerLayout, name: str, ns: str, run_id: str, storage_uri: str
) -> dict[str, Any]:
    """The InferenceService that runs :func:`mlserver_serving_runtime` on the staged models."""
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": _metadata(name, ns, run_id),
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": MLSERVER_MODEL_FORMAT, "version": "1"},
                    "runtime": MLSERVER_RUNTIME_NAME,
                    "protocolVersion": "v2",
                    "storageUri": storage_uri,
                    "resources": resources(layout.gpu, layout.cpus),
                }
            }
        },
    }


def image_tag(image: str) -> str:
    """The tag of ``repo[:tag]`` ('latest' when none)."""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def hf_inference_service(
    layout: ServerLayout,
    name: str,
    ns: str,
    run_id: str,
    storage_uri: str,
    form: str = "model-format",
) -> dict[str, Any]:
    """An InferenceService of the KServe HuggingFace server, in either form users write.

    The image is KServe's ``kserve-huggingfaceserver`` runtime image with the tag of
    ``layout.image`` as ``runtimeVersion`` (``v0.14.1`` or ``v0.14.1-gpu``).
    """
    if form not in HF_FORMS:
        raise ValueError(f"form must be one of {', '.join(HF_FORMS)}, not {form!r}")
    predictor: dict[str, Any] = {
        "storageUri": storage_uri,
        "runtimeVersion": image_tag(layout.image),
        "args": list(layout.args),
        "env": env_list(layout.env),
        "ports": container_ports(),
        "resources": resources(layout.gpu, layout.cpus),
        **probes(),
    }
    if layout.entrypoint is not None:
        predictor["command"] = list(layout.entrypoint)
    if form == "model-format":
        predictor = {"modelFormat": {"name": HF_MODEL_FORMAT}, **predictor}
        spec = {"predictor": {"model": predictor}}
    else:
        spec = {"predictor": {"huggingface": predictor}}
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": _metadata(name, ns, run_id),
        "spec": spec,
    }


def models_volume(
    pv_name: str, pvc_name: str, ns: str, run_id: str, node_path: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A hostPath PersistentVolume on the kind node's extraMount and the claim bound to it."""
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "labels": {LABEL: run_id}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": node_path, "type": "Directory"},
            "claimRef": {"namespace": ns, "name": pvc_name},
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": pvc_name, "namespace": ns, "labels": {LABEL: run_id}},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": pv_name,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    return pv, pvc


def pvc_storage_uri(pvc_name: str, sub_path: str) -> str:
    """KServe mounts ``pvc://NAME/PATH`` read-only at /mnt/models (no copy)."""
    return f"pvc://{pvc_name}/{sub_path.strip('/')}"


def kind_cluster_config(host_models_dir: str, gpu: bool = False) -> dict[str, Any]:
    """kind's cluster config: the host's staging folder on the node, and GPUs for GPU variants.

    The GPU mount is the one NVIDIA's nvkind uses: with the NVIDIA Container Toolkit set to
    accept device requests as volume mounts, it hands every GPU to the node container.
    """
    mounts: list[dict[str, Any]] = [
        {"hostPath": host_models_dir, "containerPath": NODE_MODELS_DIR, "readOnly": True}
    ]
    if gpu:
        mounts.append(
            {"hostPath": "/dev/null", "containerPath": "/var/run/nvidia-container-devices/all"}
        )
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [{"role": "control-plane", "extraMounts": mounts}],
    }


def to_yaml(*objects: Mapping[str, Any]) -> str:
    """A multi-document YAML stream (what ``kubectl apply -f`` takes), for logs and reviews."""
    return yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False)
