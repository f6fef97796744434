"""The Locust side of workloads: the options, one workload per process, the probe that decides
whether output lengths can be held, and the ``workload`` block of the result.

Imported by loadtests/openai_stream.py (the only scenario that sends token workloads).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from gevent.lock import Semaphore
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from servegate.errors import ServegateError, Unreachable
from servegate.load import locust_plugin
from servegate.load.lengths import parse_lengths
from servegate.load.scenario import ScenarioOptions
from servegate.load.workloads import (
    HOLD_MODES,
    Prompt,
    Workload,
    WorkloadError,
    WorkloadSpec,
    WorkloadStats,
    build,
    hold_fields,
    report,
)
from servegate.protocols.exchange import excerpt
from servegate.protocols.openai import OpenAIClient
from servegate.targets import Connection

log = logging.getLogger("servegate.load")

#: max_tokens of the probe that asks whether the hold fields are taken
PROBE_TOKENS = 2
#: which chunks time a stream (--stream-timing): servegate's own definitions, or vllm bench
#: serve's (every chunk carrying a choice is a token arrival, even with empty text, and E2E
#: ends at the last such chunk instead of the end of the stream)
STREAM_TIMINGS = ("servegate", "vllm")


class _ProcessState:
    """The workload of this Locust process and what its requests saw."""

    def __init__(self) -> None:
        self.workload: Workload | None = None
        self.spec: WorkloadSpec | None = None
        self.stats = WorkloadStats()
        self.lock = Semaphore()
        self.probed = False
        self.completed = 0


STATE = _ProcessState()


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument(
        "--input-len",
        default="",
        include_in_web_ui=True,
        help="synthetic prompts of this many tokens: N, uniform:A-B or normal:MEAN,STD "
        "(exact with --tokenizer, else words)",
    )
    parser.add_argument(
        "--output-len",
        default="",
        include_in_web_ui=True,
        help="max_tokens of each request: N, uniform:A-B or normal:MEAN,STD "
        "(default 32, or a prompt file's own)",
    )
    parser.add_argument(
        "--num-prompts",
        type=int,
        default=0,
        help="prompts in the workload (synthetic: default 100; a prompt file: its first N, "
        "repeated if it has fewer)",
    )
    parser.add_argument(
        "--prompts",
        default="",
        help="prompt file: JSONL of {prompt} or {messages}, or ShareGPT conversations "
        "(JSONL or a JSON array)",
    )
    parser.add_argument(
        "--tokenizer",
        default="",
        help="the served model's tokenizer: a model folder holding tokenizer.json, or the file; "
        "without it lengths are approximate",
    )
    parser.add_argument(
        "--workload-seed",
        type=int,
        default=0,
        help="seed of the synthetic prompts and sampled lengths",
    )
    parser.add_argument(
        "--hold-output",
        default="auto",
        choices=list(HOLD_MODES),
        help="send ignore_eos and min_tokens so each answer is max_tokens long: auto (where a "
        "probe shows the server takes them), on, off",
    )
    parser.add_argument(
        "--stream-timing",
        default="servegate",
        choices=list(STREAM_TIMINGS),
        help="servegate: a token arrives with each chunk that has text, E2E ends with the "
        "stream; vllm: vllm bench serve's definitions (every chunk with a choice, E2E at the "
        "last one)",
    )
    parser.add_argument(
        "--send-each-once",
        action="store_true",
        default=False,
        help="send every prompt once, in order, then end the run (one process only)",
    )


def vllm_timing(environment: Environment) -> bool:
    """Whether the streams are timed with vllm bench serve's definitions."""
    return getattr(environment.parsed_options, "stream_timing", "servegate") == "vllm"


def spec_from(parsed: Any) -> WorkloadSpec:
    """The workload options, checked (one line per problem)."""
    return WorkloadSpec(
        input_len=parse_lengths(parsed.input_len, "--input-len")
        if getattr(parsed, "input_len", "")
        else None,
        output_len=parse_lengths(parsed.output_len, "--output-len")
        if getattr(parsed, "output_len", "")
        else None,
        num_prompts=getattr(parsed, "num_prompts", 0) or None,
        prompts_file=getattr(parsed, "prompts", "") or None,
        tokenizer=getattr(parsed, "tokenizer", "") or None,
        seed=int(getattr(parsed, "workload_seed", 0) or 0),
        hold=getattr(parsed, "hold_output", "auto") or "auto",
        send_each_once=bool(getattr(parsed, "send_each_once", False)),
    )


