"""Latency metrics kept as raw samples, and the streaming timings defined as genai-perf does.

Locust's own statistics round response times above 100 ms into buckets; every figure here is
computed from the raw samples instead.

Streaming definitions (genai-perf, vLLM ``bench serve``):

- TTFT: arrival of the first chunk that carries content, minus the send time;
- ITL: the gaps between consecutive content chunks;
- TPOT: (E2E - TTFT) / (output tokens - 1);
- E2E: arrival of the end of the stream, minus the send time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: percentiles every summary reports
PERCENTILES = (50, 90, 95, 99)

#: names of the streaming metrics, as fired to Locust and kept in results
TTFT = "ttft"
ITL = "itl"
TPOT = "tpot"
E2E = "e2e"
STREAM_METRICS = (TTFT, ITL, TPOT, E2E)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's
    default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, mean, min, max and the PERCENTILES of raw samples (None where undefined)."""
    if not values:
        return {
            "count": 0,
            "mean": None,
            "min": None,
            "max": None,
            **{f"p{q}": None for q in PERCENTILES},
        }
    ordered = sorted(values)
    out: dict[str, float | int | None] = {
        "count": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "min": float(ordered[0]),
        "max": float(ordered[-1]),
    }
    for q in PERCENTILES:
        out[f"p{q}"] = percentile(ordered, q)
    return out


@dataclass
class StreamTiming:
    """Clock readings of one streamed request; all times from time.perf_counter()."""

    sent: float
    #: arrival times of the chunks that carried content, in order
    arrivals: list[float] = field(default_factory=list)
    #: tokens each of those chunks carried (1 unless the server says otherwise)
    tokens_per_chunk: list[int] = field(default_factory=list)
    ended: float | None = None
    #: completion tokens the server reported in usage, when it did
    usage_tokens: int | None = None

    @classmethod
    def start(cls) -> StreamTiming:
        return cls(sent=time.perf_counter())

    def content(self, tokens: int = 1, at: float | None = None) -> None:
        """A chunk with content arrived (now, or at ``at``)."""
        self.arrivals.append(time.perf_counter() if at is None else at)
        self.tokens_per_chunk.append(tokens)

    def end(self, at: float | None = None) -> None:
        self.ended = time.perf_counter() if at is None else at

    @property
    def output_tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else sum(self.tokens_per_chunk)

    @property
    def ttft_ms(self) -> float | None:
        return (self.arrivals[0] - self.sent) * 1000.0 if self.arrivals else None

    @property
    def itl_ms(self) -> list[float]:
        return [(b - a) * 1000.0 for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]

    @property
    def e2e_ms(self) -> float | None:
        return None if self.ended is None else (self.ended - self.sent) * 1000.0

    @property
    def tpot_ms(self) -> float | None:
        ttft, e2e, tokens = self.ttft_ms, self.e2e_ms, self.output_tokens
        if ttft is None or e2e is None or tokens < 2:
            return None
        return (e2e - ttft) / (tokens - 1)


@dataclass
class Samples:
    """Raw samples per metric name, with the wall-clock second each was taken at.

    Also the counts a run's totals need: requests and failures per name, output tokens.
    """

    values: dict[str, list[float]] = field(default_factory=dict)
    stamps: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    #: last failure message per name, to say what went wrong
    last_error: dict[str, str] = field(default_factory=dict)
    output_tokens: int = 0
    #: each request's own figures (servegate.load.goodput.request_record), for the goodput
    per_request: list[dict] = field(default_factory=list)

    def add(self, name: str, value_ms: float, at: float | None = None) -> None:
        self.values.setdefault(name, []).append(float(value_ms))
        self.stamps.setdefault(name, []).append(time.time() if at is None else at)

    def fail(self, name: str, message: str) -> None:
        self.failures[name] = self.failures.get(name, 0) + 1
        self.last_error[name] = message[:500]

    def names(self) -> list[str]:
        return sorted(set(self.values) | set(self.failures))

    def to_dict(self) -> dict:
        return {
            "values": self.values,
            "stamps": self.stamps,
            "failures": self.failures,
            "last_error": self.last_error,
            "output_tokens": self.output_tokens,
            "per_request": self.per_request,
        }

    def merge(self, other: dict) -> None:
        """Add a to_dict() of another Samples (a worker's) into this one."""
        for name, vals in other.get("values", {}).items():
            self.values.setdefault(name, []).extend(vals)
        for name, vals in other.get("stamps", {}).items():
            self.stamps.setdefault(name, []).extend(vals)
        for name, count in other.get("failures", {}).items():
            self.failures[name] = self.failures.get(name, 0) + count
        self.last_error.update(other.get("last_error", {}))
        self.output_tokens += int(other.get("output_tokens", 0))
        self.per_request.extend(other.get("per_request", []))

    def drain(self) -> dict:
        """to_dict() and clear, for shipping to the master in increments."""
        out = self.to_dict()
        self.values, self.stamps, self.failures, self.last_error = {}, {}, {}, {}
        self.output_tokens = 0
        self.per_request = []
        return out


def ratio_error(measured: float, expected: float) -> float:
    """Relative error of a measurement, e.g. 0.031 for 3.1 % too high."""
    return (measured - expected) / expected


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def flatten(lists: Iterable[Sequence[float]]) -> list[float]:
    return [v for seq in lists for v in seq]
