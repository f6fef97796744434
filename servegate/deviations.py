"""Expected deviations: known upstream bugs, each one specific failure that a check may show.

Each runtime has a YAML file of entries (format in conformance/deviations/README.md). An entry
names the check instances it covers, the implementation and version range it applies to, the
conditions on what the target serves (``when``) and the failure it expects (``expect``: the
status of the exchange behind the failure, patterns for the problem and the rule). Strict both
ways:

- a covered check that fails with a matching ``RuleViolation`` is an *expected deviation*;
- any other failure of a covered check (another status or problem, a KeyError, a timeout) is
  an ordinary failure that says what the entry expected and what was seen;
- a covered check that passes where the entry applies fails with "now passes: remove it", so
  the file never outlives the bug;
- an entry whose implementation, version or ``when`` does not hold is not applied at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from servegate.checks import RuleViolation
from servegate.errors import ServegateError
from servegate.features import TASKS
from servegate.protocols.exchange import Exchange
from servegate.targets import Target
from servegate.tasks.numeric_echo import TASK as NUMERIC_TASK
from servegate.tasks.numeric_echo import numeric_model

#: tasks whose models generate text; every other HF task is an encoder's
GENERATIVE_TASKS = frozenset({"text-generation", "text2text-generation"})
#: task names a ``when`` may use: the HF tasks and servegate's numeric model
KNOWN_TASKS = frozenset(TASKS) | {NUMERIC_TASK}


@dataclass(frozen=True)
class When:
    """Conditions on what the target serves; every one given must hold."""

    tasks: frozenset[str] = frozenset()
    no_tasks: frozenset[str] = frozenset()
    generative: bool | None = None
    encoder: bool | None = None
    models: Literal["one", "many"] | None = None

    def holds(self, target: Target) -> bool:
        served = served_tasks(target)
        if self.tasks and not self.tasks & served:
            return False
        if self.no_tasks & served:
            return False
        if self.generative is not None and bool(served & GENERATIVE_TASKS) != self.generative:
            return False
        encoders = served & (frozenset(TASKS) - GENERATIVE_TASKS)
        if self.encoder is not None and bool(encoders) != self.encoder:
            return False
        many = len(target.models) > 1
        return self.models is None or many == (self.models == "many")


def served_tasks(target: Target) -> frozenset[str]:
    """The tasks of the target's models; the numeric echo model counts as custom-numeric
    whether it was declared by task or found by its name."""
    tasks = {m.task for m in target.models.values() if m.task}
    if numeric_model(target) is not None:
        tasks.add(NUMERIC_TASK)
    return frozenset(tasks)


@dataclass(frozen=True)
class Expect:
    """The failure an entry expects; every part given must match."""

    #: statuses of the exchange behind the failure: HTTP codes (int) or gRPC code names
    status: tuple[int | str, ...] = ()
    problem: re.Pattern[str] | None = None
    rule: re.Pattern[str] | None = None

    def mismatch(self, violation: RuleViolation) -> str | None:
        """None when ``violation`` is the expected failure, else what differs."""
        wrong: list[str] = []
        if self.status:
            seen = evidence_status(violation)
            wanted = {_status_key(s) for s in self.status}
            if seen is None or _status_key(seen) not in wanted:
                shown = "no response" if seen is None else f"status {seen}"
                wrong.append(f"expected status {' or '.join(map(str, self.status))}, saw {shown}")
        if self.problem is not None and not self.problem.search(violation.problem):
            wrong.append(
                f"expected a problem matching {self.problem.pattern!r}, saw "
                f"{_first_line(violation.problem)!r}"
            )
        if self.rule is not None and not self.rule.search(violation.rule):
            wrong.append(
                f"expected a rule matching {self.rule.pattern!r}, "
                f"saw {_first_line(violation.rule)!r}"
            )
        return "; ".join(wrong) or None


def _status_key(status: int | str) -> str:
    return str(status).strip().upper()


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "..."


def evidence_status(violation: RuleViolation) -> int | str | None:
    """The status of the exchange behind a violation: the HTTP code, or the gRPC code's name
    ("INVALID_ARGUMENT"); None when there is no evidence or no response arrived."""
    evidence = violation.evidence
    status = getattr(evidence, "status", None)
    if isinstance(status, int | str):
        return status
    # a stream keeps its exchange on the reply it read
    for holder in (evidence, getattr(evidence, "reply", None)):
        exchange = getattr(holder, "exchange", None)
        if isinstance(exchange, Exchange):
            return exchange.status
    return None


@dataclass(frozen=True)
class Deviation:
    """One expected-deviation entry."""

    id: str
    #: a word of the target's implementation string; the version is the one written after it
    implementation: str
    reference: str
    reason: str
    #: check instances: test names with their parameter id; ``*`` is the only wildcard
    checks: tuple[str, ...]
    expect: Expect
    when: When = field(default_factory=When)
    #: PEP 440 specifier of the implementation's version, empty for any
    versions: str = ""
    #: "file.yaml" the entry came from
    source: str = ""

    def covers(self, name: str, slot: str = "") -> bool:
        """Whether ``name`` (a test name with its parameter id, as pytest shows it) is one of
        the entry's checks. A check written without brackets is the test whose only
        parameter is the target: with ``slot`` given, ``test_x`` covers ``test_x[<slot>]``."""
        return any(_check_pattern(check, slot).fullmatch(name) for check in self.checks)

    def applies_to(self, target: Target) -> bool:
        """Whether the target is the implementation, in the version range, serving what
        ``when`` asks for."""
        if not has_word(target.implementation, self.implementation):
            return False
        if self.versions:
            version = version_after(target.implementation, self.implementation)
            if version is None or version not in SpecifierSet(self.versions):
                return False
        return self.when.holds(target)


def _check_pattern(check: str, slot: str) -> re.Pattern[str]:
    body = ".*".join(re.escape(part) for part in check.split("*"))
    if "[" not in check and slot:
        body += rf"(?:\[{re.escape(slot)}\])?"
    return re.compile(body)


def _word(word: str) -> str:
    # a whole word: "kserve" is a word of "servegate-kserve-huggingface", not of "kserver"
    return rf"(?<![^\W_]){re.escape(word)}(?![^\W_])"


def has_word(text: str, word: str) -> bool:
    return re.search(_word(word), text, re.IGNORECASE) is not None


#: a version as implementation strings write it: "0.14.1", "v2.51", "1.7.1rc1"
_VERSION = r"v?(\d+(?:\.\d+)*(?:(?:a|b|rc|\.post|\.dev)\d+)?)(?![\w.])"


def version_after(text: str, word: str) -> Version | None:
    """The version written right after ``word`` in ``text``: in "servegate KServe HF server
    (huggingfaceserver 0.14.1 behaviour) on kserve 0.14.2 SDK" kserve's is 0.14.2, not the
    first number after the first "kserve". Where no version follows the word itself, the
    version of a hyphenated name made with it counts ("servegate-kserve-huggingface 0.14.1",
    as a server names itself in GET /v2)."""
    match = re.search(_word(word) + r"\s+" + _VERSION, text, re.IGNORECASE)
    if not match:
        compound = rf"(?<![\w-])(?:[\w.]+-)*{re.escape(word)}(?:-[\w.]+)*"
        match = re.search(compound + r"\s+" + _VERSION, text, re.IGNORECASE)
    if not match:
        return None
    try:
        return Version(match.group(1))
    except InvalidVersion:
        return None


Kind = Literal["expected", "unmatched", "now-passes", "not-applicable"]


@dataclass(frozen=True)
class Verdict:
    """What the entries make of one check's outcome on one target."""

    kind: Kind
    deviation: Deviation | None = None
    #: the deviation note (expected), why the failure is not the listed one (unmatched), or
    #: "remove it" (now-passes)
    message: str = ""