def workload(
    environment: Environment, opts: ScenarioOptions, endpoint: str, probe: bool = True
) -> Workload | None:
    """This process's workload, built once; None when no workload option is set.

    With ``probe`` (and --hold-output auto), the first call that asks also probes whether the
    server takes the hold fields; the preflight builds without probing first, so that a wrong
    model or route is reported as such and not as refused hold fields.
    """
    with STATE.lock:
        if STATE.spec is None:
            STATE.spec = spec_from(environment.parsed_options)
        if not STATE.spec.active:
            return None
        if STATE.workload is None:
            if STATE.spec.send_each_once and isinstance(
                environment.runner, MasterRunner | WorkerRunner
            ):
                raise WorkloadError("--send-each-once runs in one process (no --processes)")
            STATE.workload = build(STATE.spec)
        if probe and not STATE.probed and STATE.spec.hold == "auto":
            _probe_hold(environment.host, opts, STATE.workload, endpoint)
            STATE.probed = True
        return STATE.workload


def _probe_hold(host: str | None, opts: ScenarioOptions, built: Workload, endpoint: str) -> None:
    """Send one short request with the hold fields: a 2xx keeps them, a 4xx drops them (and the
    result says why), anything else stops the run (a 5xx is no evidence either way)."""
    if not host:
        raise WorkloadError("no --host given: the target's base URL")
    built.hold_fields = hold_fields(True)
    first = built.prompts[0]
    probe = Prompt(first.prompt, first.messages, PROBE_TOKENS, first.input_tokens)
    client = OpenAIClient(
        host, Connection(headers=opts.headers, timeout=60.0), api_base=opts.openai_base
    )
    try:
        stream = client.stream_all(endpoint, built.body(endpoint, probe, opts.need_model()))
    except Unreachable as exc:
        raise WorkloadError(f"target {host} is down or unreachable: {exc}") from None
    finally:
        client.close()
    status = stream.reply.status
    if 200 <= status < 300:
        return
    said = excerpt(stream.reply.exchange.response_body, 200)
    if 400 <= status < 500:
        built.hold_fields = {}
        built.hold_note = f"the server refused ignore_eos/min_tokens: HTTP {status}: {said}"
        log.warning("servegate: output lengths not held: %s", built.hold_note)
        return
    raise WorkloadError(
        f"the probe with ignore_eos/min_tokens got HTTP {status} ({said}); a server error says "
        "nothing about whether they are supported"
    )


def record(
    environment: Environment,
    prompt: Prompt,
    *,
    sent: float,
    achieved: int | None,
    counted_by: str,
    server_input: int | None,
    error: bool,
) -> None:
    """One request of the workload ended (``sent`` in time.time() seconds); with
    --send-each-once, the last one ends the run."""
    now = time.time()
    if error or achieved is None:
        STATE.stats.fail(sent)
    else:
        STATE.stats.add(prompt, achieved, counted_by, server_input, sent, now)
    STATE.completed += 1
    built = STATE.workload
    if built is not None and built.budget is not None and STATE.completed >= built.budget:
        runner = environment.runner
        if runner is not None:
            log.info("servegate: every prompt sent once (%d requests): ending", built.budget)
            gevent.spawn(runner.quit)


def result_section() -> dict[str, Any] | None:
    """The ``workload`` block of the result (None when the run had no workload)."""
    if STATE.workload is None:
        return None
    return report(STATE.workload, STATE.stats)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    STATE.__init__()  # type: ignore[misc]  # a fresh state per Environment (tests make several)
    locust_plugin.RESULT_SECTIONS["workload"] = result_section
    if environment.parsed_options is None or isinstance(environment.runner, WorkerRunner):
        return
    try:
        spec_from(environment.parsed_options)
    except ServegateError as exc:
        # the plugin's own init listener has run: stop the run the same way it does
        log.error("servegate: %s", exc)
        environment.process_exit_code = locust_plugin.EXIT_ABORTED
        locust_plugin.STATE.aborted = str(exc)


@events.report_to_master.add_listener
def _to_master(client_id: str, data: dict, **_: Any) -> None:
    data["servegate_workload"] = STATE.stats.drain()


@events.worker_report.add_listener
def _from_worker(client_id: str, data: dict, **_: Any) -> None:
    part = data.get("servegate_workload")
    if part:
        STATE.stats.merge(part)
