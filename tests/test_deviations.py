"""Expected deviations: an entry expects one specific failure of the checks it lists, on the
implementation, version and served models it names; everything else is an ordinary verdict."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import grpc
import pytest

from servegate.checks import RuleViolation
from servegate.deviations import (
    Deviation,
    Expect,
    When,
    evidence_status,
    judge,
    load_deviations,
    version_after,
)
from servegate.errors import ServegateError
from servegate.protocols.exchange import Exchange
from servegate.protocols.v2_grpc import GrpcReply
from servegate.reference_servers.kserve_huggingface.runtime import EnvProbe, _implementation
from servegate.targets import ModelInfo, Target

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup
else:  # Hypothesis brings the backport
    from exceptiongroup import ExceptionGroup

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "conformance" / "deviations").glob("*.yaml"))

KSERVE = "KServe huggingfaceserver 0.14.1 (official) on kserve 0.14.1"
NAME = "test_bad_rest_request_is_a_4xx_json_error[kserve-body-not-json]"


def target(*tasks: str, implementation: str = KSERVE, names: tuple[str, ...] = ()) -> Target:
    models = {
        f"m{i}-{task}": ModelInfo(name=f"m{i}-{task}", task=task) for i, task in enumerate(tasks)
    }
    models.update({name: ModelInfo(name=name) for name in names})
    return Target(name="kserve", http_url="http://x", models=models, implementation=implementation)


def entry(**kw) -> Deviation:
    base = dict(
        id="kserve-detail-body",
        implementation="kserve",
        versions="==0.14.1",
        reference="https://example/issue/1",
        reason="FastAPI's detail body",
        checks=("test_bad_rest_request_is_a_4xx_json_error[*-body-not-json]",),
        expect=Expect(status=(422, 400), problem=_re("not the error envelope")),
    )
    return Deviation(**{**base, **kw})


def _re(pattern: str):
    import re

    return re.compile(pattern)


def violation(
    status: int | str | None, problem: str = "body is not the error envelope"
) -> RuleViolation:
    exchange = Exchange("http", "POST", "http://x/v2/models/m/infer", status=status)
    return RuleViolation("errors are {'error': message}", problem, exchange)


# ------------------------------------------------------------------------------ the verdicts


def test_the_listed_violation_is_an_expected_deviation_naming_its_entry():
    verdict = judge([entry()], NAME, target("fill-mask"), violation(422))
    assert verdict.kind == "expected"
    assert verdict.deviation is not None and verdict.deviation.id == "kserve-detail-body"
    assert "kserve-detail-body" in verdict.message and "https://example/issue/1" in verdict.message


def test_another_status_is_a_failure_that_says_what_was_expected():
    verdict = judge([entry()], NAME, target("fill-mask"), violation(500))
    assert verdict.kind == "unmatched"
    assert "expected status 422 or 400, saw status 500" in verdict.message


def test_another_problem_is_a_failure_that_says_what_was_expected():
    verdict = judge([entry()], NAME, target("fill-mask"), violation(422, "server not ready after"))
    assert verdict.kind == "unmatched"
    assert "'not the error envelope'" in verdict.message
    assert "server not ready after" in verdict.message


def test_a_violation_without_a_response_does_not_match_a_status():
    verdict = judge([entry()], NAME, target("fill-mask"), violation(None))
    assert verdict.kind == "unmatched"
    assert "saw no response" in verdict.message


@pytest.mark.parametrize(
    "error",
    [
        KeyError("outputs"),
        TimeoutError("timed out"),
        ConnectionResetError("disconnect"),
        AssertionError("body is not the error envelope"),
    ],
    ids=["KeyError", "timeout", "disconnect", "bare-assert"],
)
def test_only_a_rule_violation_can_be_expected(error):
    verdict = judge([entry(expect=Expect(problem=_re(".*")))], NAME, target("fill-mask"), error)
    assert verdict.kind == "unmatched"
    assert type(error).__name__ in verdict.message
    assert "only a rule violation can be expected" in verdict.message


def test_a_pass_where_the_entry_applies_is_now_passes():
    verdict = judge([entry()], NAME, target("fill-mask"), None)
    assert verdict.kind == "now-passes"
    assert "expected deviation kserve-detail-body now passes: remove it" in verdict.message


@pytest.mark.parametrize(
    ("when", "tasks", "names"),
    [
        (When(generative=True), ("fill-mask",), ()),
        (When(generative=False), ("text-generation",), ()),
        (When(encoder=True), ("text-generation",), ()),
        (When(encoder=False), ("fill-mask", "text2text-generation"), ()),
        (When(tasks=frozenset({"text-generation"})), ("fill-mask",), ()),
        (When(no_tasks=frozenset({"custom-numeric"})), ("fill-mask", "custom-numeric"), ()),
        # the reference servers' numeric echo model is known by its name
        (When(no_tasks=frozenset({"custom-numeric"})), ("fill-mask",), ("numeric-echo",)),
        (When(models="one"), ("fill-mask", "text-generation"), ()),
        (When(models="many"), ("fill-mask",), ()),
    ],
)
def test_an_entry_whose_condition_is_false_is_not_applied_at_all(when, tasks, names):
    served = target(*tasks, names=names)
    dev = entry(when=when)
    assert judge([dev], NAME, served, violation(422)).kind == "not-applicable"
    # and a pass is a pass, never "now passes"
    assert judge([dev], NAME, served, None).kind == "not-applicable"


@pytest.mark.parametrize(
    ("when", "tasks"),
    [
        (When(generative=True), ("fill-mask", "text-generation")),
        (When(generative=False, encoder=True), ("fill-mask",)),
        (When(tasks=frozenset({"text2text-generation", "text-generation"})), ("text-generation",)),
        (When(no_tasks=frozenset({"custom-numeric"})), ("fill-mask",)),
        (When(models="one"), ("text-generation",)),
        (When(models="many"), ("fill-mask", "text-generation")),
    ],
)
def test_an_entry_whose_condition_holds_is_applied(when, tasks):
    assert judge([entry(when=when)], NAME, target(*tasks), violation(422)).kind == "expected"


def test_an_entry_for_another_implementation_or_version_is_not_applied():
    other = target("fill-mask", implementation="MLServer 1.7.1 with mlserver-huggingface 1.7.1")
    assert judge([entry()], NAME, other, None).kind == "not-applicable"
    newer = target("fill-mask", implementation="kserve 0.15.0")
    assert judge([entry()], NAME, newer, None).kind == "not-applicable"
    # no version after the word: a version range cannot hold
    unversioned = target("fill-mask", implementation="KServe huggingfaceserver image x:latest")
    assert judge([entry()], NAME, unversioned, None).kind == "not-applicable"


def test_the_first_matching_entry_of_several_is_the_verdict():
    rest = entry(id="rest-500", expect=Expect(status=(500,)))
    detail = entry()
    verdict = judge([rest, detail], NAME, target("fill-mask"), violation(422))
    assert verdict.kind == "expected" and verdict.deviation is detail
    both = judge([rest, detail], NAME, target("fill-mask"), violation(503))
    assert both.kind == "unmatched"
    assert "rest-500: expected status 500" in both.message
    assert "kserve-detail-body: expected status 422 or 400" in both.message


def test_the_rule_pattern_is_matched_too():
    dev = entry(expect=Expect(status=(422,), rule=_re("error envelope")))
    verdict = judge([dev], NAME, target("fill-mask"), violation(422))
    assert verdict.kind == "unmatched" and "expected a rule matching" in verdict.message


# ------------------------------------------------------------------------- gRPC evidence


def test_a_grpc_code_name_is_matched_against_the_reply_code():
    exchange = Exchange("grpc", "ModelInfer", "x:1", status="UNKNOWN")
    reply = GrpcReply(grpc.StatusCode.UNKNOWN, "boom", None, exchange)
    seen = RuleViolation("bad requests are INVALID_ARGUMENT", "code UNKNOWN", reply)
    assert evidence_status(seen) == "UNKNOWN"
    dev = entry(
        checks=("test_bad_grpc_request_gets_the_right_status[*-no-inputs]",),
        expect=Expect(status=("unknown",)),
    )
    name = "test_bad_grpc_request_gets_the_right_status[kserve-no-inputs]"
    assert judge([dev], name, target("fill-mask"), seen).kind == "expected"
    invalid = GrpcReply(grpc.StatusCode.INTERNAL, "x", None, exchange)
    assert (
        judge([dev], name, target("fill-mask"), RuleViolation("r", "p", invalid)).kind
        == "unmatched"
    )


# --------------------------------------------------------------------------- the version


@pytest.mark.parametrize(
    ("text", "word", "version"),
    [
        (
            "servegate-kserve-huggingface (kserve 0.14.2 SDK, huggingfaceserver 0.14.1)",
            "kserve",
            "0.14.2",
        ),
        (
            "servegate-kserve-huggingface (kserve 0.14.2 SDK, huggingfaceserver 0.14.1)",
            "huggingfaceserver",
            "0.14.1",
        ),
        ("KServe huggingfaceserver 0.14.1 (official) on kserve 0.13.0", "kserve", "0.13.0"),
        ("MLServer 1.7.1 with mlserver-huggingface 1.6.0", "mlserver", "1.7.1"),
        ("MLServer 1.7.1 with mlserver-huggingface 1.6.0", "mlserver-huggingface", "1.6.0"),
        ("kserve 0.14.1", "kserve", "0.14.1"),
        # a server that names itself in GET /v2: the version after the hyphenated name
        ("servegate-kserve-huggingface 0.14.1", "kserve", "0.14.1"),
        ("kserve-huggingfaceserver 0.14.1", "kserve", "0.14.1"),
        ("mlserver-huggingface 1.6.0 on kserver 0.1", "kserve", None),
        ("triton v2.51", "triton", "2.51"),
        ("KServe huggingfaceserver image x:0.14.1", "kserve", None),
    ],
)
def test_the_version_is_the_one_written_after_the_component(text, word, version):
    found = version_after(text, word)
    assert (str(found) if found else None) == version


@pytest.mark.parametrize("official", [True, False])
def test_the_kserve_launcher_strings_give_the_sdk_version(official):
    # the two versions differ here so that reading the wrong one shows
    text = _implementation(official, EnvProbe(kserve="0.14.2", huggingfaceserver="0.14.1"))
    assert str(version_after(text, "kserve")) == "0.14.2"
    if official:
        assert str(version_after(text, "huggingfaceserver")) == "0.14.1"
    dev = entry(versions="==0.14.2")
    assert judge([dev], NAME, target("fill-mask", implementation=text), violation(422)).kind == (
        "expected"
    )


def test_the_mlserver_launcher_string_gives_both_versions():
    from servegate.reference_servers.mlserver.runtime import MLServerRuntime

    runtime = MLServerRuntime()
    runtime._versions[Path("/py")] = {"mlserver": "1.7.1", "mlserver-huggingface": "1.6.0"}
    text = runtime.implementation(Path("/py"))
    assert str(version_after(text, "mlserver")) == "1.7.1"
    assert str(version_after(text, "mlserver-huggingface")) == "1.6.0"


# ---------------------------------------------------------------------------- the checks


@pytest.mark.parametrize(
    ("check", "name", "covered"),
    [
        ("test_x[*-body-not-json]", "test_x[kserve-body-not-json]", True),
        ("test_x[*-body-not-json]", "test_x[127.0.0.1-8080-body-not-json]", True),
        ("test_x[*-body-not-json]", "test_x[kserve-body-not-json-2]", False),
        ("test_x[*-body-not-json]", "test_y[kserve-body-not-json]", False),
        # brackets and ? are literal, not fnmatch classes
        ("test_x[*-a]", "test_x[kserve-b]", False),
        ("test_x?kserve?", "test_x[kserve]", False),
        ("test_[xy][kserve]", "test_x[kserve]", False),
        # a name without brackets is the test whose only parameter is the target
        ("test_x", "test_x[kserve]", True),
        ("test_x", "test_x[kserve-fill-mask]", False),
        ("test_x", "test_xy[kserve]", False),
        ("test_x*", "test_xy[kserve]", True),
    ],
)
def test_checks_match_with_star_as_the_only_wildcard(check, name, covered):
    assert entry(checks=(check,)).covers(name, slot="kserve") is covered


# ---------------------------------------------------------------------------- the loader

GOOD = """
deviations:
  - id: kserve-detail-body
    implementation: kserve
    versions: "==0.14.1"
    reference: https://example/1
    reason: >-
      FastAPI's detail
      body.
    when:
      no_tasks: [custom-numeric]
      generative: false
      models: many
    expect:
      status: [422, 400]
      problem: "not the error envelope"
    checks:
      - "test_x[*-body-not-json]"
      - "test_y"
