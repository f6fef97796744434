"""Token-length distributions of a workload: how long each prompt is and how many tokens each
request asks for.

Written on the command line as

- ``N`` or ``fixed:N``: always N;
- ``uniform:A-B``: a whole number from A to B, both included, equally likely;
- ``normal:MEAN,STD``: a normal draw rounded to the nearest whole number, redrawn (up to a
  bound, then clipped) while it falls below 1, so the mean stays close to MEAN for STD well
  under MEAN.

Draws come from the ``random.Random`` the caller passes: one seed, one sequence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from servegate.errors import ServegateError

KINDS = ("fixed", "uniform", "normal")
#: redraws of a normal sample below 1 before it is clipped to 1
_NORMAL_REDRAWS = 20


class LengthError(ServegateError):
    """A length distribution that does not parse."""


@dataclass(frozen=True)
class Lengths:
    """One length distribution (tokens)."""

    kind: str
    low: int = 0
    high: int = 0
    mean: float = 0.0
    std: float = 0.0

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.low}"
        if self.kind == "uniform":
            return f"uniform:{self.low}-{self.high}"
        return f"normal:{self.mean:g},{self.std:g}"

    @property
    def fixed(self) -> int | None:
        """The one length of a fixed distribution, else None."""
        return self.low if self.kind == "fixed" else None

    def sample(self, rng: random.Random) -> int:
        """One length (at least 1)."""
        if self.kind == "fixed":
            return self.low
        if self.kind == "uniform":
            return rng.randint(self.low, self.high)
        for _ in range(_NORMAL_REDRAWS):
            value = round(rng.gauss(self.mean, self.std))
            if value >= 1:
                return value
        return 1


def parse_lengths(text: str, option: str = "--input-len") -> Lengths:
    """``N``, ``fixed:N``, ``uniform:A-B`` or ``normal:MEAN,STD``; one line naming the problem."""
    raw = text.strip().lower()
    kind, sep, arg = raw.partition(":")
    if not sep:
        kind, arg = "fixed", raw
    usage = f"{option} {text!r}: expected N, fixed:N, uniform:A-B or normal:MEAN,STD"
    if kind not in KINDS:
        raise LengthError(usage)
    try:
        if kind == "fixed":
            n = int(arg)
            if n < 1:
                raise LengthError(f"{option} {text!r}: a length is at least 1 token")
            return Lengths("fixed", low=n, high=n)
        if kind == "uniform":
            a, dash, b = arg.partition("-")
            if not dash:
                raise LengthError(usage)
            low, high = int(a), int(b)
            if low < 1 or high < low:
                raise LengthError(f"{option} {text!r}: need 1 <= A <= B")
            return Lengths("uniform", low=low, high=high)
        m, comma, s = arg.partition(",")
        if not comma:
            raise LengthError(usage)
        mean, std = float(m), float(s)
        if not mean >= 1 or not std >= 0:
            raise LengthError(f"{option} {text!r}: need MEAN >= 1 and STD >= 0")
        return Lengths("normal", mean=mean, std=std)
    except ValueError:
        raise LengthError(usage) from None
