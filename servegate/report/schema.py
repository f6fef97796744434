"""The conformance report's schema: what a run writes as JSON and YAML and what the gate,
the comparison and the HTML page read back. Every writer and reader goes through these models,
so a report on disk is always a valid one of its ``report_version``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from servegate.errors import ServegateError

#: bump when a field changes meaning or goes away; adding an optional field keeps it
REPORT_VERSION = 2

Outcome = Literal["passed", "failed", "expected-deviation", "unsupported", "skipped", "error"]
OUTCOMES: tuple[str, ...] = (
    "passed",
    "failed",
    "expected-deviation",
    "unsupported",
    "skipped",
    "error",
)
ProfileOutcome = Literal["success", "partial", "failure"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Counts(_Model):
    passed: int = 0
    failed: int = 0
    expected_deviation: int = Field(
        default=0,
        serialization_alias="expected-deviation",
        validation_alias=AliasChoices("expected-deviation", "expected_deviation"),
    )
    unsupported: int = 0
    skipped: int = 0
    error: int = 0

    @classmethod
    def of(cls, outcomes: list[str]) -> Counts:
        counts = cls()
        for outcome in outcomes:
            attr = outcome.replace("-", "_")
            setattr(counts, attr, getattr(counts, attr) + 1)
        return counts

    def get(self, outcome: str) -> int:
        return int(getattr(self, outcome.replace("-", "_")))

    @property
    def total(self) -> int:
        return sum(self.get(o) for o in OUTCOMES)


class ExchangeRecord(_Model):
    """One request and the response seen, redacted (headers and bodies)."""

    protocol: str
    method: str
    url: str
    request_headers: dict[str, str] = {}
    request_body: str = ""
    #: HTTP status, a gRPC status name, or None when no response arrived
    status: int | str | None = None
    response_headers: dict[str, str] = {}
    response_body: str = ""


class Failure(_Model):
    """Why a check failed: the rule broken, what was wrong, and the exchange that showed it."""

    rule: str
    problem: str
    exchange: ExchangeRecord | None = None


class DeviationRecord(_Model):
    """An expected-deviation entry as a case's report names it."""

    id: str
    #: expected (the listed failure), unmatched (failed otherwise), now-passes
    verdict: Literal["expected", "unmatched", "now-passes"]
    reference: str
    reason: str = ""
    #: the deviations file it comes from
    source: str = ""


class EvidenceRecord(_Model):
    """One exchange a discovery decision rests on: request line, status, a body excerpt."""

    request: str
    #: HTTP status, a gRPC status name, or None when no response arrived
    status: int | str | None = None
    excerpt: str = ""


class DecisionRecord(_Model):
    """Why discovery held a feature supported or not, and what it saw."""

    feature: str
    supported: bool
    #: what was asked and what settled it
    how: str
    #: supported, but a probe got a 5xx or no answer: its checks run and fail
    broken: bool = False
    evidence: list[EvidenceRecord] = []


class UnsupportedRecord(_Model):
    """What an *unsupported* check lacked, and the discovery decisions behind the claim."""

    features: list[str] = []
    reason: str = ""
    decisions: list[DecisionRecord] = []


class TargetError(_Model):
    """Why a target could not be tested at all (its checks never ran)."""

    #: "unreachable", "unusable" (answers, but not as asked) or "server-start"
    kind: str
    message: str
    #: the exit code the run ended with for it
    exit_code: int


class Case(_Model):
    #: the check's id across targets: test file::test name[parameters other than the target]
    check: str
    nodeid: str
    name: str
    task: str | None = None
    features: list[str] = []
    #: the rule the check states (its rule marker or the first line of its docstring)
    rule: str = ""
    outcome: Outcome
    #: the failure text, skip reason or deviation note, redacted
    message: str = ""
    duration: float = 0.0
    #: on failed, error and expected-deviation outcomes
    failure: Failure | None = None
    #: the expected-deviation entry that judged the case: it expected this failure, the
    #: failure did not match it, or the check now passes
    deviation: DeviationRecord | None = None
    #: on the unsupported outcome: the missing features and the evidence
    unsupported: UnsupportedRecord | None = None


