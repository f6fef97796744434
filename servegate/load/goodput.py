"""Goodput: the rate of requests that met every service-level objective (SLO).

An SLO here is a limit on one request's own figure, as vLLM's ``bench serve --goodput`` and
genai-perf's ``--goodput`` define it (a percentile over the run is a threshold instead:
``metrics: {ttft: {max_p99_ms: 300}}`` in the thresholds file):

- ``ttft``: the request's time to first content chunk;
- ``itl``: the mean of the request's gaps between content chunks;
- ``tpot``: the request's (E2E - TTFT) / (output tokens - 1);
- ``e2e``: the request's end-to-end time (for a request that does not stream, its latency).

A request is good when it succeeded and every SLO holds for it. A request that does not stream
has no TTFT, ITL or TPOT, so it never meets an SLO on them (``met`` in the result says which SLO
bites); a stream of one token has no gap, so it meets the ITL and TPOT SLOs (vLLM counts its
TPOT as 0).

Written ``ttft<300ms,itl<40ms,e2e<2s`` (or vLLM's ``ttft:300 tpot:40``, in ms).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from servegate.errors import ServegateError

#: the per-request figures an SLO may limit, in the order results show them
SLO_METRICS = ("ttft", "itl", "tpot", "e2e")
#: other spellings accepted for them (vLLM's)
ALIASES = {"e2el": "e2e"}
DEFINITION = (
    "good = succeeded and every SLO held for the request itself: its TTFT, its mean ITL, its "
    "TPOT, its E2E (requests that do not stream have only E2E); goodput = good requests / s"
)

_UNITS = {"ms": 1.0, "s": 1000.0, "": 1.0}
_ITEM = re.compile(
    r"^(?P<key>[a-z0-9]+)\s*(?:<=?|:)\s*(?P<value>[0-9.]+(?:e-?[0-9]+)?)(?P<unit>ms|s)?$"
)
_PERCENTILE = re.compile(r"^[a-z0-9]+\s*:\s*p[0-9.]+")


class SloError(ServegateError):
    """An --slo value that cannot be read."""


def parse_slos(text: str) -> dict[str, float]:
    """``"ttft<300ms,itl<40ms"`` -> ``{"ttft": 300.0, "itl": 40.0}`` (limits in ms)."""
    slos: dict[str, float] = {}
    for raw in re.split(r"[,\s]+", text.strip()):
        item = raw.strip().lower()
        if not item:
            continue
        if _PERCENTILE.match(item):
            raise SloError(
                f"--slo {raw!r}: an SLO holds per request (the request's own figure), not as a "
                "percentile; write e.g. ttft<300ms, and put percentiles in the thresholds file "
                "(metrics: {ttft: {max_p99_ms: 300}})"
            )
        match = _ITEM.match(item)
        if match is None:
            raise SloError(
                f"--slo {raw!r}: expected METRIC<LIMIT[ms|s] (or METRIC:MS), e.g. ttft<300ms; "
                f"metrics: {', '.join(SLO_METRICS)}"
            )
        key = ALIASES.get(match["key"], match["key"])
        if key not in SLO_METRICS:
            raise SloError(
                f"--slo {raw!r}: unknown metric {match['key']!r}; known: {', '.join(SLO_METRICS)}"
            )
        if key in slos:
            raise SloError(f"--slo {raw!r}: {key} is limited twice")
        value = float(match["value"]) * _UNITS[match["unit"] or ""]
        if value <= 0:
            raise SloError(f"--slo {raw!r}: the limit must be above 0")
        slos[key] = value
    if not slos:
        raise SloError("--slo: no SLO given (e.g. ttft<300ms,itl<40ms)")
    return slos


def slo_argument(text: str) -> dict[str, float]:
    """argparse ``type=`` of --slo: a bad value is the parser's one-line error, before any
    user starts."""
    import argparse

    try:
        return parse_slos(text) if text.strip() else {}
    except SloError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--slo ")) from None


def request_record(
    ok: bool,
    e2e_ms: float,
    *,
    ttft_ms: float | None = None,
    itl_ms: Sequence[float] | None = None,
    tpot_ms: float | None = None,
    streamed: bool = False,
) -> dict[str, Any]:
    """One request's own figures, as the goodput needs them (kept per request in Samples)."""
    itl = list(itl_ms or [])
    return {
        "ok": ok,
        "streamed": streamed,
        "ttft": ttft_ms,
        "itl": sum(itl) / len(itl) if itl else None,
        "tpot": tpot_ms,
        "e2e": e2e_ms,
    }


def meets(record: Mapping[str, Any], metric: str, limit_ms: float) -> bool:
    value = record.get(metric)
    if value is None:
        # a stream without a second chunk has no gap to be late; anything else unmeasured fails
        streamed = bool(record.get("streamed")) and record.get("ttft") is not None
        return streamed and metric in ("itl", "tpot")
    return float(value) <= limit_ms


def compute(
    records: Iterable[Mapping[str, Any]], slos: Mapping[str, float], duration_s: float
) -> dict[str, Any]:
    """The ``goodput`` block of a load-run result."""
    total = good = 0
    met = dict.fromkeys(slos, 0)
    for record in records:
        total += 1
        ok = bool(record.get("ok"))
        held = [m for m, limit in slos.items() if ok and meets(record, m, limit)]
        for m in held:
            met[m] += 1
        good += ok and len(held) == len(slos)
    return {
        "slos_ms": {f"{m}": float(v) for m, v in slos.items()},
        "requests": total,
        "good_requests": good,
        "fraction": good / total if total else 0.0,
        "requests_per_s": good / duration_s if duration_s > 0 else 0.0,
        "met": met,
        "definition": DEFINITION,
    }


def describe(slos: Mapping[str, float]) -> str:
    """``ttft<300ms, itl<40ms``: the SLOs as a user wrote them."""
    return ", ".join(f"{m}<{v:g}ms" for m, v in slos.items())
