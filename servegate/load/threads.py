"""Threads per server worker: the plan an experiment sets, and what the server really runs.

A model server's worker is a process whose torch (OpenMP/MKL) starts one compute thread per
core it sees, whatever share of the machine the server was given. N workers on C cores thus
run N x C compute threads: the sweep measures the oversubscription, not the workers. The plan
gives each worker ``floor(C / N)`` threads (at least one) through the environment variables
every BLAS/OpenMP runtime reads at start-up; worker processes inherit the environment of the
server that spawns them.

What the server runs is read back from ``/proc`` (through psutil): each process's environment
and how many of its threads burned CPU during the run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: read once at start-up by OpenMP (torch's intra-op pool), MKL and OpenBLAS
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Shares, not absolute rates: on a machine shared with other work a compute thread may get a
# small slice of a core, yet still be one of its process's compute threads.
#: a thread that used at least this share of its process's CPU during the run is busy
BUSY_SHARE = 0.20
#: a process that used at least this share of its server's CPU during the run did the work
WORKING_SHARE = 0.10
#: below this many CPU seconds a thread or process is idle, whatever its share
MIN_CPU_S = 0.05


@dataclass(frozen=True)
class ThreadPlan:
    """How many compute threads each inference process of the server gets."""

    #: processes that run inference (MLServer's parallel_workers 0 still runs one: the server)
    processes: int
    #: per process; None leaves the server's default (torch: one per core it sees)
    threads: int | None
    #: cores given to the server
    server_cpus: float
    #: cores the server's processes see (what torch's default uses)
    visible_cores: int
    #: "fit" (sized to the cores), "given" (--threads-per-worker), "server default"
    source: str

    @property
    def effective_threads(self) -> int:
        """Threads per process as the server will run them."""
        return self.threads if self.threads is not None else self.visible_cores

    @property
    def total_threads(self) -> int:
        return self.processes * self.effective_threads

    @property
    def oversubscribed(self) -> bool:
        """More compute threads than cores given to the server."""
        return self.total_threads > self.server_cpus + 1e-9

    def env(self) -> dict[str, str]:
        """The server's extra environment; empty for the server's own default."""
        if self.threads is None:
            return {}
        return {name: str(self.threads) for name in THREAD_ENV_VARS}

    def describe(self) -> str:
        threads = (
            f"{self.threads}" if self.threads is not None else f"{self.visible_cores} (default)"
        )
        return (
            f"{self.processes} inference process(es) x {threads} thread(s) = "
            f"{self.total_threads} on {self.server_cpus:g} server core(s)"
        )

    def record(self) -> dict[str, Any]:
        """The figures a point keeps."""
        return {
            "server_cpus": self.server_cpus,
            "threads_per_worker": self.effective_threads,
            "threads_source": self.source,
        }


def plan_threads(
    processes: int,
    server_cpus: float,
    *,
    visible_cores: int,
    override: int | None = None,
) -> ThreadPlan:
    """The thread plan for ``processes`` inference processes on ``server_cpus`` cores.

    ``override`` None fits the threads to the cores; 0 leaves the server's default; N sets N.
    """
    if processes < 1:
        raise ValueError(f"inference processes must be at least 1, not {processes}")
    if server_cpus <= 0:
        raise ValueError(f"server cores must be positive, not {server_cpus:g}")
    if override is not None and override < 0:
        raise ValueError(f"threads per worker must be 0 (server default) or more, not {override}")
    if override == 0:
        return ThreadPlan(processes, None, server_cpus, visible_cores, "server default")
    if override is not None:
        return ThreadPlan(processes, override, server_cpus, visible_cores, "given")
    # a fractional core budget (a container's --cpus 1.5) still runs whole threads
    fit = max(1, math.floor(server_cpus / processes + 1e-9))
    return ThreadPlan(processes, fit, server_cpus, visible_cores, "fit")


# ---- what the server really runs -------------------------------------------------------------


@dataclass(frozen=True)
class ProcessThreads:
    """One server process over one run."""

    pid: int
    name: str
    #: OMP_NUM_THREADS in its environment; None when unset, "?" when unreadable
    omp_threads: str | None
    threads: int
    #: CPU seconds each thread used during the run
    thread_cpu_s: tuple[float, ...]
    cpu_s: float
    #: whether it has an OpenMP or torch compute library mapped (a compute process)
    computes: bool = True

    @property
    def busy_threads(self) -> int:
        """Threads that did a real share of this process's work."""
        floor = max(MIN_CPU_S, BUSY_SHARE * self.cpu_s)
        return sum(1 for s in self.thread_cpu_s if s >= floor)

    def working(self, server_cpu_s: float) -> bool:
        """Whether this process did a real share of its server's work."""
        return self.cpu_s >= max(MIN_CPU_S, WORKING_SHARE * server_cpu_s)


def thread_times(pid: int) -> dict[int, float]:
    """CPU seconds per thread of one process; {} when it is gone or unreadable."""
    import psutil

    try:
        return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}
    except (psutil.Error, OSError):
        return {}


