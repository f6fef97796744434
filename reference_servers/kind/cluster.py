"""A kind cluster with KServe in RawDeployment mode: created or reused, installed once.

The kind and kubectl command lines do what they are for (cluster lifecycle, applying release
manifests, port-forwards); objects of a run are created with the kubernetes Python client.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from servegate.errors import ServegateError
from servegate.reference_servers.kind import manifests

DEFAULT_CLUSTER = "servegate"
KSERVE_VERSION = "v0.14.1"
CERT_MANAGER_VERSION = "v1.16.1"
NVIDIA_DEVICE_PLUGIN_VERSION = "v0.17.0"

CERT_MANAGER_URL = (
    "https://github.com/cert-manager/cert-manager/releases/download/{version}/cert-manager.yaml"
)
KSERVE_URL = "https://github.com/kserve/kserve/releases/download/{version}/kserve.yaml"
KSERVE_RUNTIMES_URL = (
    "https://github.com/kserve/kserve/releases/download/{version}/kserve-cluster-resources.yaml"
)
NVIDIA_DEVICE_PLUGIN_URL = (
    "https://raw.githubusercontent.com/NVIDIA/k8s-device-plugin/{version}/"
    "deployments/static/nvidia-device-plugin.yml"
)
KSERVE_NAMESPACE = "kserve"
KSERVE_CONFIGMAP = "inferenceservice-config"
ISVC_CRD = "inferenceservices.serving.kserve.io"


@dataclass(frozen=True)
class ClusterConfig:
    """Which cluster and which versions; every field is an option of the kind backend."""

    name: str = DEFAULT_CLUSTER
    kserve_version: str = KSERVE_VERSION
    cert_manager_version: str = CERT_MANAGER_VERSION
    #: a kind node image (kindest/node:vX.Y.Z), or kind's default
    node_image: str | None = None

    def install_urls(self) -> list[str]:
        """The release manifests applied, in order."""
        return [
            CERT_MANAGER_URL.format(version=self.cert_manager_version),
            KSERVE_URL.format(version=self.kserve_version),
            KSERVE_RUNTIMES_URL.format(version=self.kserve_version),
        ]


def run(argv: Sequence[str], *, timeout: float = 600, check: bool = True) -> str:
    """Run a command line; ServegateError quoting its output's end when it fails."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise ServegateError(f"{argv[0]} is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise ServegateError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from None
    if check and done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ServegateError(f"`{' '.join(argv)}` failed: " + " / ".join(tail))
    return done.stdout


def kind_clusters() -> list[str]:
    return run(["kind", "get", "clusters"], timeout=60).split()


def ensure_cluster(
    config: ClusterConfig, host_models_dir: Path, state_dir: Path, *, gpu: bool, log: Callable
) -> Path:
    """Create the cluster unless it exists; return a kubeconfig file for it.

    A new cluster mounts ``host_models_dir`` on its node (volume delivery). A reused one keeps
    whatever mounts it was created with; :func:`node_has_models_mount` tells.
    """
    if config.name in kind_clusters():
        log(f"[kind] reusing cluster {config.name}")
    else:
        host_models_dir.mkdir(parents=True, exist_ok=True)
        config_path = state_dir / "kind" / f"{config.name}-cluster.yaml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(
            yaml.safe_dump(manifests.kind_cluster_config(str(host_models_dir.resolve()), gpu)),
            encoding="utf-8",
        )
        argv = ["kind", "create", "cluster", "--name", config.name, "--config", str(config_path)]
        if config.node_image:
            argv += ["--image", config.node_image]
        log(f"[kind] creating cluster {config.name} (minutes)")
        run([*argv, "--wait", "300s"], timeout=900)
    kubeconfig = state_dir / "kind" / f"{config.name}.kubeconfig"
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_text(
        run(["kind", "get", "kubeconfig", "--name", config.name], timeout=60), encoding="utf-8"
    )
    kubeconfig.chmod(0o600)
    return kubeconfig


def node_containers(cluster: str) -> list[str]:
    return run(["kind", "get", "nodes", "--name", cluster], timeout=60).split()


def node_has_models_mount(cluster: str, host_models_dir: Path) -> bool:
    """Whether every node of ``cluster`` mounts ``host_models_dir`` where manifests expect it."""
    wanted = str(host_models_dir.resolve())
    for node in node_containers(cluster):
        mounts = json.loads(
            run(["docker", "inspect", "--format", "{{json .Mounts}}", node], timeout=60) or "[]"
        )
        if not any(
            m.get("Source") == wanted and m.get("Destination") == manifests.NODE_MODELS_DIR
            for m in mounts or []
        ):
            return False
    return True


