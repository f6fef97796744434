"""Deploy a reference server to kind through KServe, reach it by port-forward, delete it after.

Options (``ServerSpec.options``, beside the container layout's ``image``/``version``/``layout``
and the runtime's own): ``cluster`` (kind cluster name, default ``servegate``),
``kserve_version``, ``cert_manager_version``, ``node_image``, ``delivery`` (``volume``: a
hostPath PersistentVolume on the node's extraMount; ``modelcar``: an OCI image built from the
staged models and loaded into the nodes), ``form`` (``model-format`` or ``huggingface``, the
KServe HF InferenceService form) and ``delete_cluster`` (also delete a cluster this run
created).
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servegate.errors import ServegateError, ServerStartError
from servegate.reference_servers.base import ServerSpec
from servegate.reference_servers.containers import (
    ServerLayout,
    container_target,
    docker_engine_problem,
    stage_repository,
)
from servegate.reference_servers.kind import cluster as kc
from servegate.reference_servers.kind import manifests, modelcar
from servegate.targets import Target

if TYPE_CHECKING:
    from servegate.fixtures.catalog import FixtureSet

KIND_OPTIONS = frozenset(
    {
        "cluster",
        "kserve_version",
        "cert_manager_version",
        "node_image",
        "delivery",
        "form",
        "delete_cluster",
    }
)
DELIVERIES = ("volume", "modelcar")
#: seconds on top of the readiness deadline for a node's first pull of a multi-GB image
PULL_ALLOWANCE = 900.0
PVC_NAME = "servegate-models"
POLL = 3.0
#: pod states that will not heal by waiting
FATAL_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
    }
)

_running: set[KindServer] = set()


@dataclass(frozen=True)
class KindPlan:
    """Everything a kind run will create, decided before anything is: unit-testable."""

    run_id: str
    namespace: str
    isvc_name: str
    delivery: str
    storage_uri: str
    objects: list[dict[str, Any]]
    #: cluster-scoped objects, deleted by name (the namespace takes the rest)
    pv_name: str | None = None
    modelcar_image: str | None = None
    node_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def split_kind_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    kind = {k: v for k, v in options.items() if k in KIND_OPTIONS}
    rest = {k: v for k, v in options.items() if k not in KIND_OPTIONS}
    return kind, rest


def plan(runtime: str, layout: ServerLayout, kind_opts: dict[str, Any], run_id: str) -> KindPlan:
    """The manifests of one run of ``runtime`` (already staged as ``layout``)."""
    delivery = str(kind_opts.get("delivery") or "volume")
    if delivery not in DELIVERIES:
        raise ServegateError(f"delivery={delivery!r}: expected one of {', '.join(DELIVERIES)}")
    form = str(kind_opts.get("form") or "model-format")
    if form not in manifests.HF_FORMS:
        raise ServegateError(f"form={form!r}: expected one of {', '.join(manifests.HF_FORMS)}")
    ns = f"servegate-{run_id}"
    if runtime == "kserve" and len(layout.models) == 1 and layout.entrypoint is None:
        isvc_name = next(iter(layout.models))  # upstream's entry point: named after its model
    else:
        isvc_name = runtime
    objects: list[dict[str, Any]] = [manifests.namespace(ns, run_id)]
    pv_name = node_path = image = None
    if delivery == "volume":
        pv_name = f"servegate-models-{run_id}"
        node_path = f"{manifests.NODE_MODELS_DIR}/{run_id}"
        objects.extend(manifests.models_volume(pv_name, PVC_NAME, ns, run_id, node_path))
        storage_uri = manifests.pvc_storage_uri(PVC_NAME, modelcar.REPOSITORY_DIR)
    else:
        image = modelcar.image_name(run_id)
        storage_uri = modelcar.storage_uri(image)
    if runtime == "mlserver":
        objects.append(manifests.mlserver_serving_runtime(layout, ns, run_id))
        objects.append(
            manifests.mlserver_inference_service(layout, isvc_name, ns, run_id, storage_uri)
        )
    else:
        objects.append(
            manifests.hf_inference_service(layout, isvc_name, ns, run_id, storage_uri, form)
        )
    return KindPlan(
        run_id=run_id,
        namespace=ns,
        isvc_name=isvc_name,
        delivery=delivery,
        storage_uri=storage_uri,
        objects=objects,
        pv_name=pv_name,
        modelcar_image=image,
        node_path=node_path,
    )


def require_kind(gpu: bool = False) -> None:
    """ServegateError in one line when the kind backend cannot run here."""
    problem = kc.tools_problem() or docker_engine_problem()
    if problem:
        raise ServegateError(
            f"backend kind needs kind, kubectl and a Docker engine: {problem}; "
            "run `servegate doctor`"
        )


class KindServer:
    """A reference server deployed to kind; ``stop`` deletes what the run created."""

    def __init__(self, name: str, run_plan: KindPlan, kubeconfig: Path, log_path: Path):
        self.name = name
        self.plan = run_plan
        self.kubeconfig = kubeconfig
        self.log_path: Path | None = log_path
        self.target = Target(name=name, http_url="http://127.0.0.1:0")
        self.cluster: str = kc.DEFAULT_CLUSTER
        self.delete_cluster = False
        self.staged: Path | None = None
        self._forward: subprocess.Popen[str] | None = None
        self._api: Any = None
        _running.add(self)

    # -- kubernetes client ------------------------------------------------------------------

    def api(self) -> Any:
        if self._api is None:
            from kubernetes import config

            self._api = config.new_client_from_config(str(self.kubeconfig))
        return self._api

    def create_objects(self) -> None:
        from kubernetes import client

        # the client takes plain dicts as bodies (its typed signatures name model classes)
        core: Any = client.CoreV1Api(self.api())
        custom: Any = client.CustomObjectsApi(self.api())
        for obj in self.plan.objects:
            kind = obj["kind"]
            if kind == "Namespace":
                core.create_namespace(obj)
            elif kind == "PersistentVolume":
                core.create_persistent_volume(obj)
            elif kind == "PersistentVolumeClaim":
                core.create_namespaced_persistent_volume_claim(self.plan.namespace, obj)
            else:
                group, version = obj["apiVersion"].split("/")
                plural = {"ServingRuntime": "servingruntimes"}.get(kind, "inferenceservices")
                custom.create_namespaced_custom_object(
                    group, version, self.plan.namespace, plural, obj
                )

    def wait_isvc_ready(self, timeout: float) -> None:
        """Until the InferenceService's Ready condition is True; ServerStartError otherwise."""
        from kubernetes import client

        custom: Any = client.CustomObjectsApi(self.api())
        deadline = time.monotonic() + timeout
        while True:
            isvc = custom.get_namespaced_custom_object(
                manifests.KSERVE_GROUP, manifests.ISVC_VERSION, self.plan.namespace,
                "inferenceservices", self.plan.isvc_name,
            )  # fmt: skip
            if isvc_ready(isvc):
                return
            trouble = self.pod_trouble()
            if trouble:
                self.save_logs()
                raise ServerStartError(
                    f"{self.name}: InferenceService {self.plan.isvc_name} cannot start: "
                    f"{trouble} (log: {self.log_path})"
                )
            if time.monotonic() > deadline:
                self.save_logs()
                raise ServerStartError(
                    f"{self.name}: InferenceService {self.plan.isvc_name} was not Ready within "
                    f"{timeout:.0f} s ({isvc_reason(isvc)}; log: {self.log_path})"
                )
            time.sleep(POLL)

    def pods(self) -> list[Any]:
        from kubernetes import client

        selector = f"serving.kserve.io/inferenceservice={self.plan.isvc_name}"
        return list(
            client.CoreV1Api(self.api())
            .list_namespaced_pod(self.plan.namespace, label_selector=selector)
            .items
        )

    def pod_trouble(self) -> str | None:
        for pod in self.pods():
            for status in (pod.status.init_container_statuses or []) + (
                pod.status.container_statuses or []
            ):
                waiting = status.state.waiting if status.state else None
                if waiting and waiting.reason in FATAL_REASONS:
                    return f"container {status.name}: {waiting.reason} ({waiting.message or ''})"
        return None

    def save_logs(self) -> None:
        """Every container log of the run's pods into the log file (kept after deletion)."""
        if self.log_path is None:
            return
        from kubernetes import client

        core = client.CoreV1Api(self.api())
        with contextlib.suppress(Exception), self.log_path.open("w") as out:
            for pod in self.pods():
                for c in (pod.spec.init_containers or []) + pod.spec.containers:
                    out.write(f"===== pod {pod.metadata.name} container {c.name} =====\n")
                    with contextlib.suppress(Exception):
                        out.write(
                            core.read_namespaced_pod_log(
                                pod.metadata.name, self.plan.namespace, container=c.name
                            )
                        )

    def port_forward(self, http_port: int, grpc_port: int, timeout: float = 60) -> None:
        """kubectl port-forward to the ready pod's 8080 and 8081 (raw mode's Service has one
        port), held until ``stop``."""
        pods = [p for p in self.pods() if p.status.phase == "Running"]
        if not pods:
            raise ServerStartError(f"{self.name}: no running pod for {self.plan.isvc_name}")
        argv = [
            "kubectl", "--kubeconfig", str(self.kubeconfig), "-n", self.plan.namespace,
            "port-forward", f"pod/{pods[0].metadata.name}",
            f"{http_port}:{manifests.HTTP_PORT}", f"{grpc_port}:{manifests.GRPC_PORT}",
        ]  # fmt: skip
        self._forward = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        ready = threading.Event()

        def read() -> None:
            assert self._forward is not None and self._forward.stdout is not None
            for line in self._forward.stdout:
                if line.startswith("Forwarding from"):
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout):
            raise ServerStartError(f"{self.name}: kubectl port-forward did not start ({argv})")

    def forward_exit_code(self) -> int | None:
        return None if self._forward is None else self._forward.poll()

    def stop(self) -> None:
        """Delete the namespace (and with it every object of the run), the volume, the
        modelcar image and the staged files; the cluster stays for the next run."""
        if self not in _running:
            return
        _running.discard(self)
        if self._forward is not None:
            self._forward.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._forward.wait(10)
            if self._forward.poll() is None:
                self._forward.kill()
        with contextlib.suppress(Exception):
            self.save_logs()
            from kubernetes import client

            core = client.CoreV1Api(self.api())
            core.delete_namespace(self.plan.namespace, propagation_policy="Foreground")
            if self.plan.pv_name:
                core.delete_persistent_volume(self.plan.pv_name)
        if self.plan.modelcar_image:
            with contextlib.suppress(Exception):
                kc.remove_node_image(self.cluster, self.plan.modelcar_image)
                modelcar.remove(self.plan.modelcar_image)
        if self.staged is not None:
            shutil.rmtree(self.staged, ignore_errors=True)
        if self.delete_cluster:
            kc.run(["kind", "delete", "cluster", "--name", self.cluster], check=False)