def tree_pids(root: int) -> list[int]:
    """``root`` and every process below it; [] when it is gone."""
    import psutil

    try:
        proc = psutil.Process(root)
        return [proc.pid, *(p.pid for p in proc.children(recursive=True))]
    except (psutil.Error, OSError):
        return []


def snapshot(root: int) -> dict[int, dict[int, float]]:
    """Per process of the tree under ``root``: CPU seconds per thread."""
    return {pid: thread_times(pid) for pid in tree_pids(root)}


def env_value(pid: int, name: str) -> str | None:
    """An environment variable of a running process (its start-up environment); "?" when
    the environment cannot be read."""
    import psutil

    try:
        return psutil.Process(pid).environ().get(name)
    except (psutil.Error, OSError):
        return "?"


#: shared libraries whose presence makes a process a compute process
COMPUTE_LIBRARIES = ("libtorch_cpu", "libgomp", "libiomp5", "libmkl")


def maps_compute_library(pid: int) -> bool:
    """Whether the process has torch's or an OpenMP/MKL runtime mapped (read from /proc)."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
            return any(lib in line for line in fh for lib in COMPUTE_LIBRARIES)
    except OSError:
        return False


def process_name(pid: int) -> str:
    import psutil

    try:
        cmd = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return "?"
    return " ".join(cmd)[:80] if cmd else "?"


def compare(
    before: Mapping[int, Mapping[int, float]], after: Mapping[int, Mapping[int, float]]
) -> list[ProcessThreads]:
    """What each process of ``after`` did since ``before`` (a process new in ``after`` counts
    from zero)."""
    out = []
    for pid, threads in after.items():
        earlier = before.get(pid, {})
        deltas = tuple(max(0.0, cpu - earlier.get(tid, 0.0)) for tid, cpu in threads.items())
        out.append(
            ProcessThreads(
                pid=pid,
                name=process_name(pid),
                omp_threads=env_value(pid, "OMP_NUM_THREADS"),
                threads=len(threads),
                thread_cpu_s=deltas,
                cpu_s=sum(deltas),
                computes=maps_compute_library(pid),
            )
        )
    return out


@dataclass(frozen=True)
class ThreadCheck:
    """Whether the plan reached the processes doing the work."""

    #: processes that did inference-scale work during the run
    working_processes: int
    #: busy threads of each working process
    busy_threads: tuple[int, ...]
    #: OMP_NUM_THREADS values of the working processes ("unset" when absent)
    omp_seen: tuple[str, ...]
    verified: bool
    detail: str

    def record(self) -> dict[str, Any]:
        return {
            "working_processes": self.working_processes,
            "busy_threads": ";".join(map(str, self.busy_threads)),
            "omp_num_threads_seen": ";".join(self.omp_seen),
            "threads_verified": self.verified,
        }


def check(plan: ThreadPlan | None, processes: Sequence[ProcessThreads]) -> ThreadCheck:
    """Compare the plan with what the processes did.

    Verified when every working process carries the planned OMP_NUM_THREADS and no working
    compute process (torch or an OpenMP runtime mapped) had more busy threads than planned: an
    OpenMP team counts its calling thread, so a worker that runs the plan keeps at most that
    many threads busy. A process without a compute library (a front end that only parses
    requests) is not held to the compute plan.
    """
    total = sum(p.cpu_s for p in processes)
    working = [p for p in processes if p.working(total)]
    busy = tuple(p.busy_threads for p in working)
    seen = tuple(p.omp_threads if p.omp_threads is not None else "unset" for p in working)
    if not working:
        return ThreadCheck(0, (), (), False, "no server process did measurable work")
    if plan is None:
        return ThreadCheck(len(working), busy, seen, False, "no thread plan: nothing to verify")
    want = str(plan.threads) if plan.threads is not None else "unset"
    wrong_env = [p.pid for p, omp in zip(working, seen, strict=True) if omp != want]
    too_busy = [
        (p.pid, b)
        for p, b in zip(working, busy, strict=True)
        if p.computes and b > plan.effective_threads
    ]
    problems = []
    if wrong_env:
        problems.append(f"OMP_NUM_THREADS is not {want} in process(es) {wrong_env}")
    if too_busy:
        problems.append(
            "busy threads above the plan: " + ", ".join(f"pid {pid}: {b}" for pid, b in too_busy)
        )
    detail = "; ".join(problems) or (
        f"{len(working)} working process(es) with OMP_NUM_THREADS={want}, busy threads "
        f"{', '.join(map(str, busy))}"
    )
    return ThreadCheck(len(working), busy, seen, not problems, detail)


def planned_processes(server: str, workers: int) -> int:
    """Inference processes a reference server runs with ``workers``.

    MLServer: ``parallel_workers`` processes, or the server itself with 0. KServe's reference
    server: one (kserve 0.14.1 takes ``--workers`` but serves in one process).
    """
    if server == "mlserver":
        return max(workers, 1)
    return 1


def visible_cores() -> int:
    """Cores this process (and a server it starts) may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