NOT_APPLICABLE = Verdict("not-applicable")


def judge(
    deviations: Iterable[Deviation],
    name: str,
    target: Target,
    failure: BaseException | None,
    *,
    slot: str = "",
) -> Verdict:
    """The verdict on check ``name`` that passed (``failure`` None) or failed with ``failure``.

    Only entries that cover the check and apply to the target count. A failure is expected
    when it is a RuleViolation matching one of them; otherwise it stays a failure whose
    message names each entry and what it expected. A pass is "now passes" for the first one.
    A skipped check is never judged: the caller does not ask.
    """
    entries = [d for d in deviations if d.covers(name, slot) and d.applies_to(target)]
    if not entries:
        return NOT_APPLICABLE
    if failure is None:
        first = entries[0]
        return Verdict(
            "now-passes",
            first,
            f"expected deviation {first.id} now passes: remove it "
            f"({first.source}, {first.reference}) for {target.implementation}",
        )
    # Hypothesis reports several distinct failures as one group: each must be the listed one
    leaves = list(_leaves(failure))
    other = next((e for e in leaves if not isinstance(e, RuleViolation)), None)
    if other is not None:
        seen = f"{type(other).__name__}: {_first_line(str(other))}"
        return Verdict(
            "unmatched",
            entries[0],
            f"expected deviation {', '.join(d.id for d in entries)} lists this check, but only a "
            f"rule violation can be expected and it failed with {seen}",
        )
    violations = [e for e in leaves if isinstance(e, RuleViolation)]
    misses: list[str] = []
    for entry in entries:
        mismatch = next(filter(None, (entry.expect.mismatch(v) for v in violations)), None)
        if mismatch is None:
            return Verdict(
                "expected",
                entry,
                f"expected deviation {entry.id} of {target.implementation} "
                f"({entry.reference}): {entry.reason}",
            )
        misses.append(f"{entry.id}: {mismatch}")
    return Verdict(
        "unmatched",
        entries[0],
        "the failure is not the listed expected deviation: " + " | ".join(misses),
    )


