"""A profile's result for one target, from the checks of a run.

Modelled on Gateway API's conformance profiles. A check belongs to a profile when every
feature it needs (its marker's, plus its task's) is one of the profile's; it is a *core* check
when they are all core features.

- **failure**: the target lacks a core feature, or a check of the profile failed or errored:
  evidence that it does not conform.
- **partial**: nothing failed, but not everything could be shown: a core check could not run
  for want of something the profile's core promises (no model's metadata gave a request to
  check, say), a check was skipped, or no check of the profile ran at all. A gate asking for
  the profile still refuses it. A core check that could not run for want of an extended
  feature (servegate's numeric echo model, a model of some task) counts as that feature's
  check: unsupported, with its evidence.
- **success**: otherwise. Expected deviations (known upstream bugs, listed per runtime) do not
  count against it, and checks of extended features the target lacks are left out (listed as
  unsupported extended features).
"""

from __future__ import annotations

from collections.abc import Iterable

from servegate.features import PROFILES, Profile, case_features
from servegate.report.schema import Case, Counts, ProfileResult

#: how many check names a one-line reason lists before "and N more"
REASON_NAMES = 3


def _names(cases: list[Case]) -> str:
    shown = ", ".join(c.name for c in cases[:REASON_NAMES])
    more = len(cases) - REASON_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


def evaluate_profile(
    profile: Profile,
    cases: Iterable[Case],
    features: Iterable[str],
    *,
    requested: bool = False,
    error: str = "",
) -> ProfileResult:
    """The result of ``profile`` for a target supporting ``features`` given its checks;
    ``error`` says why the target could not be tested at all (the profile is then a failure)."""
    have = frozenset(features)
    members = [c for c in cases if profile.covers(case_features(c.features, c.task))]
    core = [c for c in members if profile.is_core(case_features(c.features, c.task))]
    core_ids = {id(c) for c in core}
    failed = [c for c in members if c.outcome in ("failed", "error")]
    # a core check that could not run leaves the profile unproven, unless what it lacked is an
    # extended feature of the profile (a model of some task, an encoding): then it is one more
    # check of an extended feature the target does not offer, said with its evidence
    core_unsupported = [
        c
        for c in core
        if c.outcome == "unsupported"
        and not (
            c.unsupported is not None
            and c.unsupported.features
            and set(c.unsupported.features) <= profile.extended
        )
    ]
    skipped = [c for c in members if c.outcome == "skipped"]
    ran = [c for c in members if c.outcome in ("passed", "expected-deviation", "failed", "error")]
    missing_core = sorted(profile.core - have)

    if error:
        result, reason = "failure", f"the target could not be tested: {error}"
    elif missing_core:
        result, reason = "failure", f"core feature(s) {', '.join(missing_core)} not supported"
    elif failed:
        result, reason = "failure", f"{len(failed)} check(s) failed: {_names(failed)}"
    elif core_unsupported:
        result = "partial"
        reason = f"{len(core_unsupported)} core check(s) could not run: {_names(core_unsupported)}"
    elif skipped:
        result, reason = "partial", f"{len(skipped)} check(s) skipped: {_names(skipped)}"
    elif not ran:
        result, reason = "partial", "no check of this profile ran"
    else:
        result, reason = "success", ""

    not_run = [
        c
        for c in members
        if c.outcome in ("failed", "error", "skipped")
        or (c.outcome == "unsupported" and id(c) in core_ids)
    ]
    return ProfileResult(
        name=profile.name,
        description=profile.description,
        result=result,  # type: ignore[arg-type]
        reason=reason,
        requested=requested,
        counts=Counts.of([c.outcome for c in members]),
        core_features=sorted(profile.core),
        supported_extended=sorted(profile.extended & have),
        unsupported_extended=sorted(profile.extended - have),
        missing_core=missing_core,
        failed_checks=[c.name for c in not_run],
    )


def profiles_for(features: Iterable[str], requested: Iterable[str]) -> list[str]:
    """The profiles a report shows: those requested, else those whose core the target has."""
    wanted = list(requested)
    if wanted:
        return wanted
    have = frozenset(features)
    return [name for name, profile in PROFILES.items() if profile.core <= have]


def evaluate_profiles(
    cases: list[Case], features: Iterable[str], requested: Iterable[str], *, error: str = ""
) -> list[ProfileResult]:
    have = frozenset(features)
    asked = list(requested)
    return [
        evaluate_profile(PROFILES[name], cases, have, requested=name in asked, error=error)
        for name in profiles_for(have, asked)
    ]
