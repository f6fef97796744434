"""``servegate load vs-vllm``: servegate's streaming scenario and ``vllm bench serve`` against
the same vLLM server with the same workload and load, and one table of both.

The server is ``--target`` or, without it, the vLLM reference server (``servegate serve vllm``)
started for the comparison and stopped after it. Both sides send random prompts of the same
token lengths (counted with the model's tokenizer), the same number of them, at the same load:
closed loop, ``--max-concurrency`` requests in flight, each prompt sent once (vLLM:
``--max-concurrency N --request-rate inf``; servegate: N users and ``--send-each-once``).
A request-rate mode needs only :class:`~servegate.load.vllm_bench.Load` with a rate here and
the Locust plugin's open-loop options on servegate's side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from servegate.entry.commands.common import log as _log
from servegate.entry.commands.common import repo_root
from servegate.errors import ServegateError
from servegate.load import side_by_side, vllm_bench
from servegate.load.vllm_bench import BenchWorkload, Load

#: the Locust run's time limit (it ends when every prompt was sent; this only bounds a hang)
RUN_LIMIT_S = 900
BENCH_TIMEOUT_S = 1200
ORDERS = ("servegate,vllm", "vllm,servegate")


#: each vs-vllm option: (flags, type, default, help). Registered with no default (None), so
#: that ``servegate load run`` can hand any of them it was given on to Locust, whose
#: streaming scenario shares several names (--tokenizer, --input-len, --openai-base, ...)
OPTIONS: tuple[tuple[str, type, Any, str], ...] = (
    ("--target", str, "", "base URL of a running vLLM server (default: start the vLLM reference)"),
    ("--served-model", str, "", "model name on --target (default: the reference's tiny Llama)"),
    ("--tokenizer", str, "", "the model's folder (or tokenizer.json); needed with --target"),
    ("--openai-base", str, "/v1", "path of the OpenAI routes on --target (default /v1)"),
    (
        "--max-concurrency",
        int,
        4,
        "requests in flight (closed loop), on both sides (default 4); sweep --rates: the "
        "senders per point (default 100)",
    ),
    ("--num-prompts", int, 64, "prompts, each sent once (default 64)"),
    (
        "--request-rate",
        float,
        None,
        "open loop: requests/s on both sides (vLLM's --request-rate, servegate's --rate), "
        "--max-concurrency then caps the requests in flight (default: closed loop)",
    ),
    ("--burstiness", float, 1.0, "with --request-rate: gamma shape of the gaps, 1 = Poisson"),
    ("--input-len", int, 32, "prompt length in tokens (default 32)"),
    ("--output-len", int, 32, "output tokens asked, held with ignore_eos (default 32)"),
    ("--workload-seed", int, 0, "seed of both sides' prompts (default 0)"),
    ("--warmup", int, 4, "requests sent before the runs, so neither meets a cold server (4)"),
    ("--order", str, ORDERS[0], f"which run goes first, {' or '.join(ORDERS)} (never overlap)"),
    ("--rounds", int, 1, "pairs of runs, the order alternating; figures are medians (default 1)"),
    ("--vllm-python", str, "", "interpreter with vLLM installed (default: the reference's env)"),
    (
        "--name",
        str,
        "vs-vllm",
        "results go to reports/load-<name>.* (default vs-vllm; sweep: "
        "sweep-<rate|concurrency>-<scenario>)",
    ),
)


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_arguments(load: argparse.ArgumentParser) -> None:
    """The options of ``servegate load vs-vllm`` (an argument group of ``servegate load``)."""
    group = load.add_argument_group("vs-vllm (servegate beside vllm bench serve)")
    for flag, kind, _, text in OPTIONS:
        choices = ORDERS if flag == "--order" else None
        group.add_argument(flag, type=kind, default=None, choices=choices, help=f"vs-vllm: {text}")


def given_options(args: argparse.Namespace) -> list[str]:
    """The vs-vllm options given on the command line, as written (for ``load run`` to pass on
    to Locust)."""
    out: list[str] = []
    for flag, _, _, _ in OPTIONS:
        value = getattr(args, _dest(flag), None)
        if value is not None:
            out += [flag, str(value)]
    return out


def with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with every vs-vllm option not given set to its default."""
    values = dict(vars(args))
    for flag, _, default, _ in OPTIONS:
        if values.get(_dest(flag)) is None:
            values[_dest(flag)] = default
    return argparse.Namespace(**values)