class ModelRecord(_Model):
    task: str | None = None
    task_source: str = "declared"
    #: HuggingFace V2 encodings the model was found to speak
    encodings: list[str] = []


class Implementation(_Model):
    """The server under test."""

    #: the run's short name for it (file names, test ids): "mlserver" or "host-port"
    slot: str
    #: what it is, as discovered or named by its launcher ("MLServer 1.7.1")
    description: str = "unknown"
    #: implementation name and version parsed from the description, when they can be
    name: str | None = None
    version: str | None = None
    #: the image (or build) under test, from --image
    image: str | None = None
    url: str | None = None
    grpc_address: str | None = None
    #: the features checks were run against: discovered, plus --features, --profile core
    #: features, minus --exempt-features
    features: list[str] = []
    discovered_features: list[str] = []
    models: dict[str, ModelRecord] = {}
    #: every discovery decision (feature, supported, how, evidence)
    discovery: list[DecisionRecord] = []


class ProfileResult(_Model):
    name: str
    description: str = ""
    result: ProfileOutcome
    #: one line saying why the result is not success (empty on success)
    reason: str = ""
    #: whether the run was asked for this profile (--profile)
    requested: bool = False
    counts: Counts = Field(default_factory=Counts)
    core_features: list[str] = []
    #: extended features the target supports (their checks count) and lacks (theirs do not)
    supported_extended: list[str] = []
    unsupported_extended: list[str] = []
    #: core features the target lacks: any makes the profile a failure
    missing_core: list[str] = []
    #: checks (by name) that failed, errored or were skipped within the profile
    failed_checks: list[str] = []


class Suite(_Model):
    name: str = "servegate"
    version: str


class ConformanceReport(_Model):
    report_version: Literal[2] = 2
    suite: Suite
    #: when the run started, ISO 8601 UTC
    date: str
    implementation: Implementation
    #: success when no check failed or errored, failure otherwise (profiles say more)
    result: Literal["success", "failure"]
    #: set when the target could not be tested at all (unreachable, unusable): result failure
    error: TargetError | None = None
    counts: Counts
    requested_profiles: list[str] = []
    profiles: list[ProfileResult] = []
    #: counts per task ("-" for checks without a task)
    tasks: dict[str, Counts] = {}
    cases: list[Case] = []

    def profile(self, name: str) -> ProfileResult | None:
        return next((p for p in self.profiles if p.name == name), None)


def report_to_data(report: ConformanceReport) -> dict[str, Any]:
    return report.model_dump(mode="json", by_alias=True)


def write_json(report: ConformanceReport, path: Path) -> Path:
    """Validate and write a report as JSON."""
    data = report_to_data(ConformanceReport.model_validate(report_to_data(report)))
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def write_yaml(report: ConformanceReport, path: Path) -> Path:
    """Validate and write a report as YAML."""
    data = report_to_data(ConformanceReport.model_validate(report_to_data(report)))
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    return path


def read_report(path: Path) -> ConformanceReport:
    """Read a JSON or YAML report; ServegateError naming the file and the first problems."""
    try:
        text = path.read_text()
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ServegateError(f"report {path}: cannot read it: {exc}") from None
    if isinstance(data, dict) and data.get("report_version") != REPORT_VERSION:
        raise ServegateError(
            f"report {path}: report_version {data.get('report_version')!r}, this servegate "
            f"reads version {REPORT_VERSION}; re-run the suite with this version"
        )
    try:
        return ConformanceReport.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ServegateError(f"report {path}: not a valid conformance report: {problems}") from None


def find_reports(reports_dir: Path) -> list[Path]:
    """The conformance reports in a folder: conformance-*.json, or .yaml where no JSON is."""
    found = sorted(reports_dir.glob("conformance-*.json"))
    stems = {p.stem for p in found}
    found += sorted(
        p
        for p in [*reports_dir.glob("conformance-*.yaml"), *reports_dir.glob("conformance-*.yml")]
        if p.stem not in stems
    )
    return found
