"""`servegate load vs-vllm`: the `vllm bench serve` command it builds, reading vLLM's saved
result (a recorded file in the shape vLLM 0.32 writes), the side-by-side table with its
ratios and reasons, the option checks, and one real run against the vLLM reference (slow)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from servegate.entry.cli import main as servegate_main
from servegate.load import side_by_side, vllm_bench
from servegate.load.vllm_bench import BenchWorkload, Load, VllmResultError, read_result
from servegate.report.load import read_load_results

ROOT = Path(__file__).resolve().parents[1]
RECORDED = Path(__file__).parent / "data" / "vllm_bench_serve_result.json"


def test_reads_the_figures_of_a_saved_vllm_result() -> None:
    figures = read_result(RECORDED)
    assert figures.completed == 4 and figures.failed == 0
    assert figures.duration_s == 0.25
    assert figures.request_throughput == pytest.approx(16.0)
    assert figures.output_throughput == pytest.approx(80.0)
    assert figures.percentiles["ttft"][50] == pytest.approx(57.5)
    assert figures.percentiles["itl"][99] == pytest.approx(13.85)
    assert figures.percentiles["e2e"][50] == pytest.approx(102.0)
    assert figures.percentiles["tpot"][50] == pytest.approx(11.125)
    # --save-detailed: every gap of every request
    assert figures.itl_samples == 16 and figures.output_lens == [5, 5, 5, 5]
    assert figures.max_concurrency == 2 and figures.request_rate == "inf"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda doc: doc.pop("p50_itl_ms"), "p50_itl_ms is None"),
        (lambda doc: doc.update(completed="4"), "completed is '4'"),
        (lambda doc: doc.update(duration=True), "duration is True"),
    ],
)
def test_a_result_without_the_figures_is_one_line(tmp_path: Path, edit, problem: str) -> None:
    doc = json.loads(RECORDED.read_text())
    edit(doc)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(VllmResultError) as caught:
        read_result(path)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_missing_or_broken_result_files(tmp_path: Path) -> None:
    with pytest.raises(VllmResultError, match="wrote no result"):
        read_result(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(VllmResultError, match="not a JSON result"):
        read_result(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(VllmResultError, match="expected a JSON object"):
        read_result(tmp_path / "list.json")


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_bench_command_runs_vllms_own_parser_and_main_with_the_same_workload(
    tmp_path: Path,
) -> None:
    """No console script: `python -c` with the benchmark's add_cli_args and main; the random
    dataset at fixed lengths, closed loop at N in flight, p50 and p99 saved in detail."""
    argv = vllm_bench.bench_command(
        "/env/bin/python",
        base_url="http://127.0.0.1:8000/",
        openai_base="/v1",
        model="m",
        tokenizer="/models/m",
        workload=BenchWorkload(num_prompts=64, input_len=32, output_len=16, seed=5),
        load=Load(concurrency=4),
        result_dir=tmp_path,
        result_file="r.json",
    )
    assert argv[:2] == ["/env/bin/python", "-c"]
    compile(argv[2], "<bench>", "exec")
    assert "from vllm.benchmarks.serve import add_cli_args, main" in argv[2]
    assert flag(argv, "--base-url") == "http://127.0.0.1:8000"
    assert flag(argv, "--endpoint") == "/v1/completions"
    assert flag(argv, "--dataset-name") == "random"
    assert flag(argv, "--random-input-len") == "32" and flag(argv, "--random-output-len") == "16"
    assert flag(argv, "--random-range-ratio") == "0"
    assert flag(argv, "--num-prompts") == "64" and flag(argv, "--seed") == "5"
    assert flag(argv, "--max-concurrency") == "4" and flag(argv, "--request-rate") == "inf"
    assert "--ignore-eos" in argv and "--save-detailed" in argv
    assert flag(argv, "--metric-percentiles") == "50,99"
    assert flag(argv, "--percentile-metrics") == "ttft,tpot,itl,e2el"
    assert flag(argv, "--result-dir") == str(tmp_path)
    assert flag(argv, "--result-filename") == "r.json"


def test_a_request_rate_maps_to_vllms_open_loop() -> None:
    assert Load(concurrency=None, rate=2.5).vllm_args() == [
        "--request-rate",
        "2.5",
        "--burstiness",
        "1",
    ]
    assert Load(concurrency=8, rate=4, burstiness=0.5).vllm_args()[-2:] == [
        "--max-concurrency",
        "8",
    ]


# ---- the side-by-side --------------------------------------------------------------------------


def servegate_run(scale: float = 1.0, itl_count: int = 16) -> dict[str, Any]:
    """A load-run document as the streaming scenario writes it, with latencies ``scale`` times
    the recorded vLLM ones."""

    def summary(p50: float, p99: float, count: int = 4) -> dict[str, Any]:
        return {"count": count, "p50": p50 * scale, "p99": p99 * scale}

    return {
        "name": "vs-vllm-servegate",
        "validity": {"valid": True, "flags": []},
        "streaming": {
            "completions stream m": {
                "ttft_ms": summary(57.5, 79.4),
                "itl_ms": summary(11.0, 13.85, itl_count),
                "tpot_ms": summary(11.125, 11.7425),
                "e2e_ms": summary(102.0, 126.37),
            }
        },
        "workload": {
            "requests": 4,
            "failed": 0,
            "span_s": 0.25 * scale,
            "requests_per_s": 16.0 / scale,
            "output_tokens_per_s": 80.0 / scale,
            "output_tokens": {"achieved": {"total": 20}},
            "output_held": True,
        },
    }


CONTEXT = {
    "name": "vs-vllm-test",
    "target": "http://127.0.0.1:8000",
    "model": "m",
    "workload": {"num_prompts": 4, "input_len": 8, "output_len": 5},
    "load_description": "closed loop, 2 requests in flight",
    "order": "servegate then vllm",
    "loadavg": {"servegate": 1.5, "vllm": 1.7},
}


def test_same_figures_are_all_within_the_goal(tmp_path: Path) -> None:
    doc = side_by_side.compare(
        side_by_side.servegate_figures(servegate_run()), read_result(RECORDED), CONTEXT
    )
    assert doc["kind"] == "vs-vllm" and doc["figures"] == 10 == doc["within_goal"]
    assert [r["figure"] for r in doc["rows"][:2]] == ["TTFT p50 (ms)", "TTFT p99 (ms)"]
    assert all(r["ratio"] == pytest.approx(1.0) and r["explanation"] is None for r in doc["rows"])
    paths = side_by_side.write(tmp_path, doc)
    text = paths["md"].read_text()
    assert "| TTFT p50 (ms) | 57.5 | 57.5 | 1 | yes |" in text
    assert "**10 of 10** within" in text and "Definitions:" in text
    # the HTML page and the gate read it as a load result
    (result,) = read_load_results(tmp_path)
    assert result.error is None and result.title == "vs-vllm-test"


def test_a_server_slower_in_one_run_explains_every_figure_it_moves() -> None:
    """All latencies 1.3x and throughput /1.3 in servegate's run: each figure outside the goal
    says the server was slower then (E2E p50 ratio), and agrees once that is taken out."""
    doc = side_by_side.compare(
        side_by_side.servegate_figures(servegate_run(scale=1.3)), read_result(RECORDED), CONTEXT
    )
    assert doc["within_goal"] == 0 and doc["server_factor"] == pytest.approx(1.3)
    for row in doc["rows"]:
        assert row["within_goal"] is False
        assert "30% slower during servegate's run (E2E p50 ratio 1.30" in row["explanation"]
        assert "this figure agrees (1.00)" in row["explanation"]
    text = side_by_side.markdown(doc)
    assert "Outside the goal, and why:" in text and "**0 of 10** within" in text


def test_the_servers_own_clock_decides_how_much_slower_it_was() -> None:
    """With vLLM's /metrics means for each run, the server factor comes from the server's own
    E2E, not from either client: here it was 1.3x slower, the client saw 1.6x, which leaves a
    ratio of 1.23 to explain; the Markdown shows both clocks side by side."""
    view = {
        "servegate": {"ttft": 60.0, "itl": 14.3, "tpot": 14.3, "e2e": 130.0},
        "vllm": {"ttft": 50.0, "itl": 11.0, "tpot": 11.0, "e2e": 100.0},
    }
    doc = side_by_side.compare(
        side_by_side.servegate_figures(servegate_run(scale=1.6)),
        read_result(RECORDED),
        {**CONTEXT, "server_view": view},
    )
    assert doc["server_factor"] == pytest.approx(1.3)
    ttft = next(r for r in doc["rows"] if r["figure"] == "TTFT p50 (ms)")
    assert (
        "vLLM's own /metrics put its mean E2E at 130 ms during servegate's run"
        in (ttft["explanation"])
    )
    assert "that leaves a ratio of 1.23" in ttft["explanation"]
    # client means (recorded vLLM: TTFT mean 61.25 ms; servegate: no mean in this run)
    assert "client adds" not in ttft["explanation"]
    ours = side_by_side.servegate_figures(servegate_run(scale=1.6))
    ours["means"] = {"ttft": 95.0, "itl": 15.0, "tpot": 15.0, "e2e": 170.0}
    doc = side_by_side.compare(ours, read_result(RECORDED), {**CONTEXT, "server_view": view})
    ttft = next(r for r in doc["rows"] if r["figure"] == "TTFT p50 (ms)")
    assert "servegate's client adds 35 ms and vLLM's 11 ms" in ttft["explanation"]
    text = side_by_side.markdown(doc)
    assert "The server's own clock" in text and "| E2E | 130.0 |" in text


def test_server_histograms_are_read_from_a_prometheus_page() -> None:
    page = (
        "# HELP vllm:e2e_request_latency_seconds Histogram\n"
        'vllm:e2e_request_latency_seconds_sum{engine="0",model_name="m"} 3.0\n'
        'vllm:e2e_request_latency_seconds_count{engine="0",model_name="m"} 10.0\n'
        'vllm:e2e_request_latency_seconds_bucket{le="1.0"} 10.0\n'
        "vllm:time_to_first_token_seconds_sum 0.5\n"
        "vllm:time_to_first_token_seconds_count 10\n"
    )
    before = vllm_bench.histogram_totals(page)
    assert before == {"e2e": (3.0, 10.0), "ttft": (0.5, 10.0)}
    after = {"e2e": (7.0, 20.0), "ttft": (1.5, 20.0)}
    means = vllm_bench.server_means(before, after)
    assert means["e2e"] == pytest.approx(400.0) and means["ttft"] == pytest.approx(100.0)
    assert means["itl"] is None and means["tpot"] is None


def test_chunk_counts_bursts_client_lag_and_p99_sample_size_are_named() -> None:
    ours = servegate_run(itl_count=12)
    ours["streaming"]["completions stream m"]["itl_ms"]["p50"] = 14.0
    ours["streaming"]["completions stream m"]["ttft_ms"]["p99"] = 120.0
    ours["validity"] = {"valid": False, "flags": [{"detail": "9 % of loop probes late"}]}
    figures = side_by_side.servegate_figures(ours)
    figures["itl_bursts"] = 0.4
    doc = side_by_side.compare(figures, read_result(RECORDED), CONTEXT)
    rows = {r["figure"]: r for r in doc["rows"]}
    itl = rows["ITL p50 (ms)"]["explanation"]
    assert "12 chunk gaps in servegate's run and 16 in vLLM's" in itl
    # the recorded result has no gap under 1 ms
    assert "40% of servegate's gaps and 0% of vLLM's are under 1 ms" in itl
    assert "servegate's client was starved in its run (9 % of loop probes late)" in itl
    ttft99 = rows["TTFT p99 (ms)"]["explanation"]
    assert "a p99 of 4 requests" in ttft99 and "client was starved" in ttft99
    assert rows["TTFT p50 (ms)"]["within_goal"] is True
    assert "servegate's run was marked **INVALID**" in side_by_side.markdown(doc)


def test_an_open_loops_throughput_names_servegates_own_draw_of_arrivals() -> None:
    ours = servegate_run(itl_count=16)
    ours["config"] = {"schedule": {"offered_rate": 4.0, "scheduled_rate": 3.2}}
    figures = side_by_side.servegate_figures(ours)
    figures["request_throughput"] = figures["request_throughput"] * 0.8  # outside the goal
    doc = side_by_side.compare(figures, read_result(RECORDED), CONTEXT)
    rows = {r["figure"]: r for r in doc["rows"]}
    text = rows["request throughput (req/s)"]["explanation"]
    assert "asked for 3.20 req/s of the 4 offered (0.80)" in text
    # a closed loop has no schedule, and says nothing of one
    closed = side_by_side.compare(
        side_by_side.servegate_figures(servegate_run(itl_count=16)), read_result(RECORDED), CONTEXT
    )
    assert all("draw" not in (r["explanation"] or "") for r in closed["rows"])


def test_rounds_are_put_side_by_side_as_medians() -> None:
    """Three rounds: each side's figure is its median, failures add up, one bad round's
    validity flag is kept."""
    scales = (1.0, 1.2, 3.0)
    ours = [side_by_side.servegate_figures(servegate_run(scale=k)) for k in scales]
    ours[2]["valid"], ours[2]["validity_flags"] = False, ["loop lag"]
    recorded = read_result(RECORDED)
    theirs = [recorded, replace(recorded, request_throughput=20.0, failed=1), recorded]
    merged = side_by_side.median_servegate(ours)
    assert merged["percentiles"]["ttft"][50] == pytest.approx(57.5 * 1.2)
    assert merged["request_throughput"] == pytest.approx(16.0 / 1.2)
    assert merged["valid"] is False and merged["validity_flags"] == ["loop lag"]
    median = side_by_side.median_vllm(theirs)
    assert median.request_throughput == 16.0 and median.failed == 1
    assert median.percentiles["itl"][99] == pytest.approx(13.85)
    assert side_by_side.median_servegate(ours[:1]) is ours[0]


def test_a_run_without_a_workload_or_with_two_streams_is_refused() -> None:
    ours = servegate_run()
    del ours["workload"]
    with pytest.raises(side_by_side.SideBySideError, match="no workload block"):
        side_by_side.servegate_figures(ours)
    two = servegate_run()
    two["streaming"]["chat stream m"] = copy.deepcopy(two["streaming"]["completions stream m"])
    with pytest.raises(side_by_side.SideBySideError, match="expected one stream"):
        side_by_side.servegate_figures(two)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--target", "http://x:1"], "--target needs --served-model and --tokenizer"),
        (["--max-concurrency", "0"], "--max-concurrency must be at least 1"),
        (["--num-prompts", "0"], "--num-prompts must be at least 1"),
        (["--warmup", "-1"], "--warmup must be 0 or more"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--request-rate", "0"], "--request-rate must be above 0"),
        (["--burstiness", "-1"], "--burstiness must be above 0"),
        (["--nonsense"], "unknown option(s) --nonsense"),
    ],
)
def test_bad_options_are_one_line_before_anything_starts(
    capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    assert servegate_main(["load", "vs-vllm", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"servegate: error: {err.removeprefix('servegate: error: ')}"
    assert problem in err and "\n" not in err


def test_every_vs_vllm_option_has_a_help_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        servegate_main(["load", "--help"])
    text = capsys.readouterr().out
    section = text[text.index("vs-vllm (servegate beside vllm bench serve)") :]
    options = [line.split()[0] for line in section.splitlines() if line.startswith("  --")]
    assert len(options) == 16
    for option in options:
        after = section[section.index(option) :].split("\n  --")[0]
        assert "vs-vllm:" in after, option


def test_load_run_hands_options_it_shares_with_locust_on_to_locust() -> None:
    """`servegate load run --tokenizer T --max-concurrency 4` means Locust's options: the
    vs-vllm group parses them too, so they are given back as written, even at their defaults."""
    from servegate.entry.cli import build_parser
    from servegate.entry.commands.vs_vllm import given_options, with_defaults

    args, extra = build_parser().parse_known_args(
        ["load", "run", "--headless", "--tokenizer", "T", "--max-concurrency", "4"]
    )
    assert extra == ["--headless"]
    assert given_options(args) == ["--tokenizer", "T", "--max-concurrency", "4"]
    resolved = with_defaults(args)
    assert resolved.num_prompts == 64 and resolved.tokenizer == "T" and resolved.order


def test_a_request_rate_gives_servegate_the_same_open_loop(monkeypatch, tmp_path: Path) -> None:
    """With --request-rate, servegate's side sends the same law of gaps (gamma of vLLM's
    burstiness), the first num_prompts arrivals, the senders capped at --max-concurrency."""
    from servegate.entry.commands import vs_vllm
    from servegate.load import experiments
    from servegate.load.vllm_bench import BenchWorkload, Load

    seen: dict[str, object] = {}

    def fake_run_locust(settings, host, user, locustfile, users, name, args=(), on_start=None):
        seen.update(users=users, args=list(args))
        return {}

    monkeypatch.setattr(experiments, "run_locust", fake_run_locust)
    workload = BenchWorkload(num_prompts=20, input_len=8, output_len=4, seed=3)
    for load, law in ((Load(concurrency=5, rate=2.5), "poisson"),
                      (Load(concurrency=5, rate=2.5, burstiness=0.5), "gamma:0.5")):  # fmt: skip
        vs_vllm._run_servegate(
            None, "http://h", "/v1", "m", "tok", workload, load, tmp_path, tmp_path, "n"
        )
        args = seen["args"]
        assert seen["users"] == 5
        assert args[args.index("--rate") + 1] == "2.5"
        assert args[args.index("--arrival") + 1] == law
        assert args[args.index("--num-requests") + 1] == "20"
        assert args[args.index("--seed") + 1] == "3"
        assert vs_vllm._describe(load).startswith("open loop, 2.5 requests/s")
    vs_vllm._run_servegate(
        None, "http://h", "/v1", "m", "tok", workload, Load(concurrency=5), tmp_path, tmp_path, "n"
    )
    assert "--rate" not in seen["args"]


# ---- one real run ------------------------------------------------------------------------------


@pytest.mark.slow
def test_side_by_side_against_the_vllm_reference(tmp_path: Path) -> None:
    """Starts the vLLM reference, runs both benchmarks on 16 prompts at 2 in flight, and writes
    one table whose every figure is filled; no timing is asserted (a shared machine)."""
    from tests.conftest import STATE_DIR, project_python
    from tests.test_vllm_reference import vllm_processes

    assert vllm_processes() == [], "a vLLM server is already running"
    project_python("vllm")
    reports = tmp_path / "reports"
    code = servegate_main(
        [
            "--state-dir", str(STATE_DIR), "--reports-dir", str(reports),
            "load", "vs-vllm", "--max-concurrency", "2", "--num-prompts", "16",
            "--input-len", "16", "--output-len", "16", "--warmup", "2", "--name", "vs-e2e",
        ]
    )  # fmt: skip
    assert code == 0
    doc = json.loads((reports / "load-vs-e2e.json").read_text())
    assert doc["servegate"]["requests"] == 16 and doc["servegate"]["failed"] == 0
    assert doc["vllm"]["completed"] == 16 and doc["vllm"]["output_tokens"] == 16 * 16
    assert doc["servegate"]["output_tokens"] == 16 * 16 and doc["servegate"]["output_held"]
    assert all(r["servegate"] and r["vllm"] and r["ratio"] for r in doc["rows"])
    assert all(r["explanation"] for r in doc["rows"] if r["within_goal"] is False)
    assert (reports / "load-vs-e2e.md").read_text().count("|") > 40
    # the command started vLLM and stopped it, engine processes included
    assert vllm_processes() == []
