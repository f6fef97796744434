"""One measured point of an experiment: the load run, the CPU the server and the load generator
used meanwhile, the threads the server really ran, and whether the figure means what it says.

Validity reasons an experiment adds to the load generator's own (``cpu_warning``, ``loop_lag``,
``late_sends``: see servegate.load.validity):

- ``oversubscribed``: the server's inference processes x threads per process exceed the cores
  given to the server; the threads time-share the cores, and the figure measures that;
- ``cpu_saturated``: the machine's cores were kept busy (server and load generator together,
  or with other processes); they competed for CPU, so the figure is this machine's limit, not
  the server's;
- ``threads_unverified``: the planned threads did not reach the processes that did the work;
- ``short_run``: the load ran for less than :data:`MIN_RUN_SHARE` of the time asked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from servegate.load import threads
from servegate.load.cpu import SATURATION_SHARE, CpuMeter, CpuUse
from servegate.load.threads import ThreadCheck, ThreadPlan

#: a run shorter than this share of the time asked measured too little of the configuration
MIN_RUN_SHARE = 0.8

#: what each experiment validity reason means, for the result pages
REASONS = {
    "oversubscribed": "inference processes x threads per process exceed the cores given to the "
    "server: the threads time-share those cores, so the figure measures the contention "
    "(context switches, cache misses, OpenMP spin-waits), not what the configuration does "
    "with the cores it needs",
    "cpu_saturated": f"at least {100 * SATURATION_SHARE:.0f} % of the machine's cores were busy "
    "(server and load generator, and other processes where the machine is shared): they "
    "competed for CPU, so the figure is bounded by this machine, not by the server alone",
    "threads_unverified": "the planned threads per worker did not reach the processes that did "
    "the work (their environment or busy-thread count differ): the point does not run the "
    "configuration it names",
    "short_run": f"the load ran for less than {100 * MIN_RUN_SHARE:.0f} % of the time asked: "
    "the figure rests on too few requests to stand for the configuration",
}


@dataclass(frozen=True)
class Flag:
    name: str
    detail: str

    def text(self) -> str:
        return f"{self.name}: {self.detail}"


@dataclass
class PointMeasure:
    """What one point measured beside the load run itself."""

    cpu: CpuUse
    plan: ThreadPlan | None
    thread_check: ThreadCheck | None
    processes: list[threads.ProcessThreads] = field(default_factory=list)
    #: seconds of load asked for and seconds the load generator ran
    asked_s: float | None = None
    ran_s: float | None = None

    def flags(self) -> list[Flag]:
        out = []
        if self.plan is not None and self.plan.oversubscribed:
            out.append(Flag("oversubscribed", self.plan.describe()))
        if self.cpu.saturated:
            out.append(
                Flag(
                    "cpu_saturated",
                    f"server {_pct(self.cpu.server_percent)} + load generator "
                    f"{_pct(self.cpu.client_percent)} + other processes "
                    f"{_pct(self.cpu.other_percent)} of {100 * self.cpu.cores} % "
                    f"({self.cpu.cores} cores)",
                )
            )
        planned = self.plan is not None and self.plan.threads is not None
        if planned and self.thread_check is not None and not self.thread_check.verified:
            out.append(Flag("threads_unverified", self.thread_check.detail))
        if self.asked_s and self.ran_s is not None and self.ran_s < MIN_RUN_SHARE * self.asked_s:
            out.append(Flag("short_run", f"ran {self.ran_s:.1f} s of the {self.asked_s:g} s asked"))
        return out

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.plan is not None:
            out |= self.plan.record()
        if self.thread_check is not None:
            out |= self.thread_check.record()
        out |= self.cpu.record()
        return out


def _pct(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.0f} %"


def measure(
    run: Callable[[Callable[[int], None]], dict[str, Any]],
    *,
    server_pid: int | None,
    plan: ThreadPlan | None,
    cores: int,
    asked_s: float | None = None,
) -> tuple[dict[str, Any], PointMeasure]:
    """Run ``run`` (a load run that reports its client's pid to the callback it is given and
    returns its load-run document) while metering CPU; read the server's threads before and
    after."""
    before = threads.snapshot(server_pid) if server_pid is not None else {}
    with CpuMeter(server_pid) as meter:
        document = run(meter.watch_client)
    after = threads.snapshot(server_pid) if server_pid is not None else {}
    started = float(document.get("started") or 0.0)
    duration = float(document.get("duration_s") or 0.0)
    if started and duration:
        use = meter.use(started, started + duration, cores)
    else:  # a document without its window: the whole metered span
        samples = meter.samples
        use = meter.use(samples[0].t, samples[-1].t, cores)
    processes = threads.compare(before, after) if server_pid is not None else []
    check = threads.check(plan, processes) if server_pid is not None else None
    return document, PointMeasure(use, plan, check, processes, asked_s, duration)


def point_validity(
    document: Mapping[str, Any], measure: PointMeasure
) -> tuple[bool, list[str], list[str]]:
    """(valid, flag names, "name: detail" reasons) of one point: the load generator's own
    flags and the experiment's."""
    own = list(document.get("validity", {}).get("flags", []))
    flags = [Flag(str(f.get("name")), str(f.get("detail", ""))) for f in own]
    flags += measure.flags()
    return not flags, [f.name for f in flags], [f.text() for f in flags]
