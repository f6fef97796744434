"""Profiles: what belongs to one, and when it is a success, a partial or a failure."""

from __future__ import annotations

import pytest

from servegate.features import FEATURES, PROFILES, parse_profiles, protocol_of
from servegate.report.profiles import evaluate_profile, profiles_for
from servegate.report.schema import Case, UnsupportedRecord

REST = PROFILES["oip-rest"]
HAVE = {"v2-rest", "hf-v2-kwargs", "task-fill-mask"}


def case(name: str, outcome: str, *features: str, task: str | None = None) -> Case:
    return Case(
        check=name,
        nodeid=f"t.py::{name}",
        name=name,
        task=task,
        features=list(features),
        outcome=outcome,
    )


def test_every_profile_names_catalogue_features_only():
    for profile in PROFILES.values():
        assert profile.core, profile.name
        assert profile.features <= set(FEATURES), profile.features - set(FEATURES)
    assert {"oip-rest", "oip-grpc", "kserve-v1", "openai"} <= set(PROFILES)


def test_all_passed_is_success_and_expected_deviations_do_not_count_against_it():
    cases = [case("a", "passed", "v2-rest"), case("b", "expected-deviation", "v2-rest")]
    result = evaluate_profile(REST, cases, HAVE)
    assert (result.result, result.reason) == ("success", "")
    assert result.counts.expected_deviation == 1


def test_unsupported_extended_features_are_left_out():
    cases = [
        case("a", "passed", "v2-rest"),
        case("b", "unsupported", "v2-rest", "v2-binary-tensor"),
        case("c", "unsupported", "v2-rest", "hf-v2-kwargs", task="question-answering"),
    ]
    result = evaluate_profile(REST, cases, HAVE)
    assert result.result == "success"
    assert result.counts.unsupported == 2
    assert "v2-binary-tensor" in result.unsupported_extended
    assert "task-question-answering" in result.unsupported_extended


def test_a_failed_check_is_a_failure_naming_it():
    cases = [
        case("a", "passed", "v2-rest"),
        case("b", "failed", "v2-rest", "hf-v2-kwargs", task="fill-mask"),
    ]
    result = evaluate_profile(REST, cases, HAVE)
    assert result.result == "failure"
    assert "1 check(s) failed: b" in result.reason
    assert result.failed_checks == ["b"]


def test_a_missing_core_feature_is_a_failure():
    result = evaluate_profile(PROFILES["openai"], [case("a", "passed", "v2-rest")], HAVE)
    assert result.result == "failure"
    assert result.missing_core == ["openai"]


def test_a_core_check_that_could_not_run_is_partial_not_a_failure():
    """No evidence of non-conformance, but not all of the profile was shown either."""
    cases = [case("a", "passed", "v2-grpc"), case("b", "unsupported", "v2-grpc")]
    result = evaluate_profile(PROFILES["oip-grpc"], cases, {"v2-grpc"})
    assert result.result == "partial"
    assert "core check(s) could not run: b" in result.reason


def test_a_core_check_lacking_only_an_extended_feature_counts_as_that_feature():
    """servegate's numeric echo model is a model of an extended task feature: a core check that
    needs it is unsupported with that evidence, not a hole in the core."""
    no_numeric = case("a", "unsupported", "v2-rest")
    no_numeric.unsupported = UnsupportedRecord(features=["task-custom-numeric"])
    unexplained = case("b", "unsupported", "v2-rest")
    unexplained.unsupported = UnsupportedRecord(features=[], reason="no usable model")
    passed = case("c", "passed", "v2-rest")
    assert evaluate_profile(REST, [passed, no_numeric], HAVE).result == "success"
    assert evaluate_profile(REST, [passed, no_numeric, unexplained], HAVE).result == "partial"


def test_a_skipped_check_is_partial():
    cases = [case("a", "passed", "v2-rest"), case("b", "skipped", "v2-rest")]
    assert evaluate_profile(REST, cases, HAVE).result == "partial"


def test_no_check_run_is_partial():
    result = evaluate_profile(REST, [case("b", "unsupported", "v2-rest", "v2-binary-tensor")], HAVE)
    assert (result.result, result.reason) == ("partial", "no check of this profile ran")


def test_checks_of_other_protocols_do_not_belong():
    cases = [case("a", "passed", "v2-rest"), case("o", "failed", "openai", "openai-chat")]
    assert evaluate_profile(REST, cases, HAVE).result == "success"


def test_a_report_shows_requested_profiles_else_those_whose_core_is_supported():
    assert profiles_for({"v2-rest", "v1"}, []) == ["oip-rest", "kserve-v1"]
    assert profiles_for({"v2-rest"}, ["openai"]) == ["openai"]


def test_unknown_profile_is_named():
    assert parse_profiles(" oip-rest,openai ,oip-rest") == ("oip-rest", "openai")
    with pytest.raises(ValueError, match="unknown profile.*nope.*known: oip-rest"):
        parse_profiles("oip-rest,nope")


def test_protocol_of_a_check():
    assert protocol_of(["v2-grpc", "hf-v2-input0"]) == "V2 gRPC"
    assert protocol_of(["v2-rest", "hf-v2-kwargs"]) == "V2 REST"
    assert protocol_of(["openai-chat"]) == "OpenAI"
    assert protocol_of([]) == "other"


def test_unknown_profile_option_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:hypothesispytest", "--profile=oip-rest,nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--profile: unknown profile(s) nope" in result.stderr.str()
