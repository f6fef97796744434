"""``servegate doctor``: which backends and devices can run here, and why not.

Each check is one line: what, ``yes``/``no``, and the reason. ``--need BACKEND[:cuda]`` makes
the exit status 1 when that combination cannot run (for a CI step that should fail early).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from servegate.reference_servers.manager import BACKENDS


@dataclass(frozen=True)
class Check:
    """One line of the report: ``problem`` None means it can run."""

    name: str
    problem: str | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        status = "yes" if self.ok else "no "
        why = self.detail if self.ok else self.problem
        return f"{self.name:<26} {status}  {why}"


def register(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser(
        "doctor", help="say which backends (local, testcontainers, kind) and devices can run here"
    )
    doctor.add_argument(
        "--need",
        action="append",
        default=[],
        metavar="BACKEND[:cuda]",
        help="exit with status 1 unless this backend (on this device) can run (repeatable)",
    )
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = run_checks(Path(args.state_dir))
    for check in checks.values():
        print(check.line())
    failed = []
    for need in args.need:
        backend, _, device = need.partition(":")
        if backend not in BACKENDS or device not in ("", "cpu", "cuda"):
            print(
                f"servegate doctor: --need {need!r}: expected one of {', '.join(BACKENDS)}[:cuda]"
            )
            return 2
        keys = [backend] + ([f"{backend}:cuda"] if device == "cuda" else [])
        problems = [checks[k].problem for k in keys if not checks[k].ok]
        if problems:
            failed.append(f"{need}: {problems[-1]}")
    for line in failed:
        print(f"servegate doctor: cannot run {line}")
    return 1 if failed else 0


def run_checks(
    state_dir: Path,
    *,
    engine: Callable[[], str | None] | None = None,
    engine_gpu: Callable[[], str | None] | None = None,
    kind_tools: Callable[[], str | None] | None = None,
    kind_cluster: Callable[[], tuple[str | None, str]] | None = None,
    gpu: Callable[[], tuple[str | None, str]] | None = None,
) -> dict[str, Check]:
    """Every check, keyed ``backend`` and ``backend:cuda``; probes are injectable for tests."""
    from servegate.reference_servers import containers
    from servegate.reference_servers.kind import cluster

    engine = engine or containers.docker_engine_problem
    engine_gpu = engine_gpu or containers.docker_gpu_problem
    kind_tools = kind_tools or cluster.tools_problem
    kind_cluster = kind_cluster or _kind_cluster
    gpu = gpu or (lambda: _gpu(state_dir))

    checks: dict[str, Check] = {}
    gpu_problem, gpu_detail = gpu()
    checks["gpu"] = Check("GPU on this machine", gpu_problem, gpu_detail)
    checks["local"] = Check(
        "local", None, "reference servers as local processes (envs are created on first use)"
    )
    checks["local:cuda"] = Check("local:cuda", gpu_problem, gpu_detail)
    engine_problem = engine()
    checks["testcontainers"] = Check(
        "testcontainers",
        engine_problem and f"needs a Docker engine: {engine_problem}",
        "a Docker engine answers",
    )
    gpu_engine_problem = engine_problem or engine_gpu()
    checks["testcontainers:cuda"] = Check(
        "testcontainers:cuda",
        gpu_engine_problem and f"needs a Docker engine with GPU support: {gpu_engine_problem}",
        "the Docker engine has the nvidia runtime",
    )
    tools_problem = kind_tools()
    kind_problem = tools_problem or (engine_problem and f"needs a Docker engine: {engine_problem}")
    cluster_problem, cluster_detail = (None, "") if kind_problem else kind_cluster()
    checks["kind"] = Check(
        "kind",
        kind_problem or cluster_problem,
        cluster_detail or "kind, kubectl and a Docker engine are here",
    )
    checks["kind:cuda"] = Check(
        "kind:cuda",
        kind_problem
        or cluster_problem
        or gpu_problem
        or (engine_gpu() if not engine_problem else None),
        "GPU nodes need the NVIDIA Container Toolkit on this host (nvkind)",
    )
    return checks


def _kind_cluster() -> tuple[str | None, str]:
    """(problem, detail) of the servegate kind cluster: absent is fine (created on first use)."""
    from servegate.reference_servers.kind import cluster

    try:
        names = cluster.kind_clusters()
    except Exception as exc:
        return f"`kind get clusters` failed: {exc}", ""
    if cluster.DEFAULT_CLUSTER not in names:
        return None, f"no cluster {cluster.DEFAULT_CLUSTER!r} yet: created on first use (minutes)"
    try:
        out = cluster.run(
            ["kubectl", "--context", f"kind-{cluster.DEFAULT_CLUSTER}", "--request-timeout=5s",
             "get", "--raw", "/readyz"],
            timeout=20,
        )  # fmt: skip
    except Exception as exc:
        return f"cluster {cluster.DEFAULT_CLUSTER!r} does not answer: {exc}", ""
    return None, f"cluster {cluster.DEFAULT_CLUSTER!r} answers ({out.strip() or 'ok'})"


def _gpu(state_dir: Path) -> tuple[str | None, str]:
    """(problem, detail): nvidia-smi sees a GPU and, where a server env exists, torch does."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "nvidia-smi not on PATH (no NVIDIA driver)", ""
    try:
        listed = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=20, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed: {exc}", ""
    if not listed:
        return "nvidia-smi lists no GPU", ""
    detail = listed.splitlines()[0] + (
        f" (+{len(listed.splitlines()) - 1})" if "\n" in listed else ""
    )
    for python in sorted((state_dir / "envs").glob("*/bin/python")):
        try:
            seen = subprocess.run(
                [str(python), "-c", "import torch; print(torch.cuda.is_available())"],
                capture_output=True, text=True, timeout=120, check=False,
            ).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            continue
        if seen == "False":
            return f"torch in {python.parent.parent.name} sees no CUDA device", detail
        if seen == "True":
            detail += f"; torch.cuda in {python.parent.parent.name}"
    return None, detail