def isvc_ready(isvc: dict[str, Any]) -> bool:
    conditions = (isvc.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def isvc_reason(isvc: dict[str, Any]) -> str:
    conditions = (isvc.get("status") or {}).get("conditions") or []
    for c in conditions:
        if c.get("type") == "Ready":
            return f"Ready={c.get('status')}: {c.get('reason') or ''} {c.get('message') or ''}"
    return "no Ready condition yet"


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


def start_kind(
    runtime: str,
    spec: ServerSpec,
    fixtures: FixtureSet,
    *,
    state_dir: Path,
    logs_dir: Path,
    log: Callable[[str], None] = print,
) -> KindServer:
    """Deploy ``runtime`` to the kind cluster (created and KServe installed on first use),
    wait for Ready, port-forward, and wait until every model answers ready."""
    from servegate.reference_servers.local import free_port, wait_until_ready

    gpu = spec.device == "cuda"
    require_kind(gpu)
    kind_opts, rest = split_kind_options(dict(spec.options))
    config = kc.ClusterConfig(
        name=str(kind_opts.get("cluster") or kc.DEFAULT_CLUSTER),
        kserve_version=str(kind_opts.get("kserve_version") or kc.KSERVE_VERSION),
        cert_manager_version=str(kind_opts.get("cert_manager_version") or kc.CERT_MANAGER_VERSION),
        node_image=kind_opts.get("node_image"),
    )
    state_dir = Path(state_dir).resolve()
    host_models = state_dir / "kind" / "models"
    existed = config.name in kc.kind_clusters()
    kubeconfig = kc.ensure_cluster(config, host_models, state_dir, gpu=gpu, log=log)
    kc.install_kserve(kubeconfig, config, log)

    run_id = uuid.uuid4().hex[:8]
    name = f"{runtime}-{spec.device}"
    delivery = str(kind_opts.get("delivery") or "volume")
    if delivery == "volume":
        if not kc.node_has_models_mount(config.name, host_models):
            raise ServegateError(
                f"kind cluster {config.name} does not mount {host_models} at "
                f"{manifests.NODE_MODELS_DIR} (it was created elsewhere): use "
                "--option delivery=modelcar, or delete the cluster so servegate recreates it"
            )
        staged = host_models / run_id
    else:
        staged = state_dir / "run" / f"{name}-kind-{run_id}"
    layout = stage_repository(
        runtime, replace(spec, options=rest), fixtures, staged / modelcar.REPOSITORY_DIR
    )
    run_plan = plan(runtime, layout, kind_opts, run_id)
    logs_dir.mkdir(parents=True, exist_ok=True)
    server = KindServer(name, run_plan, kubeconfig, logs_dir / f"{name}-kind.log")
    server.cluster = config.name
    server.staged = staged
    server.delete_cluster = not existed and str(kind_opts.get("delete_cluster", "")).lower() in (
        "1", "true", "yes",
    )  # fmt: skip
    try:
        if gpu:
            kc.install_gpu_support(kubeconfig, log)
            if kc.gpu_count(server.api()) < 1:
                raise ServegateError(
                    f"kind cluster {config.name} offers no {manifests.GPU_RESOURCE}: create it on "
                    "a GPU host with the NVIDIA Container Toolkit (nvkind does this) and retry"
                )
        if run_plan.modelcar_image:
            log(f"[kind] building modelcar {run_plan.modelcar_image}")
            modelcar.write_build_context(staged)
            modelcar.build(staged, run_plan.modelcar_image)
            kc.load_image(config.name, run_plan.modelcar_image)
        log(f"[kind] deploying {run_plan.isvc_name} in namespace {run_plan.namespace}")
        server.create_objects()
        server.wait_isvc_ready(spec.ready_timeout + PULL_ALLOWANCE)
        http_port, grpc_port = free_port(), free_port()
        server.port_forward(http_port, grpc_port)
        server.target = container_target(
            name, layout, fixtures, http_port=http_port, grpc_port=grpc_port
        )
        wait_until_ready(
            server.target,
            spec.ready_timeout,
            name=f"{name} (kind, {run_plan.isvc_name})",
            log_path=server.log_path,
            exit_code=server.forward_exit_code,
        )
    except BaseException as exc:
        server.stop()
        if isinstance(exc, ServegateError | KeyboardInterrupt | SystemExit):
            raise
        raise ServerStartError(f"{name}: kind deployment failed: {exc}") from exc
    return server
