"""The side-by-side section of the HTML page: where implementations differ, each one's cited
deviations and what discovery found absent."""

from __future__ import annotations

import time

from servegate.report.conformance import build_report
from servegate.report.matrix import differences, implementations_html
from servegate.report.schema import (
    Case,
    ConformanceReport,
    DecisionRecord,
    DeviationRecord,
    EvidenceRecord,
)

CITED = "https://example.invalid/upstream/issues/1"


def case(
    check: str,
    outcome: str,
    deviation: DeviationRecord | None = None,
    features: tuple[str, ...] = ("v2-rest",),
) -> Case:
    return Case(
        check=f"conformance/test_x.py::{check}",
        nodeid=f"conformance/test_x.py::{check}",
        name=check,
        features=list(features),
        outcome=outcome,  # type: ignore[arg-type]
        deviation=deviation,
    )


def report(slot: str, cases: list[Case]) -> ConformanceReport:
    out = build_report(slot, None, cases, time.time(), features=["v2-rest"])
    out.implementation.description = f"{slot} 1.0"
    return out


def reports() -> list[ConformanceReport]:
    entry = DeviationRecord(id="b-422-detail", verdict="expected", reference=CITED, reason="why")
    # neither offers OpenAI (no openai feature): its checks are no row, whatever their outcome
    chat = ("openai", "openai-chat")
    a = report(
        "a",
        [
            case("test_same", "passed"),
            case("test_differs[x]", "passed"),
            case("test_chat", "unsupported", features=chat),
        ],
    )
    b = report(
        "b",
        [
            case("test_same", "passed"),
            case("test_differs[x]", "expected-deviation", entry),
            case("test_only_b", "failed"),
            case("test_chat", "failed", features=chat),
        ],
    )
    b.implementation.discovery = [
        DecisionRecord(
            feature="v2-repository",
            supported=False,
            how="the repository index answers 400",
            evidence=[EvidenceRecord(request="POST /v2/repository/index", status=400)],
        )
    ]
    return [a, b]


def test_only_checks_that_differ_or_do_not_pass_are_rows() -> None:
    rows = differences(reports())
    assert set(rows) == {"test_differs", "test_only_b"}
    assert rows["test_differs"]["a"].worst == "passed"
    assert rows["test_differs"]["b"].worst == "expected-deviation"
    assert "a" not in rows["test_only_b"]


def test_page_cites_each_deviation_and_the_evidence_of_absence() -> None:
    page = "\n".join(implementations_html(reports()))
    assert "Implementations side by side" in page
    assert "b-422-detail" in page and f"href='{CITED}'" in page
    assert "v2-repository" in page and "POST /v2/repository/index → 400" in page
    # the row of a check only one implementation ran shows a dash for the other
    assert "test_only_b</td><td class='none'>-</td><td class='fail'>" in page


def test_a_single_implementation_gets_no_side_by_side_section() -> None:
    assert implementations_html(reports()[:1]) == []