"""


def test_a_good_file_loads(tmp_path):
    path = tmp_path / "k.yaml"
    path.write_text(GOOD)
    [dev] = load_deviations([path])
    assert dev.id == "kserve-detail-body" and dev.source == "k.yaml"
    assert dev.reason == "FastAPI's detail body."
    assert dev.checks == ("test_x[*-body-not-json]", "test_y")
    assert dev.when == When(no_tasks=frozenset({"custom-numeric"}), generative=False, models="many")
    assert dev.expect.status == (422, 400)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("    reason:", "    because: x\n    reason:"), "unknown key because"),
        (
            ("      generative: false", "      generative: false\n      gpu: true"),
            "unknown key when.gpu",
        ),
        (("      problem:", "      body: x\n      problem:"), "unknown key expect.body"),
        (('"not the error envelope"', '"(unclosed"'), "expect.problem: bad regular expression"),
        (('"==0.14.1"', '"0.14.1"'), "bad versions '0.14.1'"),
        (('      - "test_x[*-body-not-json]"\n      - "test_y"', "      []"), "missing checks"),
        (("  - id: kserve-detail-body\n", "  - implementation: x\n"), "missing id"),
        (
            (
                '    expect:\n      status: [422, 400]\n      problem: "not the error envelope"\n',
                "",
            ),
            "missing expect",
        ),
        (
            (
                '      status: [422, 400]\n      problem: "not the error envelope"',
                "      status: []",
            ),
            "at least one of",
        ),
        (("[custom-numeric]", "[custom-numerc]"), "unknown task custom-numerc"),
        (("models: many", "models: two"), "expected one or many"),
        (("generative: false", "generative: sometimes"), "expected true or false"),
        (("[422, 400]", "[422, 4.5]"), "expect.status: expected HTTP codes"),
    ],
)
def test_a_malformed_entry_is_one_line_naming_file_entry_and_fault(tmp_path, edit, message):
    old, new = edit
    assert old in GOOD
    path = tmp_path / "k.yaml"
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(ServegateError) as info:
        load_deviations([path])
    text = str(info.value)
    assert "\n" not in text
    assert f"{path}, entry 1" in text and message in text


def test_a_duplicate_id_across_files_is_refused(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(GOOD)
    second.write_text(GOOD)
    with pytest.raises(
        ServegateError, match=r"b.yaml, entry 1 \(kserve-detail-body\): duplicate id"
    ):
        load_deviations([first, second])


def test_a_file_that_is_not_yaml_is_one_line(tmp_path):
    path = tmp_path / "k.yaml"
    path.write_text("deviations: [\n  {id: x\n")
    with pytest.raises(ServegateError) as info:
        load_deviations([path])
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_the_shipped_files_load_and_pin_every_failure():
    deviations = load_deviations(SHIPPED)
    assert deviations
    for dev in deviations:
        assert dev.expect.status or dev.expect.problem, dev.id


# ---------------------------------------------------------------- through the pytest plugin

CHECKS = """
import httpx
import pytest
from servegate.checks import RuleViolation
from servegate.protocols.exchange import Exchange
from servegate.protocols.http import Reply