def check(args: argparse.Namespace) -> None:
    """One line per bad option, before anything starts."""
    for option in ("max_concurrency", "num_prompts", "input_len", "output_len", "rounds"):
        if getattr(args, option) < 1:
            raise ServegateError(f"--{option.replace('_', '-')} must be at least 1")
    if args.request_rate is not None and not args.request_rate > 0:
        raise ServegateError("--request-rate must be above 0 (leave it out for a closed loop)")
    if not args.burstiness > 0:
        raise ServegateError("--burstiness must be above 0 (1 = Poisson)")
    if args.warmup < 0:
        raise ServegateError("--warmup must be 0 or more")
    if args.target and not (args.served_model and args.tokenizer):
        raise ServegateError(
            "--target needs --served-model and --tokenizer (both benchmarks count tokens with it)"
        )


def cmd_vs_vllm(args: argparse.Namespace) -> int:
    args = with_defaults(args)
    check(args)
    state_dir, reports_dir = Path(args.state_dir).resolve(), Path(args.reports_dir).resolve()
    server = None
    try:
        if args.target:
            url, model, tokenizer = args.target.rstrip("/"), args.served_model, args.tokenizer
            openai_base = args.openai_base
        else:
            from servegate.reference_servers.manager import prepare_fixtures, start_reference

            server = start_reference(
                "vllm",
                state_dir=state_dir,
                logs_dir=reports_dir / "logs",
                ready_timeout=420,
                log=_log,
            )
            url = server.target.http_url
            openai_base = server.target.openai_base
            (model,) = server.target.models
            fixture = prepare_fixtures(state_dir, _log).find(model)
            if fixture is None:
                raise ServegateError(f"no fixture folder for the served model {model!r}")
            tokenizer = str(fixture.path)
        python = args.vllm_python or str(_vllm_python(state_dir))
        document = side_by_side_run(
            args, url=url, openai_base=openai_base, model=model, tokenizer=tokenizer,
            python=python, reports_dir=reports_dir, state_dir=state_dir,
        )  # fmt: skip
    finally:
        if server is not None:
            server.stop()
    paths = side_by_side.write(reports_dir, document)
    for row in document["rows"]:
        _log(
            f"{row['figure']}: servegate {_f(row['servegate'])}, vLLM {_f(row['vllm'])}, "
            f"ratio {_f(row['ratio'], 3)}"
            + ("" if row["within_goal"] is not False else f" -- outside: {row['explanation']}")
        )
    _log(f"{document['within_goal']} of {document['figures']} figures within ±10%; {paths['md']}")
    return 0


