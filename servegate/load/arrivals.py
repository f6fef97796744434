"""How requests arrive: an open-loop schedule at a rate, or a closed loop of N users.

Open loop (``--rate R``): request *i* is due at ``t0 + g1 + ... + gi``, where the gaps ``g`` are

- ``constant``: exactly ``1/R``;
- ``poisson``: exponential with mean ``1/R`` (coefficient of variation 1);
- ``gamma:<b>``: gamma with shape ``b`` and scale ``1/(R*b)``, so the mean stays ``1/R`` and the
  coefficient of variation is ``1/sqrt(b)``. ``b = 1`` is Poisson, ``b < 1`` burstier, ``b > 1``
  more regular: the burstiness of ``vllm bench serve``.

Gaps come from ``random.Random(seed)``: one seed gives the same schedule on every run. A send
that leaves after its due time is late; the Locust users (``-u``) are the senders, so ``-u`` is
the most requests in flight, and a schedule that finds every sender busy is late too.

Closed loop (``--concurrency N``): N users, each sending its next request as soon as its last
one is answered.

Either way ``--num-requests`` stops the run once that many requests have been answered.

No Locust here: the plugin supplies the clock and the sleep, so schedules can be checked alone.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from servegate.errors import ServegateError

ARRIVALS = ("poisson", "constant", "gamma")

#: senders (Locust users) of an open-loop run when -u is not given: requests in flight at most
DEFAULT_OPEN_LOOP_USERS = 100


class ArrivalError(ServegateError):
    """Load options that do not describe a run."""


@dataclass(frozen=True)
class Arrival:
    """An arrival process: ``kind`` and, for gamma, the shape (burstiness)."""

    kind: str = "poisson"
    burstiness: float = 1.0

    def __str__(self) -> str:
        return f"gamma:{self.burstiness:g}" if self.kind == "gamma" else self.kind

    @property
    def cv(self) -> float:
        """Coefficient of variation of the gaps (std / mean)."""
        if self.kind == "constant":
            return 0.0
        return 1.0 / math.sqrt(self.burstiness) if self.kind == "gamma" else 1.0


def parse_arrival(text: str) -> Arrival:
    """``poisson``, ``constant`` or ``gamma:<burstiness>`` (a positive number)."""
    kind, sep, arg = text.strip().lower().partition(":")
    if kind not in ARRIVALS:
        raise ArrivalError(f"--arrival {text!r}: expected poisson, constant or gamma:<burstiness>")
    if kind != "gamma":
        if sep:
            raise ArrivalError(f"--arrival {text!r}: {kind} takes no parameter")
        return Arrival(kind)
    try:
        burstiness = float(arg)
    except ValueError:
        raise ArrivalError(
            f"--arrival {text!r}: gamma needs a positive burstiness, e.g. gamma:0.5"
        ) from None
    if not math.isfinite(burstiness) or burstiness <= 0:
        raise ArrivalError(f"--arrival {text!r}: the burstiness must be a positive number")
    return Arrival("gamma", burstiness)


def gaps(arrival: Arrival, rate: float, seed: int) -> Iterator[float]:
    """Inter-arrival gaps in seconds, endless, reproducible from ``seed``."""
    rng = random.Random(seed)
    mean = 1.0 / rate
    while True:
        if arrival.kind == "constant":
            yield mean
        elif arrival.kind == "poisson":
            yield rng.expovariate(rate)
        else:
            yield rng.gammavariate(arrival.burstiness, mean / arrival.burstiness)


@dataclass(frozen=True)
class LoadOptions:
    """How load is offered: the one description the CLI, the sweep and other tools share.

    Exactly one of ``rate`` (open loop) and ``concurrency`` (closed loop) may be set; neither
    means Locust's own users (``-u``) sending back to back. ``max_concurrency`` is the number of
    senders of an open-loop run (Locust's ``-u``); None keeps -u or DEFAULT_OPEN_LOOP_USERS.
    """

    rate: float | None = None
    arrival: Arrival = field(default_factory=Arrival)
    concurrency: int | None = None
    seed: int = 0
    num_requests: int | None = None
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and self.concurrency is not None:
            raise ArrivalError("--rate and --concurrency exclude each other: give one")
        if self.rate is not None and (not math.isfinite(self.rate) or self.rate <= 0):
            raise ArrivalError(f"--rate {self.rate:g}: requests per second must be positive")
        if self.concurrency is not None and self.concurrency < 1:
            raise ArrivalError(f"--concurrency {self.concurrency}: must be at least 1")
        if self.num_requests is not None and self.num_requests < 1:
            raise ArrivalError(f"--num-requests {self.num_requests}: must be at least 1")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ArrivalError(f"--max-concurrency {self.max_concurrency}: must be at least 1")

    @property
    def mode(self) -> str:
        """ "open" (a rate), "closed" (a concurrency) or "users" (Locust's -u, back to back)."""
        if self.rate is not None:
            return "open"
        return "closed" if self.concurrency is not None else "users"

    @classmethod
    def from_parsed(cls, parsed: Any) -> LoadOptions:
        """From Locust's parsed options (the plugin's --rate ... --max-concurrency)."""
        rate = getattr(parsed, "rate", None)
        arrival_text = getattr(parsed, "arrival", None)
        if arrival_text and rate is None:
            raise ArrivalError("--arrival shapes an open-loop schedule: give --rate too")
        if rate is not None and float(getattr(parsed, "pace_ms", 0.0) or 0.0) > 0:
            raise ArrivalError("--pace-ms and --rate exclude each other: give one")
        if getattr(parsed, "max_concurrency", None) is not None and rate is None:
            raise ArrivalError("--max-concurrency caps an open-loop run: give --rate too")
        return cls(
            rate=rate,
            arrival=parse_arrival(arrival_text or "poisson"),
            concurrency=getattr(parsed, "concurrency", None),
            seed=int(getattr(parsed, "seed", 0) or 0),
            num_requests=getattr(parsed, "num_requests", None),
            max_concurrency=getattr(parsed, "max_concurrency", None),
        )

    def locust_args(self) -> list[str]:
        """The command-line options that give this load to ``locust -f loadtests/...``
        (user counts included: no -u/-r needed beside them)."""
        args: list[str] = []
        if self.rate is not None:
            users = self.max_concurrency or DEFAULT_OPEN_LOOP_USERS
            args += ["--rate", f"{self.rate:g}", "--arrival", str(self.arrival)]
            args += ["--seed", str(self.seed), "-u", str(users), "-r", str(users)]
        elif self.concurrency is not None:
            args += ["--concurrency", str(self.concurrency)]
        if self.num_requests is not None:
            args += ["--num-requests", str(self.num_requests)]
        return args

    def config(self) -> dict[str, Any]:
        """What a result records of the load: the ``config`` fields of a load run."""
        return {
            "load_mode": self.mode,
            "arrival": str(self.arrival) if self.rate is not None else None,
            "rate": self.rate,
            "concurrency": self.concurrency,
            "seed": self.seed if self.rate is not None else None,
            "num_requests": self.num_requests,
        }


def parse_list(option: str, text: str, kind: type[int] | type[float]) -> list[Any]:
    """``1,2,4`` as numbers (positive, increasing), with one line naming a bad item."""
    values: list[Any] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            value = kind(item)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise ArrivalError(f"{option} {text!r}: {item!r} is not {noun}") from None
        if not math.isfinite(value) or value <= 0:
            raise ArrivalError(f"{option} {text!r}: {item!r} must be positive")
        values.append(value)
    if not values:
        raise ArrivalError(f"{option} {text!r}: give at least one value, e.g. 1,2,4")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ArrivalError(f"{option} {text!r}: give the values in increasing order")
    return values


# ---- the schedule a process keeps ---------------------------------------------------------------


@dataclass
class ScheduleStats:
    """What happened to the schedule: mergeable across Locust workers."""

    sends: int = 0
    #: sends that left later than the tolerance after their due time
    late: int = 0
    #: of those, sends whose due time had passed before any sender was free to take them
    waited_for_sender: int = 0
    #: due arrivals no sender took before the run ended
    unsent: int = 0
    first_send: float | None = None
    last_send: float | None = None
    #: due times of the first and the last send: the rate the seeded schedule itself offered
    first_due: float | None = None
    last_due: float | None = None
    max_late_ms: float = 0.0

    def drain(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        self.__init__()  # type: ignore[misc]
        return out

    def merge(self, other: Mapping[str, Any]) -> None:
        self.sends += other.get("sends", 0)
        self.late += other.get("late", 0)
        self.waited_for_sender += other.get("waited_for_sender", 0)
        self.unsent += other.get("unsent", 0)
        self.max_late_ms = max(self.max_late_ms, other.get("max_late_ms", 0.0))
        for key, pick in (
            ("first_send", min),
            ("last_send", max),
            ("first_due", min),
            ("last_due", max),
        ):
            theirs, mine = other.get(key), getattr(self, key)
            if theirs is not None:
                setattr(self, key, theirs if mine is None else pick(mine, theirs))

    def achieved_rate(self) -> float | None:
        """Sends per second between the first and the last send ((n-1) gaps over their span,
        the estimate whose mean is the offered rate)."""
        return _rate(self.sends, self.first_send, self.last_send)

    def scheduled_rate(self) -> float | None:
        """The same estimate over the due times of those sends: what the seeded schedule
        asked for (a finite Poisson sample is not exactly at its mean rate)."""
        return _rate(self.sends, self.first_due, self.last_due)


def _rate(n: int, first: float | None, last: float | None) -> float | None:
    if n < 2 or first is None or last is None or last <= first:
        return None
    return (n - 1) / (last - first)


class Schedule:
    """The send times of one process, and what became of them.

    ``rate`` and ``budget`` are this process's share (the whole run's with one process). In an
    open loop one dispatcher walks ``due_times`` and hands each due request to a free sender;
    in a closed loop each sender ``claim``s a ticket of the budget before each request.
    """

    def __init__(
        self,
        options: LoadOptions,
        tolerance_ms: float,
        rate: float | None,
        budget: int | None,
        wall_offset: float = 0.0,
    ):
        """``wall_offset`` turns the caller's clock into wall-clock seconds for the stats, so
        that the send times of workers on several hosts can be merged."""
        self.options = options
        self.wall_offset = wall_offset
        self.tolerance_ms = tolerance_ms
        self.rate = rate
        self.budget = budget
        self.claimed = 0
        self.completed = 0
        self.stats = ScheduleStats()
        self._gaps = gaps(options.arrival, rate, options.seed) if rate else None

    def due_times(self, start: float) -> Iterator[float]:
        """Open loop: the due time of every request of the budget (endless without one); the
        first is due at ``start``, as in vllm bench serve."""
        if self._gaps is None:
            raise ArrivalError("a schedule without a rate has no due times")
        due = start
        while self.budget is None or self.claimed < self.budget:
            self.claimed += 1
            yield due
            due += next(self._gaps)

    def claim(self) -> bool:
        """Closed loop: a ticket for one more request, False once the budget is spent."""
        if self.budget is not None and self.claimed >= self.budget:
            return False
        self.claimed += 1
        return True

    def sent(self, due: float, at: float, no_free_sender: bool = False) -> float:
        """Record a departure at ``at`` of the request due at ``due`` (``no_free_sender``: every
        sender was busy when it fell due); its lateness in ms."""
        late_ms = max(at - due, 0.0) * 1000.0
        s = self.stats
        at, due = at + self.wall_offset, due + self.wall_offset
        s.sends += 1
        s.first_send = at if s.first_send is None else min(s.first_send, at)
        s.last_send = at if s.last_send is None else max(s.last_send, at)
        s.first_due = due if s.first_due is None else min(s.first_due, due)
        s.last_due = due if s.last_due is None else max(s.last_due, due)
        if late_ms > self.tolerance_ms:
            s.late += 1
            s.max_late_ms = max(s.max_late_ms, late_ms)
            if no_free_sender:
                s.waited_for_sender += 1
        return late_ms

    def unsent(self, dues: Sequence[float], now: float) -> list[float]:
        """At the end of the run, requests that fell due but never left: how late each is (ms),
        those beyond the tolerance counted."""
        late = [(now - due) * 1000.0 for due in dues]
        late = [ms for ms in late if ms > self.tolerance_ms]
        self.stats.unsent += len(late)
        return late

    @property
    def done(self) -> bool:
        """Every request of the budget has been answered."""
        return self.budget is not None and self.completed >= self.budget


def budget_share(total: int, workers: int, index: int) -> int:
    """One worker's part of a request budget: the remainder goes to the first workers."""
    workers = max(workers, 1)
    return total // workers + (1 if index < total % workers else 0)


def schedule_report(
    options: LoadOptions, stats: ScheduleStats, users: int | None
) -> dict[str, Any]:
    """The ``config.schedule`` block of a result: offered and achieved load."""
    achieved = stats.achieved_rate()
    scheduled = stats.scheduled_rate() if options.rate is not None else None
    return {
        "offered_rate": options.rate,
        "scheduled_rate": scheduled,
        "achieved_rate": achieved,
        "achieved_fraction": achieved / scheduled if achieved and scheduled else None,
        "senders": users,
        "sends": stats.sends,
        "late_sends": stats.late,
        "waited_for_sender": stats.waited_for_sender,
        "unsent_due": stats.unsent,
        "max_late_ms": stats.max_late_ms,
    }


def late_note(options: LoadOptions, stats: ScheduleStats, users: int | None) -> str:
    """Why an open-loop schedule was not kept, for the validity flag's detail."""
    if options.rate is None or not (stats.late or stats.unsent):
        return ""
    parts = [f"the {options.arrival} schedule at {options.rate:g} req/s was not kept"]
    if stats.waited_for_sender or stats.unsent:
        parts.append(
            f"{stats.waited_for_sender + stats.unsent} arrival(s) found all {users or '?'} "
            "senders busy (raise -u/--max-concurrency, or the target is saturated)"
        )
    client = stats.late - stats.waited_for_sender
    if client > 0:
        parts.append(f"{client} send(s) left late from a busy load generator")
    return "; ".join(parts)
