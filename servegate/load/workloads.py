"""A workload for the OpenAI streaming scenario: the prompts, how long each is, how many tokens
each request asks for, and what came back.

A workload is built once per Locust process from the options (seeded, so every process and
every run gets the same prompts). Its requests ask for ``max_tokens`` and, where the server
takes them, hold the output to that length with ``ignore_eos`` and ``min_tokens`` (vLLM's
sampling parameters; other servers may refuse them, and the result says so). The result's
``workload`` block reports the input and output lengths asked for and the ones the server
reported, and flags a server that did not hold the output length.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from servegate.errors import ServegateError
from servegate.load.lengths import Lengths
from servegate.load.metrics import summarize
from servegate.load.prompt_files import FilePrompt, read_prompt_file
from servegate.load.tokens import TokenCounter

#: how output lengths are held: "auto" sends the hold fields where a probe shows the server
#: takes them, "on" always sends them, "off" never
HOLD_MODES = ("auto", "on", "off")
HOLD_FIELDS = ("ignore_eos", "min_tokens")

#: words of the synthetic prompts made without a tokenizer (about one token each in common
#: BPE vocabularies; the lengths are then approximate and the result says so)
FALLBACK_WORDS = (
    "time",
    "year",
    "people",
    "way",
    "day",
    "man",
    "thing",
    "woman",
    "life",
    "child",
    "world",
    "school",
    "state",
    "family",
    "student",
    "group",
    "country",
    "problem",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "company",
    "system",
    "program",
    "question",
    "work",
    "number",
    "night",
    "point",
    "home",
    "water",
    "room",
    "mother",
    "area",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "study",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "house",
    "service",
    "friend",
    "father",
    "power",
    "hour",
    "game",
    "line",
    "end",
    "member",
    "law",
    "car",
    "city",
    "name",
    "team",
    "minute",
    "idea",
    "kid",
    "body",
    "information",
    "back",
    "face",
)


class WorkloadError(ServegateError):
    """Workload options that do not describe a workload."""


@dataclass(frozen=True)
class Prompt:
    """One request of the workload."""

    prompt: str
    messages: tuple[dict[str, str], ...]
    #: output tokens asked for
    max_tokens: int
    #: input tokens as the tokenizer counts the prompt (None without a tokenizer)
    input_tokens: int | None


@dataclass(frozen=True)
class WorkloadSpec:
    """What the options ask for."""

    input_len: Lengths | None = None
    output_len: Lengths | None = None
    num_prompts: int | None = None
    prompts_file: str | None = None
    tokenizer: str | None = None
    seed: int = 0
    hold: str = "auto"
    send_each_once: bool = False

    def __post_init__(self) -> None:
        if self.hold not in HOLD_MODES:
            raise WorkloadError(f"--hold-output {self.hold!r}: expected one of {HOLD_MODES}")
        if self.num_prompts is not None and self.num_prompts < 1:
            raise WorkloadError(f"--num-prompts {self.num_prompts}: must be at least 1")
        if self.prompts_file and self.input_len is not None:
            raise WorkloadError(
                "--input-len makes synthetic prompts; --prompts brings its own: give one"
            )

    @property
    def active(self) -> bool:
        """Whether any workload option was given (else the scenario keeps its stored body)."""
        return bool(self.input_len or self.output_len or self.prompts_file or self.num_prompts)


@dataclass
class Workload:
    """The prompts of a run and how they are asked."""

    spec: WorkloadSpec
    prompts: list[Prompt]
    counter: TokenCounter | None
    source: str
    #: the hold fields sent with every request (empty when not held)
    hold_fields: dict[str, Any] = field(default_factory=dict)
    #: why the output length is not held, when it is not
    hold_note: str | None = None
    _next: int = 0

    @property
    def lengths_exact(self) -> bool:
        return self.counter is not None

    def take(self) -> Prompt | None:
        """The next prompt: in order, cycling, or None once each was sent with send_each_once."""
        if self.spec.send_each_once and self._next >= len(self.prompts):
            return None
        prompt = self.prompts[self._next % len(self.prompts)]
        self._next += 1
        return prompt

    @property
    def budget(self) -> int | None:
        """Requests the run sends in all (send_each_once), else None."""
        return len(self.prompts) if self.spec.send_each_once else None

    def body(self, endpoint: str, prompt: Prompt, model: str) -> dict[str, Any]:
        """The streamed request body for ``endpoint`` ("completions" or "chat/completions")."""
        body: dict[str, Any] = {"model": model}
        if endpoint == "chat/completions":
            body["messages"] = [dict(m) for m in prompt.messages]
        else:
            body["prompt"] = prompt.prompt
        body["max_tokens"] = prompt.max_tokens
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        for name, value in self.hold_fields.items():
            body[name] = prompt.max_tokens if value == "max_tokens" else value
        return body

    def describe(self) -> dict[str, Any]:
        """The options side of the result's ``workload`` block."""
        spec = self.spec
        return {
            "source": self.source,
            "prompts": len(self.prompts),
            "seed": spec.seed,
            "input_len": str(spec.input_len) if spec.input_len else None,
            "output_len": str(spec.output_len) if spec.output_len else None,
            "tokenizer": str(self.counter.path) if self.counter else None,
            "lengths": "exact (counted with the tokenizer)"
            if self.counter
            else "approximate (no --tokenizer: words, about one token each)",
            "hold_output": {
                "mode": spec.hold,
                "sent": sorted(self.hold_fields),
                "note": self.hold_note,
            },
            "send_each_once": spec.send_each_once,
        }