def load_image(cluster: str, image: str) -> None:
    """Copy a local image into every node (no registry needed)."""
    run(["kind", "load", "docker-image", image, "--name", cluster], timeout=900)


def remove_node_image(cluster: str, image: str) -> None:
    """Best effort: drop a loaded image from the nodes again."""
    for node in node_containers(cluster):
        run(["docker", "exec", node, "crictl", "rmi", image], timeout=120, check=False)


def kubectl(kubeconfig: Path, *args: str, timeout: float = 600, check: bool = True) -> str:
    return run(["kubectl", "--kubeconfig", str(kubeconfig), *args], timeout=timeout, check=check)


def kserve_installed(kubeconfig: Path) -> bool:
    out = kubectl(kubeconfig, "get", "crd", ISVC_CRD, "--ignore-not-found", "-o", "name")
    return bool(out.strip())


def install_kserve(kubeconfig: Path, config: ClusterConfig, log: Callable) -> None:
    """cert-manager, then KServe and its ClusterServingRuntimes from the release manifests;
    RawDeployment as the default mode and modelcars enabled. Skipped where KServe is there."""
    if kserve_installed(kubeconfig):
        log("[kind] KServe is installed; keeping it")
    else:
        cert_manager, kserve, runtimes = config.install_urls()
        log(f"[kind] installing cert-manager {config.cert_manager_version}")
        kubectl(kubeconfig, "apply", "-f", cert_manager)
        kubectl(
            kubeconfig, "wait", "--for=condition=Available", "deployment", "--all",
            "-n", "cert-manager", "--timeout=300s", timeout=330,
        )  # fmt: skip
        log(f"[kind] installing KServe {config.kserve_version} (RawDeployment)")
        kubectl(kubeconfig, "apply", "--server-side", "-f", kserve)
        kubectl(
            kubeconfig, "wait", "--for=condition=Available", "deployment",
            "kserve-controller-manager", "-n", KSERVE_NAMESPACE, "--timeout=300s", timeout=330,
        )  # fmt: skip
        # the runtimes go through KServe's webhook, which takes a moment after the deployment
        _retry(lambda: kubectl(kubeconfig, "apply", "--server-side", "-f", runtimes), tries=10)
    configure_kserve(kubeconfig)


def configure_kserve(kubeconfig: Path) -> None:
    """RawDeployment by default and modelcars on, in KServe's inferenceservice-config."""
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    cm = api.read_namespaced_config_map(KSERVE_CONFIGMAP, KSERVE_NAMESPACE)
    data = dict(cm.data or {})
    data.update(patched_kserve_config(data))
    api.patch_namespaced_config_map(KSERVE_CONFIGMAP, KSERVE_NAMESPACE, {"data": data})


def patched_kserve_config(data: dict[str, str]) -> dict[str, str]:
    """The ``deploy`` and ``storageInitializer`` keys of inferenceservice-config, patched."""
    deploy = json.loads(data.get("deploy") or "{}")
    deploy["defaultDeploymentMode"] = manifests.DEPLOYMENT_MODE
    storage = json.loads(data.get("storageInitializer") or "{}")
    storage["enableModelcar"] = True
    return {"deploy": json.dumps(deploy), "storageInitializer": json.dumps(storage)}


def install_gpu_support(kubeconfig: Path, log: Callable) -> None:
    """NVIDIA's device plugin, which advertises nvidia.com/gpu on nodes that have GPUs."""
    url = NVIDIA_DEVICE_PLUGIN_URL.format(version=NVIDIA_DEVICE_PLUGIN_VERSION)
    log(f"[kind] applying the NVIDIA device plugin {NVIDIA_DEVICE_PLUGIN_VERSION}")
    kubectl(kubeconfig, "apply", "-f", url)


def gpu_count(api_client: Any) -> int:
    """nvidia.com/gpu the cluster's nodes can hand out."""
    from kubernetes import client

    total = 0
    for node in client.CoreV1Api(api_client).list_node().items:
        allocatable = (node.status.allocatable if node.status else None) or {}
        total += int(allocatable.get(manifests.GPU_RESOURCE, "0"))
    return total


def _retry(action: Callable[[], Any], tries: int, pause: float = 6.0) -> Any:
    for attempt in range(tries):
        try:
            return action()
        except ServegateError:
            if attempt == tries - 1:
                raise
            time.sleep(pause)
    return None


def tools_problem() -> str | None:
    """Why kind cannot be driven from here (a missing command or package), or None."""
    missing = [tool for tool in ("kind", "kubectl") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not on PATH"
    import importlib.util

    if importlib.util.find_spec("kubernetes") is None:
        return (
            "the kubernetes Python package is not installed (pip install 'servegate[containers]')"
        )
    return None
