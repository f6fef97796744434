"""Is a load run a measurement of the server, or of an overloaded load generator?

Flags that make a run invalid:

- ``cpu_warning``: Locust saw its own process (or a worker) above 90 % CPU;
- ``late_sends``: with a schedule (``--rate``, ``--pace-ms``), more than 1 % of requests left
  later than scheduled by more than the tolerance (due arrivals never sent count as late);
- ``loop_lag``: the gevent loop was late by more than the tolerance on over 1 % of 10 ms probes
  (a busy client delays sends and the clock readings of arriving chunks alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from servegate.load.metrics import summarize

PROBE_INTERVAL_S = 0.01
DEFAULT_TOLERANCE_MS = 5.0
MAX_LATE_FRACTION = 0.01


@dataclass
class Validity:
    tolerance_ms: float = DEFAULT_TOLERANCE_MS
    cpu_warnings: int = 0
    max_cpu_percent: float = 0.0
    worker_cpu_warning: bool = False
    lag_ms: list[float] = field(default_factory=list)
    paced_sends: int = 0
    late_sends: int = 0
    late_by_ms: list[float] = field(default_factory=list)
    #: why the schedule was not kept, appended to the late_sends flag
    late_note: str = ""

    def cpu(self, percent: float) -> None:
        self.cpu_warnings += 1
        self.max_cpu_percent = max(self.max_cpu_percent, percent)

    def lag(self, ms: float) -> None:
        self.lag_ms.append(ms)

    def send(self, late_ms: float) -> None:
        """A paced send left ``late_ms`` after its scheduled time."""
        self.paced_sends += 1
        if late_ms > self.tolerance_ms:
            self.late_sends += 1
            self.late_by_ms.append(late_ms)

    def drain(self) -> dict[str, Any]:
        out = {
            "cpu_warnings": self.cpu_warnings,
            "max_cpu_percent": self.max_cpu_percent,
            "lag_ms": self.lag_ms,
            "paced_sends": self.paced_sends,
            "late_sends": self.late_sends,
            "late_by_ms": self.late_by_ms,
        }
        self.cpu_warnings, self.lag_ms, self.paced_sends, self.late_sends = 0, [], 0, 0
        self.late_by_ms = []
        return out

    def merge(self, other: dict[str, Any]) -> None:
        self.cpu_warnings += other.get("cpu_warnings", 0)
        self.max_cpu_percent = max(self.max_cpu_percent, other.get("max_cpu_percent", 0.0))
        self.lag_ms.extend(other.get("lag_ms", []))
        self.paced_sends += other.get("paced_sends", 0)
        self.late_sends += other.get("late_sends", 0)
        self.late_by_ms.extend(other.get("late_by_ms", []))

    def report(self) -> dict[str, Any]:
        """The ``validity`` field of a load-run document."""
        flags = []
        if self.cpu_warnings or self.worker_cpu_warning:
            flags.append(
                {
                    "name": "cpu_warning",
                    "detail": "the load generator ran above 90 % CPU "
                    f"(max {self.max_cpu_percent:.0f} %, {self.cpu_warnings} warnings"
                    + (", a worker too" if self.worker_cpu_warning else "")
                    + ")",
                }
            )
        late_lag = [v for v in self.lag_ms if v > self.tolerance_ms]
        lag_fraction = len(late_lag) / len(self.lag_ms) if self.lag_ms else 0.0
        if lag_fraction > MAX_LATE_FRACTION:
            flags.append(
                {
                    "name": "loop_lag",
                    "detail": f"{100 * lag_fraction:.1f} % of event-loop probes were over "
                    f"{self.tolerance_ms:g} ms late (max {max(late_lag):.1f} ms)",
                }
            )
        late_fraction = self.late_sends / self.paced_sends if self.paced_sends else 0.0
        if late_fraction > MAX_LATE_FRACTION:
            flags.append(
                {
                    "name": "late_sends",
                    "detail": f"{100 * late_fraction:.1f} % of paced requests left over "
                    f"{self.tolerance_ms:g} ms late"
                    + (f": {self.late_note}" if self.late_note else ""),
                }
            )
        return {
            "valid": not flags,
            "flags": flags,
            "tolerance_ms": self.tolerance_ms,
            "cpu_warnings": self.cpu_warnings,
            "max_cpu_percent": self.max_cpu_percent,
            "loop_lag_ms": summarize(self.lag_ms),
            "loop_lag_late_fraction": lag_fraction,
            "paced_sends": self.paced_sends,
            "late_sends": self.late_sends,
            "late_send_fraction": late_fraction,
        }
