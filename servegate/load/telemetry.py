"""Server telemetry: the target's Prometheus /metrics, scraped at an interval during a load run,
kept as named time series in the result (``telemetry``) and plotted under latency over time.

Where each implementation serves its metrics (all at ``/metrics``):

- vLLM and KServe: on the HTTP port;
- MLServer: on its own metrics port, 8082 beside HTTP 8080 by default;
- Triton: on its own metrics port, 8002 beside HTTP 8000 by default.

Without ``--metrics-url`` the target's own port is tried, then the metrics port that goes with
a default HTTP port; no answer is noted in the result, never an error: a server without
metrics is still load-tested.

Named series (the first metric present wins; several label sets are added up, utilisations
take their maximum, a histogram gives the mean of the observations since the last scrape, a
counter its rate per second):
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from servegate.load.prometheus import Exposition, PrometheusFormatError, parse

#: how a series' value comes from a metric: see the module docstring
How = Literal["sum", "max", "hist_mean", "rate", "ratio", "mb"]


@dataclass(frozen=True)
class Source:
    metric: str
    how: How = "sum"
    #: for "ratio": the metric whose increase divides this one's
    per: str = ""
    #: unit change, e.g. 1e-6 for a total kept in microseconds
    scale: float = 1.0


#: canonical series -> the metrics that give it, per implementation
KNOWN_SERIES: dict[str, tuple[Source, ...]] = {
    # requests being processed now
    "running_requests": (
        Source("vllm:num_requests_running"),
        Source("rest_server_requests_in_progress"),  # MLServer (starlette_exporter)
        Source("starlette_requests_in_progress"),
    ),
    # requests waiting for a slot: the queue length
    "waiting_requests": (
        Source("vllm:num_requests_waiting"),
        Source("nv_inference_pending_request_count"),
    ),
    # MLServer: the queue length each request met at its adaptive batcher / worker pool
    "batch_queue": (Source("batch_request_queue", "hist_mean"),),
    "worker_queue": (Source("parallel_request_queue", "hist_mean"),),
    # Triton: inferences per model execution = the batch size formed
    "batch_size": (Source("nv_inference_count", "ratio", per="nv_inference_exec_count"),),
    # vLLM: tokens per engine step (prefill and decode of every running request)
    "batch_tokens": (Source("vllm:iteration_tokens_total", "hist_mean"),),
    "server_output_tokens_per_s": (Source("vllm:generation_tokens_total", "rate"),),
    # fraction of the KV cache in use (0..1)
    "kv_cache_usage": (
        Source("vllm:kv_cache_usage_perc", "max"),
        Source("vllm:gpu_cache_usage_perc", "max"),
        Source("vllm:cpu_cache_usage_perc", "max"),
    ),
    "gpu_utilization": (
        Source("nv_gpu_utilization", "max"),
        Source("DCGM_FI_DEV_GPU_UTIL", "max"),
    ),
    # requests the server counted, per second: compare with what the load generator sent
    "server_requests_per_s": (
        Source("vllm:request_success_total", "rate"),
        Source("rest_server_requests_total", "rate"),  # MLServer
        Source("nv_inference_request_success", "rate"),  # Triton
    ),
    # the server's own mean request time over each interval, in seconds
    "server_latency_s": (
        Source("vllm:e2e_request_latency_seconds", "hist_mean"),
        Source("rest_server_request_duration_seconds", "hist_mean"),  # MLServer
        Source("request_predict_seconds", "hist_mean"),  # KServe
        Source(
            "nv_inference_request_duration_us",
            "ratio",
            per="nv_inference_request_success",
            scale=1e-6,
        ),  # Triton
    ),
    # Triton: the mean time a request waited in the server's queue, in seconds
    "server_queue_s": (
        Source(
            "nv_inference_queue_duration_us",
            "ratio",
            per="nv_inference_request_success",
            scale=1e-6,
        ),
    ),
    # the serving process (prometheus_client's process collector): cores busy, memory
    "server_cpu_cores": (Source("process_cpu_seconds_total", "rate"),),
    "server_rss_mb": (Source("process_resident_memory_bytes", "mb"),),
    # Triton: the host's CPU use, 0..1
    "cpu_utilization": (Source("nv_cpu_utilization", "max"),),
}

__doc__ = (__doc__ or "") + "\n".join(
    f"- ``{name}``: " + ", ".join(f"``{s.metric}``" for s in sources)
    for name, sources in KNOWN_SERIES.items()
)

#: implementations that serve metrics apart from their HTTP port: default HTTP port -> metrics
#: port (MLServer 8080 -> 8082, Triton 8000 -> 8002); another HTTP port says nothing about
#: where its metrics are, and a guessed port could be another server's
SEPARATE_PORTS = {8080: 8082, 8000: 8002}
OFF = "off"


def candidate_urls(host: str) -> list[str]:
    """Where a target at ``host`` (http://h:p[/...]) may serve /metrics, most likely first."""
    parts = urlsplit(host if "://" in host else f"http://{host}")
    if not parts.hostname:
        return []
    name = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    scheme = parts.scheme or "http"
    out = [urlunsplit((scheme, parts.netloc, "/metrics", "", ""))]
    metrics_port = SEPARATE_PORTS.get(parts.port or 0)
    if metrics_port:
        out.append(urlunsplit((scheme, f"{name}:{metrics_port}", "/metrics", "", "")))
    return out


def fetch(url: str, timeout_s: float = 2.0) -> str:
    """The text at ``url``; OSError (urllib's errors are OSErrors) when it does not answer 200."""
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    with urllib.request.urlopen(request, timeout=timeout_s) as reply:  # noqa: S310 (http(s) only)
        return reply.read().decode("utf-8", errors="replace")


@dataclass
class _Point:
    at: float
    exposition: Exposition


@dataclass
class Scraper:
    """Scrapes one /metrics URL; :meth:`scrape` once per interval, :meth:`report` at the end."""

    url: str | None
    interval_s: float = 1.0
    #: gauges (or counters, histograms) the user named with --metric
    extra: tuple[str, ...] = ()
    status: Literal["scraped", "absent", "off"] = "scraped"
    note: str = ""
    get: Callable[[str], str] = fetch
    scrapes: int = 0
    errors: int = 0
    last_error: str = ""
    _previous: _Point | None = None
    _stamps: list[float] = field(default_factory=list)
    _values: dict[str, list[float | None]] = field(default_factory=dict)
    _metric: dict[str, str] = field(default_factory=dict)

    @classmethod
    def find(
        cls,
        host: str,
        url: str = "",
        *,
        interval_s: float = 1.0,
        extra: Iterable[str] = (),
        get: Callable[[str], str] = fetch,
    ) -> Scraper:
        """A scraper for ``url`` (``off``: none), else for the first candidate of ``host``
        that answers with Prometheus text; an absent endpoint is a note, not an error."""
        names = tuple(extra)
        if url.strip().lower() == OFF:
            return cls(None, interval_s, names, status="off", note="--metrics-url off", get=get)
        tried = [url] if url else candidate_urls(host)
        problems = []
        for candidate in tried:
            try:
                parse(get(candidate))
            except (OSError, PrometheusFormatError, ValueError) as exc:
                problems.append(f"{candidate}: {_short(exc)}")
                continue
            how = "given" if url else "derived from the target's host"
            return cls(candidate, interval_s, names, note=how, get=get)
        return cls(
            None,
            interval_s,
            names,
            status="absent",
            note="no Prometheus /metrics answered: " + "; ".join(problems or ["no URL to try"]),
            get=get,
        )

    def scrape(self, now: float | None = None) -> None:
        """Read the endpoint once and append every named series' value."""
        if self.url is None:
            return
        at = time.time() if now is None else now
        try:
            exposition = parse(self.get(self.url), only=self._wanted())
        except (OSError, PrometheusFormatError, ValueError) as exc:
            self.errors += 1
            self.last_error = _short(exc)
            return
        self.scrapes += 1
        point = _Point(at, exposition)
        row: dict[str, float | None] = {}
        for name, sources in self._sources().items():
            for source in sources:
                value = _value(source, point, self._previous)
                if value is not _ABSENT:
                    row[name] = value  # type: ignore[assignment]
                    self._metric.setdefault(name, source.metric)
                    break
        self._previous = point
        self._stamps.append(at)
        for name in set(self._values) | set(row):
            column = self._values.setdefault(name, [None] * (len(self._stamps) - 1))
            column.append(row.get(name))

    def _wanted(self) -> set[str]:
        """The sample names any series reads."""
        names: set[str] = set()
        for sources in self._sources().values():
            for source in sources:
                names |= {source.metric, source.metric + "_sum", source.metric + "_count"}
                if source.per:
                    names.add(source.per)
        return names

    def _sources(self) -> dict[str, tuple[Source, ...]]:
        extra = {name: _user_sources(name) for name in self.extra}
        return {**KNOWN_SERIES, **extra}

    def run(self, until: Callable[[], bool], sleep: Callable[[float], Any] = time.sleep) -> None:
        """Scrape every interval until ``until()`` says stop (a greenlet under Locust)."""
        while not until():
            started = time.monotonic()
            self.scrape()
            sleep(max(self.interval_s - (time.monotonic() - started), 0.05))

    def report(self, started: float) -> dict[str, Any]:
        """The ``telemetry`` field of a load-run result; times in seconds since ``started``."""
        note = self.note
        if self.errors:
            note += f"; {self.errors} scrape(s) failed, last: {self.last_error}"
        missing = [n for n in self.extra if not any(v is not None for v in self._values.get(n, []))]
        if missing:
            note += f"; not served: {', '.join(missing)}"
        t_s = [round(at - started, 3) for at in self._stamps]
        # in the catalogue's order, the user's last: the plot shows the first few
        order = list(self._sources())
        series = {
            # copies as long as the times: the scraper may go on scraping after this report
            name: {"metric": self._metric.get(name, name), "t_s": t_s, "values": values[: len(t_s)]}
            for name, values in sorted(self._values.items(), key=lambda kv: order.index(kv[0]))
            if any(v is not None for v in values)
        }
        return {
            "status": self.status,
            "url": self.url,
            "note": note.strip("; "),
            "interval_s": self.interval_s,
            "scrapes": self.scrapes,
            "errors": self.errors,
            "series": series,
        }


def _user_sources(name: str) -> tuple[Source, ...]:
    """A metric the user named: a gauge (or untyped) as it is, a counter as a rate, a
    histogram or summary as the mean of its new observations."""
    return (
        Source(name, "sum"),
        Source(name, "rate"),
        Source(name + "_total", "rate"),
        Source(name, "hist_mean"),
    )


class _Absent:
    pass


_ABSENT: Any = _Absent()


def _total(exposition: Exposition, metric: str) -> float | None:
    values = exposition.values(metric)
    return sum(values) if values else None


def _value(source: Source, now: _Point, before: _Point | None) -> Any:
    """The series value from ``source`` at ``now``; _ABSENT when the metric is not served,
    None when it is but needs a previous scrape (or nothing changed) to give a value."""
    exp = now.exposition
    if source.how in ("sum", "max", "mb"):
        values = exp.values(source.metric)
        family = exp.types.get(source.metric) or exp.types.get(source.metric.removesuffix("_total"))
        if not values or family in ("histogram", "summary", "counter"):
            # a counter's total or a histogram's parts are not a level: rate or mean instead
            return _ABSENT
        if source.how == "max":
            return max(values)
        total = sum(values)
        return total / 1e6 if source.how == "mb" else total
    if source.how == "rate":
        family = exp.types.get(source.metric.removesuffix("_total")) or exp.types.get(source.metric)
        if family != "counter":
            return _ABSENT
        current = _total(exp, source.metric)
        if current is None:
            return _ABSENT
        previous = None if before is None else _total(before.exposition, source.metric)
        span = None if before is None else now.at - before.at
        return None if previous is None or not span else (current - previous) / span
    # hist_mean and ratio: increase of one total over the increase of another
    top, bottom = (
        (source.metric + "_sum", source.metric + "_count")
        if source.how == "hist_mean"
        else (source.metric, source.per)
    )
    current_top, current_bottom = _total(exp, top), _total(exp, bottom)
    if current_top is None or current_bottom is None:
        return _ABSENT
    if before is None:
        return None
    previous_top = _total(before.exposition, top) or 0.0
    previous_bottom = _total(before.exposition, bottom) or 0.0
    grown = current_bottom - previous_bottom
    return source.scale * (current_top - previous_top) / grown if grown > 0 else None


def _short(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    text = str(getattr(exc, "reason", "") or exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def seen_series(report: Mapping[str, Any]) -> list[str]:
    """``name (metric)`` of every series a telemetry report holds."""
    return [f"{n} ({s['metric']})" for n, s in (report.get("series") or {}).items()]
