"""Expected-deviation entries: which checks and implementations they match, and bad files."""

from __future__ import annotations

import pytest

from servegate.deviations import Deviation, load_deviations
from servegate.errors import ServegateError


def entry(**kw) -> Deviation:
    base = dict(implementation="kserve", check="test_unknown_model_*", reference="r", reason="x")
    return Deviation(**{**base, **kw})


@pytest.mark.parametrize(
    ("implementation", "expected"),
    [
        (
            "servegate KServe HF server (huggingfaceserver 0.14.1 behaviour) on kserve 0.14.1 SDK",
            True,
        ),
        ("servegate-kserve-huggingface 0.14.1", True),
        ("kserve 0.15.0", True),
        ("kserver 1.0", False),
        ("MLServer 1.7.1", False),
    ],
)
def test_implementation_is_matched_as_a_word(implementation, expected):
    assert entry().matches("test_unknown_model_is_404[kserve]", implementation) is expected


def test_check_pattern_and_version_range():
    dev = entry(versions=">=0.14,<0.15")
    assert dev.matches("test_unknown_model_is_404[kserve]", "kserve 0.14.1")
    assert not dev.matches("test_unknown_model_is_404[kserve]", "kserve 0.15.0")
    assert not dev.matches("test_server_live[kserve]", "kserve 0.14.1")


def test_malformed_file_names_file_and_entry(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("deviations:\n  - implementation: kserve\n    check: test_x\n")
    with pytest.raises(ServegateError, match=r"x.yaml, entry 1: missing reference, reason"):
        load_deviations([path])


def test_unless_task_drops_the_entry_when_the_target_serves_that_task():
    dev = entry(unless_task="custom-numeric")
    name, impl = "test_unknown_model_is_404[kserve]", "kserve 0.14.1"
    assert dev.matches(name, impl, frozenset({"fill-mask"}))
    assert not dev.matches(name, impl, frozenset({"fill-mask", "custom-numeric"}))


def test_unless_task_is_read_from_the_file(tmp_path):
    path = tmp_path / "k.yaml"
    path.write_text(
        "deviations:\n  - implementation: kserve\n    check: test_x\n    reference: r\n"
        "    reason: why\n    unless_task: custom-numeric\n"
    )
    [dev] = load_deviations([path])
    assert dev.unless_task == "custom-numeric"
