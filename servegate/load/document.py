"""The load result file format: one pydantic model that the writer (servegate.load.results)
and the readers (the gate, the reports) share, so the two can never disagree about a field.

A load run (``kind: "load-run"``) is modelled field by field. Experiments and benchmarks
(``kind: "experiment"``, ``"benchmark"``) and files written by other tools are read as a
:class:`LoadDocument`: only the fields every reader relies on are typed (validity, the run's own
threshold verdict), anything else is data a thresholds file may name by path.

Fields added later are optional, so a result written by an earlier servegate stays readable.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from servegate.errors import ServegateError

#: the version this servegate writes; it reads every version up to it
SCHEMA_VERSION = 1


class LoadResultError(ServegateError):
    """A load result file that is not a load result this servegate can read."""


class _Open(BaseModel):
    # other fields are kept, not refused: a newer writer may add some, and readers only rely
    # on the typed ones
    model_config = ConfigDict(extra="allow")


class Summary(_Open):
    """A latency summary in ms; every figure null when there were no samples."""

    count: int = 0
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


class ValidityFlag(_Open):
    name: str
    detail: str


class Validity(_Open):
    """Whether the run measured the server or an overloaded load generator."""

    valid: bool
    flags: list[ValidityFlag] = []

    def reason(self) -> str:
        return "; ".join(f"{f.name}: {f.detail}" for f in self.flags) or "no reason given"


class Breach(_Open):
    figure: str
    limit: float | None = None
    measured: float | None = None
    message: str


class Verdict(_Open):
    """The ``thresholds`` field: the run's own verdict against a thresholds file."""

    file: str | None = None
    passed: bool
    #: texts in results written by other tools
    breaches: list[Breach | str] = []

    def lines(self) -> list[str]:
        return [b if isinstance(b, str) else b.message for b in self.breaches]


class RequestStats(_Open):
    name: str
    requests: int
    failures: int
    error_rate: float
    requests_per_s: float
    latency_ms: Summary
    last_error: str | None = None


class Totals(_Open):
    requests: int
    failures: int
    error_rate: float
    requests_per_s: float
    ok_requests_per_s: float
    latency_ms: Summary
    output_tokens: int = 0
    output_tokens_per_s: float = 0.0


class Goodput(_Open):
    """Requests that met every per-request SLO (servegate.load.goodput)."""

    slos_ms: dict[str, float]
    requests: int
    good_requests: int
    fraction: float
    requests_per_s: float
    #: per SLO, how many requests met it: which limit bites
    met: dict[str, int] = {}
    definition: str = ""


class Series(_Open):
    """One scraped series: seconds since the run's start and the values then."""

    metric: str
    t_s: list[float] = []
    values: list[float | None] = []


class Telemetry(_Open):
    """The target's Prometheus /metrics, scraped during the run (servegate.load.telemetry)."""

    status: Literal["scraped", "absent", "off"]
    url: str | None = None
    note: str = ""
    interval_s: float | None = None
    scrapes: int = 0
    errors: int = 0
    series: dict[str, Series] = {}


class LoadDocument(_Open):
    """Any ``load-*.json``: the fields every reader relies on, the rest kept as data."""

    schema_version: int | None = None
    kind: str | None = None
    name: str | None = None
    title: str | None = None
    validity: Validity | None = None
    thresholds: Verdict | None = None
    #: results written before the validity block (or by other tools) said it at the top
    valid: bool | None = None
    invalid_reason: str | list[str] | None = None
    #: ... and their own verdict at the top or under ``gate``
    passed: bool | None = None
    breaches: list[Breach | str] = []
    gate: Verdict | None = None

    def is_valid(self) -> bool | None:
        """The run's validity: ``validity.valid``, else a legacy top-level ``valid``."""
        if self.validity is not None:
            return self.validity.valid
        return self.valid

    def verdict(self) -> Verdict | None:
        """The run's own verdict against a thresholds file, when it recorded one."""
        if self.thresholds is not None:
            return self.thresholds
        if self.gate is not None:
            return self.gate
        if self.passed is not None:
            return Verdict(passed=self.passed, breaches=self.breaches)
        return None

    def invalid_why(self) -> str:
        if self.validity is not None:
            return self.validity.reason()
        extra = self.model_extra or {}
        for value in (self.invalid_reason, extra.get("invalid_reasons"), extra.get("reason")):
            if isinstance(value, list):
                return "; ".join(map(str, value))
            if value:
                return str(value)
        return "no reason given"


class LoadRun(LoadDocument):
    """One Locust run (``kind: "load-run"``), as servegate.load.results writes it."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["load-run"] = "load-run"  # type: ignore[assignment]
    name: str
    created: str
    started: float
    duration_s: float
    target: dict[str, Any] = {}
    config: dict[str, Any] = {}
    machine: dict[str, Any] = {}
    validity: Validity
    totals: Totals
    requests: list[RequestStats] = []
    #: per stream name: ttft_ms, itl_ms, tpot_ms, e2e_ms summaries
    streaming: dict[str, dict[str, Summary]] = {}
    thresholds: Verdict | None = None
    goodput: Goodput | None = None
    telemetry: Telemetry | None = None


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}" for e in exc.errors()[:3]
    )


def parse_document(data: Any, where: str = "load result") -> LoadDocument:
    """The typed document of a parsed ``load-*.json``: a :class:`LoadRun` for a load run, else
    a :class:`LoadDocument`. LoadResultError (one line) for what cannot be read."""
    if not isinstance(data, dict):
        raise LoadResultError(f"{where}: expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise LoadResultError(
            f"{where}: schema_version {version}, this servegate reads up to {SCHEMA_VERSION} "
            "(upgrade servegate)"
        )
    try:
        if data.get("kind") == "load-run":
            return LoadRun.model_validate(data)
        return LoadDocument.model_validate(data)
    except ValidationError as exc:
        raise LoadResultError(f"{where}: not a valid load result: {_problems(exc)}") from None


def dump_run(run: LoadRun) -> dict[str, Any]:
    """The JSON-ready dict of a load run, extra fields included."""
    return run.model_dump(mode="json")