def _leaves(error: BaseException) -> Iterator[BaseException]:
    # an exception group by its shape: Python 3.10 has no BaseExceptionGroup (Hypothesis
    # brings the exceptiongroup backport there)
    inner = getattr(error, "exceptions", None)
    if isinstance(inner, tuple | list) and inner:
        for each in inner:
            yield from _leaves(each)
    else:
        yield error


# ---------------------------------------------------------------------------------- loading

_ENTRY_KEYS = {
    "id",
    "implementation",
    "versions",
    "reference",
    "reason",
    "when",
    "expect",
    "checks",
}
_REQUIRED = ("id", "implementation", "reference", "reason", "expect", "checks")
_WHEN_KEYS = {"tasks", "no_tasks", "generative", "encoder", "models"}
_EXPECT_KEYS = {"status", "problem", "rule"}


class _Bad(Exception):
    """What is wrong with one entry (becomes one ServegateError line)."""


def load_deviations(paths: Sequence[Path]) -> list[Deviation]:
    """Read deviation files; one-line ServegateError naming the file, the entry and what is
    wrong (an unknown key, a bad pattern or version range, a duplicate id, no checks)."""
    out: list[Deviation] = []
    seen: dict[str, str] = {}
    for path in paths:
        try:
            data: Any = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            detail = " ".join(str(exc).split())
            raise ServegateError(f"deviations file {path}: {detail}") from None
        entries = (data or {}).get("deviations", []) if isinstance(data, dict) else None
        if not isinstance(entries, list) or (isinstance(data, dict) and set(data) - {"deviations"}):
            raise ServegateError(
                f"deviations file {path}: expected a mapping with only a 'deviations' list"
            )
        for index, raw in enumerate(entries):
            label = f"entry {index + 1}"
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                label += f" ({raw['id']})"
            try:
                deviation = _entry(raw, path.name)
            except _Bad as exc:
                raise ServegateError(f"deviations file {path}, {label}: {exc}") from None
            if deviation.id in seen:
                raise ServegateError(
                    f"deviations file {path}, {label}: duplicate id {deviation.id!r} "
                    f"(also in {seen[deviation.id]})"
                )
            seen[deviation.id] = path.name
            out.append(deviation)
    return out


