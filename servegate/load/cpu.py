"""CPU used by the server and by the load generator during one load run.

A background thread samples, every half second, the CPU seconds of two process trees (the
server's, the load generator's) and of the whole machine. The figures of a run are the
increments between its start and end, interpolated between samples, as a percentage of one
core: 150 % is one and a half cores busy.

A process tree's CPU is the sum over every process ever seen in it, each at its last reading,
so a worker that exits mid-run keeps what it used and the total never goes backwards.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SAMPLE_INTERVAL_S = 0.5
#: the machine's cores busy above this share: the server competed for CPU (with the load
#: generator, or with whatever else runs on the machine)
SATURATION_SHARE = 0.90


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of one process (its reaped children included); None when
    it is gone."""
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.Error, OSError):
        return None
    return float(t.user + t.system + t.children_user + t.children_system)


def tree_readings(root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and of every process below it, by pid."""
    from servegate.load.threads import tree_pids

    out = {}
    for pid in tree_pids(root):
        cpu = process_cpu_s(pid)
        if cpu is not None:
            out[pid] = cpu
    return out


def machine_busy_s() -> float:
    """CPU seconds every core of the machine spent on anything but idling (since boot)."""
    import psutil

    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    # Linux counts guest time inside user time already
    guest = getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    return float(sum(t) - idle - guest)


class TreeAccount:
    """The running CPU total of a process tree whose members come and go."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}

    def update(self, readings: Mapping[int, float]) -> float:
        for pid, cpu in readings.items():
            # a reused pid reading lower than before is a new process: keep what the old used
            previous = self.last.get(pid, 0.0)
            self.last[pid] = cpu if cpu >= previous else previous + cpu
        return sum(self.last.values())


@dataclass(frozen=True)
class Sample:
    t: float
    server_s: float | None
    client_s: float | None
    machine_s: float


def at(times: Sequence[float], values: Sequence[float | None], when: float) -> float | None:
    """The value at ``when``, interpolated linearly; clamped to the first and last sample."""
    if not times:
        return None
    i = bisect.bisect_left(times, when)
    if i <= 0:
        return values[0]
    if i >= len(times):
        return values[-1]
    t0, t1, v0, v1 = times[i - 1], times[i], values[i - 1], values[i]
    if v0 is None or v1 is None:
        return v1 if v0 is None else v0
    return v0 + (v1 - v0) * (when - t0) / (t1 - t0) if t1 > t0 else v1


@dataclass(frozen=True)
class CpuUse:
    """CPU over one window, in percent of one core (None: not measured)."""

    window_s: float
    server_percent: float | None
    client_percent: float | None
    machine_percent: float
    cores: int

    @property
    def other_percent(self) -> float:
        """What other processes on the machine used meanwhile."""
        own = (self.server_percent or 0.0) + (self.client_percent or 0.0)
        return max(0.0, self.machine_percent - own)

    @property
    def saturated(self) -> bool:
        """(Almost) every core of the machine was busy: server and load generator together,
        or with other processes of the machine (a shared CI runner)."""
        own = (self.server_percent or 0.0) + (self.client_percent or 0.0)
        busy = max(own, self.machine_percent)
        return busy >= SATURATION_SHARE * 100.0 * self.cores

    def record(self) -> dict[str, Any]:
        return {
            "server_cpu_percent": self.server_percent,
            "client_cpu_percent": self.client_percent,
            "other_cpu_percent": self.other_percent,
            "machine_cores": self.cores,
        }


def use_between(samples: Sequence[Sample], start: float, end: float, cores: int) -> CpuUse:
    """CPU used between ``start`` and ``end`` (epoch seconds) from the samples."""
    times = [s.t for s in samples]
    span = max(end - start, 1e-9)

    def percent(values: Sequence[float | None]) -> float | None:
        if all(v is None for v in values):
            return None
        a, b = at(times, values, start), at(times, values, end)
        if a is None or b is None:
            return None
        return 100.0 * max(0.0, b - a) / span

    machine = percent([s.machine_s for s in samples])
    return CpuUse(
        window_s=span,
        server_percent=percent([s.server_s for s in samples]),
        client_percent=percent([s.client_s for s in samples]),
        machine_percent=machine or 0.0,
        cores=cores,
    )


class CpuMeter:
    """Samples the server's and the client's process trees until stopped.

    ``server_pid`` None: the server is not on this machine (or not known); its CPU is not
    measured. The client's root pid is set once its process exists (:meth:`watch_client`).
    """

    def __init__(
        self,
        server_pid: int | None,
        *,
        interval_s: float = SAMPLE_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server_pid = server_pid
        self.client_pid: int | None = None
        self.interval_s = interval_s
        self.clock = clock
        self.samples: list[Sample] = []
        self._server = TreeAccount()
        self._client = TreeAccount()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch_client(self, pid: int) -> None:
        self.client_pid = pid

    def sample(self) -> None:
        server = (
            self._server.update(tree_readings(self.server_pid))
            if self.server_pid is not None
            else None
        )
        client = (
            self._client.update(tree_readings(self.client_pid))
            if self.client_pid is not None
            else None
        )
        self.samples.append(Sample(self.clock(), server, client, machine_busy_s()))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> CpuMeter:
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()

    def use(self, start: float, end: float, cores: int) -> CpuUse:
        return use_between(self.samples, start, end, cores)