def _f(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _vllm_python(state_dir: Path) -> Path:
    from servegate.reference_servers.manager import prepare_env

    return prepare_env("vllm", state_dir, _log)


def side_by_side_run(
    args: argparse.Namespace,
    *,
    url: str,
    openai_base: str,
    model: str,
    tokenizer: str,
    python: str,
    reports_dir: Path,
    state_dir: Path,
) -> dict[str, Any]:
    """Warm the server, run both benchmarks in ``args.order``, and put them side by side."""
    workload = BenchWorkload(args.num_prompts, args.input_len, args.output_len, args.workload_seed)
    load = Load(
        concurrency=args.max_concurrency, rate=args.request_rate, burstiness=args.burstiness
    )
    scratch = reports_dir / "experiment-runs"
    scratch.mkdir(parents=True, exist_ok=True)
    _warm(url, openai_base, model, args.input_len, args.output_len, args.warmup)
    loadavg: dict[str, float] = {}
    ours_rounds: list[dict[str, Any]] = []
    theirs_rounds: list[vllm_bench.VllmFigures] = []
    orders: list[str] = []
    # the server's own means (vLLM's /metrics) over each run, per side
    server_view: dict[str, list[dict[str, float | None]]] = {"servegate": [], "vllm": []}
    for n in range(1, args.rounds + 1):
        order = args.order.split(",")
        if n % 2 == 0:
            order.reverse()  # alternate, so a machine drifting busier hits both sides alike
        orders.append(" then ".join(order))
        for side in order:
            loadavg[f"{side} (round {n})" if args.rounds > 1 else side] = os.getloadavg()[0]
            before = _scrape(url)
            if side == "servegate":
                _log(f"vs-vllm: round {n}: servegate, {_describe(load)}")
                doc = _run_servegate(
                    args, url, openai_base, model, tokenizer, workload, load, reports_dir,
                    state_dir, f"{args.name}-servegate-{n}",
                )  # fmt: skip
                figures = side_by_side.servegate_figures(doc)
                figures["itl_bursts"] = _bursts(scratch, doc["name"])
                ours_rounds.append(figures)
            else:
                _log(f"vs-vllm: round {n}: vllm bench serve (its import takes a while)")
                figures_vllm = _run_vllm(
                    python, url, openai_base, model, tokenizer, workload, load, scratch,
                    reports_dir, f"{args.name}-vllm-{n}.json",
                )  # fmt: skip
                theirs_rounds.append(figures_vllm)
            after = _scrape(url)
            if before is not None and after is not None:
                server_view[side].append(vllm_bench.server_means(before, after))
    context = {
        "name": args.name,
        "target": url,
        "model": model,
        "tokenizer": tokenizer,
        "workload": {
            "num_prompts": workload.num_prompts,
            "input_len": workload.input_len,
            "output_len": workload.output_len,
            "seed": workload.seed,
        },
        "load": {
            "mode": "closed" if load.rate is None else "open",
            "max_concurrency": load.concurrency,
            "request_rate": "inf" if load.rate is None else load.rate,
            "burstiness": None if load.rate is None else load.burstiness,
        },
        "load_description": _describe(load),
        "server_view": {
            side: side_by_side.median_means(views) if views else None
            for side, views in server_view.items()
        },
        "order": "; ".join(orders),
        "rounds": args.rounds,
        "warmup_requests": args.warmup,
        "loadavg": loadavg,
        "vllm_command": "python -c <vllm.benchmarks.serve add_cli_args + main> "
        + " ".join(
            vllm_bench.bench_command(
                "python",
                base_url=url,
                openai_base=openai_base,
                model=model,
                tokenizer=tokenizer,
                workload=workload,
                load=load,
                result_dir=scratch,
                result_file=f"{args.name}-vllm-1.json",
            )[3:]
        ),
    }
    if args.rounds > 1:
        context["per_round"] = [
            side_by_side.compare(o, t, {})["rows"]
            for o, t in zip(ours_rounds, theirs_rounds, strict=True)
        ]
    return side_by_side.compare(
        side_by_side.median_servegate(ours_rounds), side_by_side.median_vllm(theirs_rounds), context
    )


def _scrape(url: str) -> dict[str, tuple[float, float]] | None:
    """vLLM's latency histograms from its /metrics page; None where there is none."""
    import httpx

    try:
        reply = httpx.get(f"{url}/metrics", timeout=10.0)
    except httpx.HTTPError:
        return None
    if reply.status_code != 200:
        return None
    return vllm_bench.histogram_totals(reply.text) or None


def _bursts(scratch: Path, name: str) -> float | None:
    """Share of servegate's ITL gaps under 1 ms, from the run's raw samples."""
    import csv

    from servegate.load.results import paths_for, split_metric_name

    path = paths_for(scratch, name)["samples"]
    if not path.exists():
        return None
    with path.open(newline="", encoding="utf-8") as fh:
        gaps = [
            float(row["value_ms"])
            for row in csv.DictReader(fh)
            if split_metric_name(row["metric"])[1] == "itl"
        ]
    return vllm_bench.burst_share(gaps)


def _warm(url: str, openai_base: str, model: str, input_len: int, output_len: int, n: int) -> None:
    from servegate.protocols.openai import OpenAIClient

    client = OpenAIClient(url, api_base=openai_base)
    body = {
        "model": model,
        "prompt": " ".join(["warm"] * input_len),
        "max_tokens": output_len,
        "ignore_eos": True,
    }
    try:
        for _ in range(n):
            stream = client.stream_all("completions", body)
            if stream.reply.status != 200:
                raise ServegateError(f"warm-up request failed: {stream.describe()}")
    finally:
        client.close()


def _run_servegate(
    args: argparse.Namespace,
    url: str,
    openai_base: str,
    model: str,
    tokenizer: str,
    workload: BenchWorkload,
    load: Load,
    reports_dir: Path,
    state_dir: Path,
    name: str,
) -> dict[str, Any]:
    from servegate.load.experiments import Settings, run_locust

    settings = Settings(
        loadtests=repo_root() / "loadtests",
        reports_dir=reports_dir,
        state_dir=state_dir,
        run_time_s=RUN_LIMIT_S,
        log=_log,
    )
    assert load.concurrency is not None
    arrivals: list[str] = []
    if load.rate is not None:
        # the same open loop as vLLM's: gaps of the same law, the first num_prompts arrivals,
        # at most max_concurrency in flight (the senders)
        law = "poisson" if load.burstiness == 1 else f"gamma:{load.burstiness:g}"
        arrivals = ["--rate", f"{load.rate:g}", "--arrival", law, "--seed", str(workload.seed)]
        arrivals += ["--num-requests", str(workload.num_prompts)]
    return run_locust(
        settings,
        url,
        "OpenAIStreamUser",
        "openai_stream.py",
        load.concurrency,
        name,
        [
            "--model", model,
            "--tags", "completions",
            "--openai-base", openai_base,
            "--tokenizer", tokenizer,
            "--input-len", str(workload.input_len),
            "--output-len", str(workload.output_len),
            "--num-prompts", str(workload.num_prompts),
            "--workload-seed", str(workload.seed),
            "--hold-output", "on",
            "--send-each-once",
            # the same definitions on both sides: this compares measurements, not definitions
            "--stream-timing", "vllm",
            *arrivals,
        ],
    )  # fmt: skip


def _describe(load: Load) -> str:
    if load.rate is None:
        return f"closed loop, {load.concurrency} requests in flight, each prompt sent once"
    law = "Poisson" if load.burstiness == 1 else f"gamma (burstiness {load.burstiness:g})"
    return (
        f"open loop, {load.rate:g} requests/s with {law} gaps, at most {load.concurrency} in "
        "flight, each prompt sent once"
    )


def _run_vllm(
    python: str,
    url: str,
    openai_base: str,
    model: str,
    tokenizer: str,
    workload: BenchWorkload,
    load: Load,
    scratch: Path,
    reports_dir: Path,
    result_file: str,
) -> vllm_bench.VllmFigures:
    result = scratch / result_file
    result.unlink(missing_ok=True)
    argv = vllm_bench.bench_command(
        python,
        base_url=url,
        openai_base=openai_base,
        model=model,
        tokenizer=tokenizer,
        workload=workload,
        load=load,
        result_dir=scratch,
        result_file=result_file,
    )
    log_path = reports_dir / "logs" / result_file.replace(".json", ".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as out:
        try:
            done = subprocess.run(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **vllm_bench.BENCH_ENV},
                cwd=scratch,
                timeout=BENCH_TIMEOUT_S,
            )
        except FileNotFoundError:
            raise ServegateError(f"--vllm-python {python}: no such interpreter") from None
        except subprocess.TimeoutExpired:
            raise ServegateError(
                f"vllm bench serve did not finish in {BENCH_TIMEOUT_S} s; log: {log_path}"
            ) from None
    _log(f"vs-vllm: vllm bench serve took {time.monotonic() - started:.0f} s (import included)")
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text(encoding="utf-8").splitlines()[-12:])
        raise ServegateError(f"vllm bench serve failed (exit {done.returncode}):\n{tail}")
    figures = vllm_bench.read_result(result)
    if figures.failed:
        errors = vllm_bench.failed_requests(result)
        raise ServegateError(
            f"vllm bench serve: {figures.failed} request(s) failed; first: "
            f"{(errors[0] if errors else '?').strip().splitlines()[-1]}"
        )
    return figures
