"""The registry of deviation switches and the board that says which are on.

A switch breaks exactly one rule of a protocol. Each names the area it belongs to (``v2-rest``,
``v2-grpc``, ``v2-tensors``, later ``v1``, ``openai``...), what it breaks, and the conformance
checks (test function names, optionally with an fnmatch pattern over the parameter id in
brackets) of which at least one must fail while it is on. Route modules declare their switches
at import with :func:`switch` and ask :data:`BOARD` at request time.

The kill-rate test reads :data:`REGISTRY`; a server flips switches at run time through the
control endpoint (see app.py), so one process serves every switch run.

A *legal variation* (:func:`legal_variation`) is a switch that breaks no rule: an unusual answer
the specs allow (SSE comments, UTF-8 split across network chunks, extra fields). With one on,
no check may fail; it proves the checks do not overreach.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Switch:
    name: str
    area: str
    description: str
    #: checks of which at least one must fail while the switch is on: ``test_name`` or
    #: ``test_name[pattern]`` where pattern is matched (fnmatch) against the parameter id
    checks: tuple[str, ...]
    #: checks (same form) that must still pass while it is on: the switch breaks only good
    #: practice (the hardening profile) there, in a way the protocol allows
    passes: tuple[str, ...] = ()
    #: True for a legal variation: no check may fail while it is on
    legal: bool = False

    @property
    def check_functions(self) -> tuple[str, ...]:
        """The test function names, for ``pytest -k``."""
        return tuple(dict.fromkeys(c.split("[", 1)[0] for c in self.checks))

    @property
    def pass_functions(self) -> tuple[str, ...]:
        """The test function names of :attr:`passes`."""
        return tuple(dict.fromkeys(c.split("[", 1)[0] for c in self.passes))


REGISTRY: dict[str, Switch] = {}


def switch(
    name: str, area: str, description: str, checks: Iterable[str], passes: Iterable[str] = ()
) -> str:
    """Register a switch and return its name (the constant a route module tests with)."""
    checks = tuple(checks)
    if not checks:
        raise ValueError(f"switch {name!r} names no check that catches it")
    existing = REGISTRY.get(name)
    candidate = Switch(name, area, description, checks, tuple(passes))
    if existing is not None and existing != candidate:
        raise ValueError(f"switch {name!r} is registered twice, differently")
    REGISTRY[name] = candidate
    return name


def legal_variation(name: str, area: str, description: str) -> str:
    """Register a legal variation (a switch no check may fail under) and return its name."""
    candidate = Switch(name, area, description, (), legal=True)
    existing = REGISTRY.get(name)
    if existing is not None and existing != candidate:
        raise ValueError(f"switch {name!r} is registered twice, differently")
    REGISTRY[name] = candidate
    return name


def switches_of(area_prefix: str, *, legal: bool = False) -> list[Switch]:
    """Registered switches whose area starts with ``area_prefix`` (``v2`` -> every V2 area):
    the rule-breaking ones, or with ``legal`` the legal variations."""
    return [s for s in REGISTRY.values() if s.area.startswith(area_prefix) and s.legal == legal]


class Board:
    """Which switches are on; read by every request handler, set by the control endpoint."""

    def __init__(self) -> None:
        self._on: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def on(self, name: str) -> bool:
        return name in self._on

    @property
    def active(self) -> list[str]:
        return sorted(self._on)

    def set(self, names: Iterable[str]) -> None:
        names = frozenset(names)
        unknown = sorted(names - REGISTRY.keys())
        if unknown:
            raise KeyError(", ".join(unknown))
        with self._lock:
            self._on = names


#: the process's one board (REST and gRPC handlers run in the same process)
BOARD = Board()
