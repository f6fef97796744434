"""The *unsupported* outcome: a check that cannot run because the target lacks what it needs.

"Unsupported" is a claim, so it carries its evidence: the missing feature(s) and the discovery
decisions about them (how each was looked for, the exchanges seen). It is a skip to pytest, a
subclass of pytest's own, so the run goes on as for a skip; the plugin's report hook tells it
apart by its type and records outcome ``unsupported`` with the features and the evidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

from _pytest.outcomes import Skipped

from servegate.targets import Decision, Target


# pytest.skip.Exception is this class; mypy sees only the public alias's function type
class Unsupported(Skipped):
    """Raised (through :func:`unsupported`) when a check cannot run on the target."""

    def __init__(
        self, features: tuple[str, ...], reason: str, decisions: tuple[Decision, ...] = ()
    ) -> None:
        super().__init__(msg=reason, allow_module_level=True)
        self.features = features
        self.reason = reason
        self.decisions = decisions


def unsupported(target: Target, features: Iterable[str] | str, why: str | None = None) -> NoReturn:
    """Stop the running check as *unsupported*: ``target`` lacks ``features``; ``why`` says more
    than "lacks" where the check knows it (e.g. "serves no fill-mask model"). The discovery
    decisions about the features go with it as evidence."""
    names = (features,) if isinstance(features, str) else tuple(features)
    decisions = tuple(d for d in (target.decision(f) for f in names) if d is not None)
    reason = why or f"{target.name} lacks feature(s) {', '.join(names)}"
    if why:
        reason = f"{target.name}: {why}" if not why.startswith(target.name) else why
    raise Unsupported(names, reason, decisions)
