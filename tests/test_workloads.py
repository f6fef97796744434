"""Token workloads: length distributions, counting with the served model's tokenizer, prompt
files and their one-line errors, the request bodies, and the result's workload block."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest

from servegate.load.lengths import LengthError, Lengths, parse_lengths
from servegate.load.prompt_files import PromptFileError, read_prompt_file
from servegate.load.tokens import TokenCounter, TokenizerError
from servegate.load.workloads import (
    Prompt,
    WorkloadError,
    WorkloadSpec,
    WorkloadStats,
    build,
    draw_lengths,
    hold_fields,
    report,
)
from tests.conftest import STATE_DIR

pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def llama_dir() -> Path:
    """The fixture Llama's folder (its byte-level BPE tokenizer.json), built offline once."""
    from servegate.reference_servers.manager import prepare_fixtures

    model = prepare_fixtures(STATE_DIR, log=lambda line: None).find("tiny-text-generation")
    assert model is not None
    return model.path


# ---- lengths ---------------------------------------------------------------------------------


def test_lengths_parse_every_form() -> None:
    assert parse_lengths("32") == Lengths("fixed", low=32, high=32)
    assert parse_lengths("fixed:8").fixed == 8
    assert parse_lengths("uniform:4-12") == Lengths("uniform", low=4, high=12)
    assert parse_lengths("normal:100,20") == Lengths("normal", mean=100.0, std=20.0)
    assert str(parse_lengths("Uniform:4-12")) == "uniform:4-12"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0", "at least 1"),
        ("x", "expected N"),
        ("uniform:9-3", "1 <= A <= B"),
        ("uniform:5", "expected N"),
        ("normal:10", "expected N"),
        ("normal:0,1", "MEAN >= 1"),
        ("normal:10,-1", "STD >= 0"),
        ("poisson:3", "expected N"),
    ],
)
def test_bad_lengths_get_one_line_naming_the_option(text: str, problem: str) -> None:
    with pytest.raises(LengthError) as caught:
        parse_lengths(text, "--output-len")
    message = str(caught.value)
    assert message.startswith(f"--output-len {text!r}") and problem in message
    assert "\n" not in message


def test_uniform_draws_cover_the_range_and_nothing_else() -> None:
    rng = random.Random(1)
    draws = [parse_lengths("uniform:3-7").sample(rng) for _ in range(2000)]
    assert set(draws) == {3, 4, 5, 6, 7}
    # each value about 1/5 of the draws
    assert all(300 < draws.count(v) < 500 for v in range(3, 8))


def test_normal_draws_have_the_asked_mean_and_spread_and_stay_positive() -> None:
    rng = random.Random(2)
    draws = [parse_lengths("normal:64,8").sample(rng) for _ in range(4000)]
    assert abs(statistics.mean(draws) - 64) < 1.0
    assert 7.0 < statistics.pstdev(draws) < 9.0
    wide = [parse_lengths("normal:3,10").sample(rng) for _ in range(500)]
    assert min(wide) >= 1


def test_draws_are_reproducible_from_the_seed() -> None:
    dist = parse_lengths("normal:50,10")
    a = [dist.sample(random.Random(7)) for _ in range(3)]
    b = [dist.sample(random.Random(7)) for _ in range(3)]
    assert a == b


# ---- tokenizer -------------------------------------------------------------------------------


def test_tokenizer_counts_as_the_model_folder_says(llama_dir: Path) -> None:
    """The counter reads the folder's tokenizer.json (or the file) and counts without special
    tokens; the count is the transformers-free tokenizer's own."""
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(llama_dir / "tokenizer.json"))
    text = "Once upon a time, in a small village, a tokenizer counted."
    expected = len(reference.encode(text, add_special_tokens=False).ids)
    assert TokenCounter.load(llama_dir).count(text) == expected
    assert TokenCounter.load(llama_dir / "tokenizer.json").count(text) == expected


def test_synthetic_prompts_have_exactly_the_drawn_token_lengths(llama_dir: Path) -> None:
    spec = WorkloadSpec(
        input_len=parse_lengths("uniform:1-100"),
        output_len=parse_lengths("normal:32,8"),
        num_prompts=80,
        tokenizer=str(llama_dir),
        seed=3,
    )
    built = build(spec)
    counter = TokenCounter.load(llama_dir)
    drawn = draw_lengths(spec)
    assert len(drawn) == len(built.prompts) == 80
    for prompt, (drawn_in, drawn_out) in zip(built.prompts, drawn, strict=True):
        assert prompt.input_tokens == counter.count(prompt.prompt) == drawn_in
        assert prompt.max_tokens == drawn_out
    assert {i for i, _ in drawn} <= set(range(1, 101)) and len({i for i, _ in drawn}) > 30
    assert built.lengths_exact
    # the same seed, the same prompts; another seed, others
    assert [p.prompt for p in build(spec).prompts] == [p.prompt for p in built.prompts]
    other = build(WorkloadSpec(**{**spec.__dict__, "seed": 4}))
    assert [p.prompt for p in other.prompts] != [p.prompt for p in built.prompts]


