"""Token workloads in a real headless Locust run against the calibration server: every prompt
sent once, lengths counted with the fixture Llama's tokenizer, the workload block in the
result, vLLM's stream timing, and a bad prompt file stopping the run with one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import STATE_DIR
from tests.test_load_scenarios import _serve, locust

pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def calibration_port() -> Iterator[int]:
    yield from _serve("server.py", "--ttft-ms", "20", "--itl-ms", "2", "--tokens", "4")


@pytest.fixture(scope="module")
def llama_dir() -> Path:
    from servegate.reference_servers.manager import prepare_fixtures

    model = prepare_fixtures(STATE_DIR, log=lambda line: None).find("tiny-text-generation")
    assert model is not None
    return model.path


def run(tmp_path: Path, port: int, *args: str) -> tuple[int, str, dict | None]:
    done = locust(
        tmp_path,
        port,
        "OpenAIStreamUser",
        "--model",
        "calibrated",
        "--report-name",
        "wl",
        *args,
        seconds=60,
        users=2,
    )
    path = tmp_path / "load-wl.json"
    return done.returncode, done.stderr, json.loads(path.read_text()) if path.exists() else None


def test_each_prompt_once_then_the_run_ends_with_the_workload_block(
    tmp_path: Path, calibration_port: int, llama_dir: Path
) -> None:
    """7 prompts of uniform 4-12 tokens, output normal 6,2: exactly 7 requests (the run ends
    long before -t), input counted exactly, output held (the server returns max_tokens)."""
    code, stderr, doc = run(
        tmp_path, calibration_port, "--tags", "completions", "--tokenizer", str(llama_dir),
        "--input-len", "uniform:4-12", "--output-len", "normal:6,2", "--num-prompts", "7",
        "--send-each-once",
    )  # fmt: skip
    assert code == 0, stderr[-3000:]
    assert doc is not None and doc["totals"]["requests"] == 7 and doc["totals"]["failures"] == 0
    assert doc["duration_s"] < 30
    block = doc["workload"]
    assert block["requests"] == 7 and block["send_each_once"] is True
    assert block["lengths"].startswith("exact")
    planned = block["input_tokens"]["planned"]
    assert planned["count"] == 7 and 4 <= planned["min"] <= planned["max"] <= 12
    assert block["output_held"] is True and block["output_tokens"]["counted_by"] == {"usage": 7}
    assert block["output_tokens"]["achieved"]["total"] == doc["totals"]["output_tokens"]
    assert block["hold_output"]["sent"] == ["ignore_eos", "min_tokens"]  # the probe got a 200
    assert block["flags"] == [] and block["span_s"] > 0
    assert "Workload: synthetic, 7 prompts" in (tmp_path / "load-wl.md").read_text()


def test_vllm_timing_counts_the_role_chunk_of_a_chat_stream(
    tmp_path: Path, calibration_port: int
) -> None:
    """The calibration server sends chat's role chunk at once and the first token 20 ms later:
    vLLM's definition times TTFT at the role chunk and counts one more gap per stream."""
    common = ("--tags", "chat", "--input-len", "4", "--output-len", "4", "--num-prompts", "4",
              "--send-each-once")  # fmt: skip
    code, stderr, ours = run(tmp_path / "a", calibration_port, *common)
    assert code == 0, stderr[-3000:]
    code, stderr, theirs = run(tmp_path / "b", calibration_port, *common, "--stream-timing", "vllm")
    assert code == 0, stderr[-3000:]
    assert ours is not None and theirs is not None
    (a,), (b,) = ours["streaming"].values(), theirs["streaming"].values()
    assert a["itl_ms"]["count"] == 4 * 3 and b["itl_ms"]["count"] == 4 * 4
    assert b["ttft_ms"]["p50"] < a["ttft_ms"]["p50"]
    # no tokenizer: lengths are words, and the result says so
    assert [f["name"] for f in ours["workload"]["flags"]] == ["approximate_lengths"]


def test_a_bad_prompt_file_stops_the_run_with_one_line(
    tmp_path: Path, calibration_port: int
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a", "max_tokens": 3}\n{"text": "b"}\n')
    code, stderr, doc = run(tmp_path, calibration_port, "--prompts", str(prompts))
    assert code == 2 and doc is None
    assert f"{prompts}:2: expected a prompt, messages or conversations field" in stderr
    assert "Traceback" not in stderr