def hold_fields(on: bool) -> dict[str, Any]:
    """The fields that hold the output length to ``max_tokens`` ("max_tokens" stands for the
    request's own)."""
    return {"ignore_eos": True, "min_tokens": "max_tokens"} if on else {}


#: lengths when the options give none (vllm bench serve's random dataset asks for more; these
#: fit the small context of test models)
DEFAULT_LENGTH = Lengths("fixed", low=32, high=32)
DEFAULT_PROMPTS = 100


def draw_lengths(spec: WorkloadSpec) -> list[tuple[int, int]]:
    """(input, output) tokens of each synthetic prompt, drawn from their own seeded stream (so
    the text drawn beside them does not move them)."""
    rng = random.Random(f"lengths-{spec.seed}")
    inputs, outputs = spec.input_len or DEFAULT_LENGTH, spec.output_len or DEFAULT_LENGTH
    return [
        (inputs.sample(rng), outputs.sample(rng))
        for _ in range(spec.num_prompts or DEFAULT_PROMPTS)
    ]


def build(spec: WorkloadSpec) -> Workload:
    """The prompts the spec describes (deterministic in its seed)."""
    counter = TokenCounter.load(spec.tokenizer) if spec.tokenizer else None
    rng = random.Random(f"text-{spec.seed}")
    output = spec.output_len
    if spec.prompts_file:
        rows = read_prompt_file(spec.prompts_file)
        if spec.num_prompts:
            rows = [rows[i % len(rows)] for i in range(spec.num_prompts)]
        prompts = [_from_file(row, output, counter, rng) for row in rows]
        source = f"file {spec.prompts_file}"
    else:
        pool = counter.ordinary_ids() if counter else None
        prompts = []
        for length, out in draw_lengths(spec):
            if counter is not None:
                text = counter.prompt(length, rng, pool)
                counted: int | None = counter.count(text)
            else:
                text = " ".join(rng.choice(FALLBACK_WORDS) for _ in range(length))
                counted = None
            prompts.append(Prompt(text, ({"role": "user", "content": text},), out, counted))
        source = "synthetic"
    return Workload(
        spec=spec,
        prompts=prompts,
        counter=counter,
        source=source,
        hold_fields=hold_fields(spec.hold == "on"),
    )


def _from_file(
    row: FilePrompt, output: Lengths | None, counter: TokenCounter | None, rng: random.Random
) -> Prompt:
    if output is not None:
        max_tokens = output.sample(rng)
    elif row.max_tokens is not None:
        max_tokens = row.max_tokens
    elif row.reply is not None:
        max_tokens = max(1, counter.count(row.reply) if counter else len(row.reply.split()))
    else:
        raise WorkloadError(
            "a prompt file row gives no output length (no max_tokens, no ShareGPT reply): "
            "give --output-len"
        )
    counted = counter.count(row.prompt) if counter else None
    return Prompt(row.prompt, row.messages, max_tokens, counted)


# ---- what came back ------------------------------------------------------------------------


