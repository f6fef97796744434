"""Expected deviations: known upstream bugs that turn a failing check into an expected one.

Each runtime has a YAML file of entries; an entry names the check, the implementations and
versions it applies to, the upstream reference and why. Strict both ways: a listed check that
fails is an *expected deviation*; a listed check that passes fails with "now passes, remove
the entry", so the file never outlives the bug.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from servegate.errors import ServegateError


@dataclass(frozen=True)
class Deviation:
    #: the implementation this applies to: a case-insensitive word of Target.implementation
    implementation: str
    #: the check's test name, an fnmatch pattern over the name with its parameters
    check: str
    reference: str
    reason: str
    #: PEP 440 specifier of the implementation's version, empty for any
    versions: str = ""
    #: a task whose model, when the target serves one, routes the check elsewhere so that the
    #: entry does not apply (e.g. bad tensors go to a numeric model instead of a text model)
    unless_task: str = ""
    source: str = ""

    def matches(
        self, test_name: str, implementation: str, tasks: frozenset[str] = frozenset()
    ) -> bool:
        if self.unless_task and self.unless_task in tasks:
            return False
        base = test_name.split("[", 1)[0]
        if not (
            fnmatch.fnmatchcase(test_name, self.check) or fnmatch.fnmatchcase(base, self.check)
        ):
            return False
        impl = implementation.lower()
        # a whole word: "kserve" matches "servegate-kserve-huggingface", not "kserver"
        if not re.search(rf"(?<![^\W_]){re.escape(self.implementation.lower())}(?![^\W_])", impl):
            return False
        if not self.versions:
            return True
        version = _version_after(impl, self.implementation.lower())
        return version is not None and version in SpecifierSet(self.versions)


def _version_after(text: str, name: str) -> Version | None:
    match = re.search(rf"{re.escape(name)}\D*?(\d+(?:\.\d+)+)", text)
    if not match:
        return None
    try:
        return Version(match.group(1))
    except InvalidVersion:
        return None


REQUIRED = ("implementation", "check", "reference", "reason")


def load_deviations(paths: list[Path]) -> list[Deviation]:
    """Read deviation files; ServegateError naming the file and entry when one is malformed."""
    out: list[Deviation] = []
    for path in paths:
        try:
            data: Any = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ServegateError(f"deviations file {path}: {exc}") from None
        entries = (data or {}).get("deviations", []) if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ServegateError(
                f"deviations file {path}: expected a mapping with a 'deviations' list"
            )
        for i, entry in enumerate(entries):
            missing = [k for k in REQUIRED if not isinstance(entry, dict) or not entry.get(k)]
            if missing:
                raise ServegateError(
                    f"deviations file {path}, entry {i + 1}: missing {', '.join(missing)}"
                )
            versions = str(entry.get("versions", "") or "")
            try:
                SpecifierSet(versions)
            except InvalidSpecifier:
                raise ServegateError(
                    f"deviations file {path}, entry {i + 1}: bad versions {versions!r}"
                ) from None
            out.append(
                Deviation(
                    implementation=str(entry["implementation"]),
                    check=str(entry["check"]),
                    reference=str(entry["reference"]),
                    reason=str(entry["reason"]).strip(),
                    versions=versions,
                    unless_task=str(entry.get("unless_task", "") or ""),
                    source=f"{path.name}#{i + 1}",
                )
            )
    return out


def find_deviation(
    deviations: list[Deviation],
    test_name: str,
    implementation: str,
    tasks: frozenset[str] = frozenset(),
) -> Deviation | None:
    """The first entry for this check on an implementation serving models of ``tasks``."""
    for deviation in deviations:
        if deviation.matches(test_name, implementation, tasks):
            return deviation
    return None