def test_without_a_tokenizer_lengths_are_words_and_the_result_says_so() -> None:
    built = build(WorkloadSpec(input_len=parse_lengths("12"), num_prompts=3))
    assert not built.lengths_exact
    assert all(len(p.prompt.split()) == 12 and p.input_tokens is None for p in built.prompts)
    block = report(built, WorkloadStats())
    assert "approximate" in block["lengths"]
    assert [f["name"] for f in block["flags"]] == ["approximate_lengths"]


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda tmp: tmp / "missing", "no tokenizer.json there"),
        (lambda tmp: (tmp / "bad.json").write_text("{}") and tmp / "bad.json", "not a tokenizer"),
    ],
)
def test_a_bad_tokenizer_is_one_line(tmp_path: Path, make, problem: str) -> None:
    with pytest.raises(TokenizerError) as caught:
        TokenCounter.load(make(tmp_path))
    assert problem in str(caught.value) and "\n" not in str(caught.value)


# ---- prompt files ----------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "p.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_prompts_and_messages(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"prompt": "hello there", "max_tokens": 5}\n\n'
        '{"messages": [{"role": "system", "content": "be brief"},'
        ' {"role": "user", "content": "hi"}]}\n',
    )
    first, second = read_prompt_file(path)
    assert first.prompt == "hello there" and first.max_tokens == 5
    assert first.messages == ({"role": "user", "content": "hello there"},)
    assert second.prompt == "hi" and second.messages[0]["role"] == "system"
    assert second.form == "messages"


def test_sharegpt_conversations_end_at_the_last_human_turn(tmp_path: Path) -> None:
    rows = [
        {
            "id": "a",
            "conversations": [
                {"from": "system", "value": "sys"},
                {"from": "human", "value": "q1"},
                {"from": "gpt", "value": "a1"},
                {"from": "human", "value": "q2"},
                {"from": "gpt", "value": "a two words"},
            ],
        },
        {"conversations": [{"from": "human", "value": "only a question"}]},
    ]
    for path in (
        write(tmp_path, json.dumps(rows), "share.json"),
        write(tmp_path, "\n".join(json.dumps(r) for r in rows), "share.jsonl"),
    ):
        first, second = read_prompt_file(path)
        assert [m["role"] for m in first.messages] == ["system", "user", "assistant", "user"]
        assert first.prompt == "q2" and first.reply == "a two words"
        assert second.reply is None and second.form == "sharegpt"


def test_sharegpt_reply_sets_the_output_length_counted_in_tokens(
    tmp_path: Path, llama_dir: Path
) -> None:
    reply = "the answer, as long as it is"
    path = write(
        tmp_path,
        json.dumps(
            {
                "conversations": [
                    {"from": "human", "value": "q"},
                    {"from": "gpt", "value": reply},
                ]
            }
        ),
    )
    built = build(WorkloadSpec(prompts_file=str(path), tokenizer=str(llama_dir)))
    assert built.prompts[0].max_tokens == TokenCounter.load(llama_dir).count(reply)
    assert built.source == f"file {path}"
    # --output-len overrides; --num-prompts repeats the file
    again = build(
        WorkloadSpec(prompts_file=str(path), output_len=parse_lengths("7"), num_prompts=3)
    )
    assert [p.max_tokens for p in again.prompts] == [7, 7, 7]


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ('{"prompt": "a"}\n{"prompt": \n', ":2:", "not a JSON object"),
        ('{"prompt": ""}\n', ":1:", "prompt must be a non-empty string"),
        ('{"text": "a"}\n', ":1:", "expected a prompt, messages or conversations"),
        ("[1, 2]\n", "item 0", "expected a JSON object"),
        ('{"messages": []}\n', ":1:", "messages must be a non-empty list"),
        ('{"messages": [{"role": "system", "content": "x"}]}\n', ":1:", "no user message"),
        ('{"messages": [{"role": "user"}]}\n', ":1:", "messages[0] needs a string role"),
        ('{"conversations": [{"from": "bot", "value": "x"}]}\n', ":1:", "expected human"),
        ('{"conversations": [{"from": "gpt", "value": "x"}]}\n', ":1:", "no human turn"),
        ('{"prompt": "a", "max_tokens": 0}\n', ":1:", "max_tokens must be a positive integer"),
        ("[{]\n", ":1:", "not valid JSON"),
        ("\n\n", "", "no prompt in the file"),
    ],
)
def test_a_bad_prompt_file_is_one_line_naming_where(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PromptFileError) as caught:
        read_prompt_file(path)
    message = str(caught.value)
    assert str(path) in message and where in message and problem in message, message
    assert "\n" not in message