@dataclass
class WorkloadStats:
    """Per request: tokens asked for and seen, and when it was sent and answered.

    Mergeable across Locust workers (drain on the worker, merge on the master).
    """

    requested: list[int] = field(default_factory=list)
    achieved: list[int] = field(default_factory=list)
    #: "usage", "tokenizer" or "chunks": where each achieved count came from
    counted_by: list[str] = field(default_factory=list)
    planned_input: list[int] = field(default_factory=list)
    server_input: list[int] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    failed: int = 0

    def add(
        self,
        prompt: Prompt,
        achieved: int,
        counted_by: str,
        server_input: int | None,
        sent: float,
        answered: float,
    ) -> None:
        """One answered request; times are ``time.time()`` seconds."""
        self.requested.append(prompt.max_tokens)
        self.achieved.append(achieved)
        self.counted_by.append(counted_by)
        if prompt.input_tokens is not None:
            self.planned_input.append(prompt.input_tokens)
        if server_input is not None:
            self.server_input.append(server_input)
        self.sent.append(sent)
        self.answered.append(answered)

    def fail(self, sent: float) -> None:
        self.failed += 1
        self.sent.append(sent)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, list) else v for k, v in self.__dict__.items()}

    def drain(self) -> dict[str, Any]:
        out = self.to_dict()
        self.__init__()  # type: ignore[misc]
        return out

    def merge(self, other: Mapping[str, Any]) -> None:
        for key, value in other.items():
            if isinstance(value, list):
                getattr(self, key).extend(value)
        self.failed += int(other.get("failed", 0))


def report(workload: Workload, stats: WorkloadStats) -> dict[str, Any]:
    """The result's ``workload`` block: what was asked, what came back, and the flags."""
    flags = []
    short = sum(1 for r, a in zip(stats.requested, stats.achieved, strict=True) if a < r)
    long = sum(1 for r, a in zip(stats.requested, stats.achieved, strict=True) if a > r)
    answered = len(stats.achieved)
    held: bool | None = None
    if answered:
        held = short == 0 and long == 0
    if held is False:
        if workload.hold_fields:
            why = "the requests carried " + " and ".join(sorted(workload.hold_fields))
        else:
            why = workload.hold_note or "no hold field was sent (--hold-output off)"
        flags.append(
            {
                "name": "output_not_held",
                "detail": f"{short} of {answered} answers were shorter and {long} longer than "
                f"the max_tokens asked for ({why})",
            }
        )
    if not workload.lengths_exact:
        flags.append(
            {
                "name": "approximate_lengths",
                "detail": "no --tokenizer: prompt lengths are words, not tokens, and output "
                "tokens without usage are counted as chunks",
            }
        )
    span = _span(stats)
    return {
        **workload.describe(),
        "requests": answered + stats.failed,
        "failed": stats.failed,
        "input_tokens": {
            "planned": _lengths(stats.planned_input),
            "server": _lengths(stats.server_input),
        },
        "output_tokens": {
            "requested": _lengths(stats.requested),
            "achieved": _lengths(stats.achieved),
            "counted_by": {k: stats.counted_by.count(k) for k in sorted(set(stats.counted_by))},
            "shorter": short,
            "longer": long,
        },
        "output_held": held,
        # first send to last answer, as vllm bench serve times its run
        "span_s": span,
        "requests_per_s": answered / span if span else None,
        "output_tokens_per_s": sum(stats.achieved) / span if span else None,
        "flags": flags,
    }


def _span(stats: WorkloadStats) -> float | None:
    if not stats.sent or not stats.answered:
        return None
    return max(stats.answered) - min(stats.sent)


def _lengths(values: Sequence[int]) -> dict[str, Any]:
    out = summarize([float(v) for v in values])
    out["total"] = sum(values)
    return out


def markdown_lines(block: Mapping[str, Any]) -> list[str]:
    """The workload's lines in a run's Markdown summary."""
    out = [
        f"Workload: {block['source']}, {block['prompts']} prompts, input "
        f"{block.get('input_len') or 'from the file'}, output "
        f"{block.get('output_len') or 'from the file'}; lengths {block['lengths']}; output "
        f"held with {', '.join(block['hold_output']['sent']) or 'nothing'}."
    ]
    achieved = block["output_tokens"]["achieved"]
    requested = block["output_tokens"]["requested"]
    if achieved["count"]:
        out.append(
            f"Output tokens asked p50 {requested['p50']:.0f} (total {requested['total']}), "
            f"seen p50 {achieved['p50']:.0f} (total {achieved['total']}, min "
            f"{achieved['min']:.0f}, max {achieved['max']:.0f})."
        )
    out += [f"- **{f['name']}**: {f['detail']}" for f in block["flags"]]
    return out