def _entry(raw: Any, source: str) -> Deviation:
    if not isinstance(raw, dict):
        raise _Bad("expected a mapping")
    _no_unknown(raw, _ENTRY_KEYS, "")
    missing = [k for k in _REQUIRED if raw.get(k) in (None, "", [], {})]
    if missing:
        raise _Bad(f"missing {', '.join(missing)}")
    ident = _text(raw, "id")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", ident):
        raise _Bad(f"id {ident!r}: use letters, digits, '.', '_' and '-'")
    versions = str(raw.get("versions") or "")
    try:
        SpecifierSet(versions)
    except InvalidSpecifier:
        raise _Bad(f"bad versions {versions!r}: not a PEP 440 specifier") from None
    checks = raw["checks"]
    if not isinstance(checks, list) or not all(isinstance(c, str) and c for c in checks):
        raise _Bad("checks: expected a list of test names")
    return Deviation(
        id=ident,
        implementation=_text(raw, "implementation"),
        reference=_text(raw, "reference"),
        reason=" ".join(_text(raw, "reason").split()),
        checks=tuple(checks),
        expect=_expect(raw["expect"]),
        when=_when(raw.get("when") or {}),
        versions=versions,
        source=source,
    )


def _no_unknown(raw: dict[Any, Any], known: set[str], prefix: str) -> None:
    unknown = [str(k) for k in raw if k not in known]
    if unknown:
        raise _Bad(
            f"unknown key {', '.join(prefix + k for k in unknown)!s} "
            f"(known: {', '.join(sorted(prefix + k for k in known))})"
        )


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _Bad(f"{key}: expected text")
    return str(value).strip()


def _when(raw: Any) -> When:
    if not isinstance(raw, dict):
        raise _Bad("when: expected a mapping")
    _no_unknown(raw, _WHEN_KEYS, "when.")
    flags: dict[str, bool | None] = {}
    for key in ("generative", "encoder"):
        value = raw.get(key)
        if value is not None and not isinstance(value, bool):
            raise _Bad(f"when.{key}: expected true or false, got {value!r}")
        flags[key] = value
    models = raw.get("models")
    if models not in (None, "one", "many"):
        raise _Bad(f"when.models: expected one or many, got {models!r}")
    return When(
        tasks=_tasks(raw, "tasks"),
        no_tasks=_tasks(raw, "no_tasks"),
        generative=flags["generative"],
        encoder=flags["encoder"],
        models=models,
    )


def _tasks(raw: dict[str, Any], key: str) -> frozenset[str]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise _Bad(f"when.{key}: expected a list of tasks")
    unknown = sorted(set(value) - KNOWN_TASKS)
    if unknown:
        raise _Bad(
            f"when.{key}: unknown task {', '.join(unknown)} "
            f"(known: {', '.join(sorted(KNOWN_TASKS))})"
        )
    return frozenset(value)


def _expect(raw: Any) -> Expect:
    if not isinstance(raw, dict):
        raise _Bad("expect: expected a mapping")
    _no_unknown(raw, _EXPECT_KEYS, "expect.")
    if not any(raw.get(k) not in (None, "", []) for k in _EXPECT_KEYS):
        raise _Bad("expect: give at least one of status, problem, rule")
    status = raw.get("status", [])
    statuses = status if isinstance(status, list) else [status]
    for item in statuses:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise _Bad(f"expect.status: expected HTTP codes or gRPC code names, got {item!r}")
    return Expect(
        status=tuple(statuses),
        problem=_regex(raw, "problem"),
        rule=_regex(raw, "rule"),
    )


def _regex(raw: dict[str, Any], key: str) -> re.Pattern[str] | None:
    value = raw.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise _Bad(f"expect.{key}: expected a regular expression")
    try:
        return re.compile(value)
    except re.error as exc:
        raise _Bad(f"expect.{key}: bad regular expression {value!r}: {exc}") from None