def test_unreadable_prompt_files(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match="no such file"):
        read_prompt_file(tmp_path / "nope.jsonl")
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(PromptFileError, match="not UTF-8"):
        read_prompt_file(bad)


def test_a_file_row_without_an_output_length_asks_for_one(tmp_path: Path) -> None:
    path = write(tmp_path, '{"prompt": "a"}\n')
    with pytest.raises(WorkloadError, match="give --output-len"):
        build(WorkloadSpec(prompts_file=str(path)))


def test_options_that_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="give one"):
        WorkloadSpec(prompts_file="x.jsonl", input_len=parse_lengths("4"))
    with pytest.raises(WorkloadError, match="--hold-output"):
        WorkloadSpec(hold="maybe")
    with pytest.raises(WorkloadError, match="--num-prompts"):
        WorkloadSpec(num_prompts=0)


# ---- bodies and the result block -------------------------------------------------------------


def test_bodies_ask_for_max_tokens_and_hold_it_when_asked() -> None:
    built = build(WorkloadSpec(input_len=parse_lengths("3"), output_len=parse_lengths("9")))
    prompt = built.prompts[0]
    body = built.body("completions", prompt, "m")
    assert body["prompt"] == prompt.prompt and body["max_tokens"] == 9
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "ignore_eos" not in body and "min_tokens" not in body
    built.hold_fields = hold_fields(True)
    chat = built.body("chat/completions", prompt, "m")
    assert chat["messages"] == [{"role": "user", "content": prompt.prompt}]
    assert chat["ignore_eos"] is True and chat["min_tokens"] == 9 and "prompt" not in chat


def test_send_each_once_hands_out_every_prompt_once_then_none() -> None:
    spec = WorkloadSpec(input_len=parse_lengths("2"), num_prompts=3, send_each_once=True)
    built = build(spec)
    taken = [built.take() for _ in range(4)]
    assert taken[:3] == built.prompts and taken[3] is None and built.budget == 3
    cycling = build(WorkloadSpec(input_len=parse_lengths("2"), num_prompts=2))
    assert [cycling.take() for _ in range(5)][4] == cycling.prompts[0]
    assert cycling.budget is None


def stats_of(pairs: list[tuple[int, int]]) -> WorkloadStats:
    stats = WorkloadStats()
    for i, (asked, got) in enumerate(pairs):
        prompt = Prompt("p", ({"role": "user", "content": "p"},), asked, 4)
        stats.add(prompt, got, "usage", 5, sent=100.0 + i, answered=101.0 + i)
    return stats


def test_report_flags_answers_shorter_or_longer_than_asked() -> None:
    built = build(WorkloadSpec(input_len=parse_lengths("2"), num_prompts=2))
    built.hold_fields = hold_fields(True)
    block = report(built, stats_of([(8, 8), (8, 3), (8, 9)]))
    assert block["output_held"] is False
    assert block["output_tokens"]["shorter"] == 1 and block["output_tokens"]["longer"] == 1
    (flag,) = [f for f in block["flags"] if f["name"] == "output_not_held"]
    assert "1 of 3 answers were shorter and 1 longer" in flag["detail"]
    assert "ignore_eos and min_tokens" in flag["detail"]
    assert block["output_tokens"]["achieved"]["total"] == 20
    assert block["input_tokens"]["server"]["p50"] == 5
    # first send (100) to last answer (103)
    assert block["span_s"] == pytest.approx(3.0)
    assert block["requests_per_s"] == pytest.approx(1.0)


def test_report_of_held_output_and_of_a_refusal() -> None:
    built = build(WorkloadSpec(input_len=parse_lengths("2"), num_prompts=2))
    assert report(built, stats_of([(8, 8), (4, 4)]))["output_held"] is True
    built.hold_note = "the server refused ignore_eos/min_tokens: HTTP 400: extra fields"
    block = report(built, stats_of([(8, 2)]))
    assert "refused" in block["flags"][0]["detail"]
    assert block["hold_output"]["note"] == built.hold_note


def test_worker_stats_merge_on_the_master() -> None:
    master, worker = stats_of([(8, 8)]), stats_of([(8, 7), (8, 8)])
    worker.fail(sent=99.0)
    master.merge(worker.drain())
    assert master.achieved == [8, 7, 8] and master.failed == 1 and min(master.sent) == 99.0
    assert worker.achieved == [] and worker.failed == 0
