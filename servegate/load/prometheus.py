"""A reader of the Prometheus text exposition format (version 0.0.4), enough for scraping a
server's /metrics: samples with their labels and values, and the declared metric types.

Format: ``# TYPE name kind`` and ``# HELP`` lines, other ``#`` lines are comments; a sample is
``name{label="value",...} value [timestamp]``, label values escape ``\\``, ``"`` and newline.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field

from servegate.errors import ServegateError


class PrometheusFormatError(ServegateError):
    """Text that is not the Prometheus exposition format."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass
class Exposition:
    samples: list[Sample] = field(default_factory=list)
    #: declared type per metric family: counter, gauge, histogram, summary, untyped
    types: dict[str, str] = field(default_factory=dict)

    def values(self, name: str) -> list[float]:
        """Every value of the samples named ``name`` (one per label set)."""
        return [s.value for s in self.samples if s.name == name]

    def names(self) -> set[str]:
        return {s.name for s in self.samples}


_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def _labels(text: str, line_no: int) -> tuple[tuple[str, str], ...]:
    """``a="x",b="y"`` (the inside of the braces) as pairs."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " ,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0 or eq + 1 >= n or text[eq + 1] != '"':
            raise PrometheusFormatError(f"line {line_no}: malformed labels {{{text}}}")
        key = text[i:eq].strip()
        j, value = eq + 2, []
        while j < n and text[j] != '"':
            if text[j] == "\\" and j + 1 < n:
                value.append(_ESCAPES.get(text[j + 1], "\\" + text[j + 1]))
                j += 2
            else:
                value.append(text[j])
                j += 1
        if j >= n:
            raise PrometheusFormatError(f"line {line_no}: unterminated label value")
        out.append((key, "".join(value)))
        i = j + 1
    return tuple(out)


def _value(text: str, line_no: int) -> float:
    word = text.strip()
    special = {"+inf": math.inf, "-inf": -math.inf, "nan": math.nan}
    if word.lower() in special:
        return special[word.lower()]
    try:
        return float(word)
    except ValueError:
        raise PrometheusFormatError(f"line {line_no}: not a number: {word!r}") from None


def parse(text: str, only: Collection[str] | None = None) -> Exposition:
    """Every sample and type declaration of a /metrics page (with ``only``: the samples of
    those names); PrometheusFormatError (one line, naming the line) for text that is not the
    format."""
    out = Exposition()
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line[1:].split(None, 3)
            if len(parts) >= 3 and parts[0] == "TYPE":
                out.types[parts[1]] = parts[2]
            continue
        brace = line.find("{")
        space = line.find(" ")
        if only is not None:
            # a scrape runs inside the load generator's event loop: skip the labels of the
            # hundreds of samples no series needs, cheaply
            end = brace if brace >= 0 and (space < 0 or brace < space) else space
            if line[: end if end >= 0 else len(line)] not in only:
                continue
        if brace >= 0 and (space < 0 or brace < space):
            close = line.rfind("}")
            if close < brace:
                raise PrometheusFormatError(f"line {line_no}: unclosed labels")
            name, labels = line[:brace], _labels(line[brace + 1 : close], line_no)
            rest = line[close + 1 :].split()
        else:
            fields = line.split()
            name, labels, rest = fields[0], (), fields[1:]
        if not rest:
            raise PrometheusFormatError(f"line {line_no}: sample {name!r} has no value")
        out.samples.append(Sample(name.strip(), labels, _value(rest[0], line_no)))
    return out