def fail_with(status, problem):
    exchange = Exchange("http", "POST", "http://x", status=status)
    raise RuleViolation("the rule", problem, Reply(status, httpx.Headers(), b"", exchange))


def test_expected(target):
    fail_with(422, "body is the detail body")


def test_wrong_status(target):
    fail_with(500, "body is the detail body")


def test_key_error(target):
    {}["outputs"]


def test_now_passes(target):
    pass


def test_condition_false(target):
    pass


def test_unlisted(target):
    fail_with(422, "body is the detail body")


def test_unsupported(target):
    pytest.skip("unsupported: no such feature")
"""

ENTRIES = """
deviations:
  - id: tiny-detail
    implementation: tiny
    versions: "==0"
    reference: https://example/tiny/1
    reason: The tiny server's detail body.
    expect: {status: [422], problem: "detail body"}
    checks: [test_expected, test_wrong_status, test_key_error, test_now_passes, test_unsupported]
  - id: tiny-generative
    implementation: tiny
    reference: https://example/tiny/2
    reason: Only on generative models.
    when: {generative: true}
    expect: {problem: "."}
    checks: [test_condition_false]
"""


def test_the_plugin_judges_each_listed_check_by_its_failure(pytester, tiny_server):
    pytester.makepyfile(test_checks=CHECKS)
    entries = pytester.path / "tiny.yaml"
    entries.write_text(textwrap.dedent(ENTRIES))
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--target={tiny_server.target.http_url}",
        f"--deviations={entries}",
        f"--reports-dir={reports}",
    )
    [path] = reports.glob("conformance-*.json")
    cases = {c["name"].split("[")[0]: c for c in json.loads(path.read_text())["cases"]}
    outcomes = {name: case["outcome"] for name, case in cases.items()}
    assert outcomes == {
        "test_expected": "expected-deviation",
        "test_wrong_status": "failed",
        "test_key_error": "failed",
        "test_now_passes": "failed",
        "test_condition_false": "passed",
        "test_unlisted": "failed",
        "test_unsupported": outcomes["test_unsupported"],
    }, result.stdout.str()
    assert cases["test_expected"]["deviation"] == {
        "id": "tiny-detail",
        "verdict": "expected",
        "reference": "https://example/tiny/1",
        "reason": "The tiny server's detail body.",
        "source": "tiny.yaml",
    }
    assert cases["test_expected"]["failure"]["exchange"]["status"] == 422
    assert "expected status 422, saw status 500" in cases["test_wrong_status"]["message"]
    assert cases["test_wrong_status"]["deviation"]["verdict"] == "unmatched"
    assert "KeyError" in cases["test_key_error"]["message"]
    assert "tiny-detail now passes: remove it" in cases["test_now_passes"]["message"]
    assert cases["test_unlisted"]["deviation"] is None
    # a check that did not run is never "now passes"
    assert outcomes["test_unsupported"] in ("unsupported", "skipped")
    assert cases["test_unsupported"]["deviation"] is None
    result.assert_outcomes(passed=1, failed=4, xfailed=1, skipped=1)


# ------------------------------------------------------------- several failures at once


def test_a_group_of_failures_is_expected_only_when_each_matches():
    # Hypothesis reports distinct failures of one property as an exception group
    both = ExceptionGroup("two bugs", [violation(422), violation(400)])
    assert judge([entry()], NAME, target("fill-mask"), both).kind == "expected"
    mixed = ExceptionGroup("two bugs", [violation(422), violation(500)])
    assert judge([entry()], NAME, target("fill-mask"), mixed).kind == "unmatched"
    crash = ExceptionGroup("two bugs", [violation(422), IndexError("list index out of range")])
    verdict = judge([entry()], NAME, target("fill-mask"), crash)
    assert verdict.kind == "unmatched" and "IndexError" in verdict.message


def test_raw_outputs_missing_an_entry_are_a_rule_violation_not_a_crash():
    from tritonclient.grpc import service_pb2 as pb

    from servegate.protocols.v2_grpc import encode_raw, output_values

    response = pb.ModelInferResponse(
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(name="x", datatype="INT32", shape=[0]),
            pb.ModelInferResponse.InferOutputTensor(name="x_sum", datatype="FP64", shape=[1]),
        ],
        raw_output_contents=[encode_raw("FP64", [0.0])],
    )
    with pytest.raises(RuleViolation, match="raw_output_contents has 1 entries for 2 outputs"):
        output_values(response, 1)
    aligned = pb.ModelInferResponse(
        outputs=response.outputs,
        raw_output_contents=[encode_raw("INT32", []), encode_raw("FP64", [1.5])],
    )
    assert output_values(aligned, 1) == [1.5]
