"""The conformance report: schema round trips, failures with their exchange, Markdown for a
CI summary, the comparison of two reports, and `servegate report`."""

from __future__ import annotations

import json

import pytest

from servegate.entry.cli import main
from servegate.errors import ServegateError
from servegate.protocols.exchange import Exchange
from servegate.report.compare import compare, render_html
from servegate.report.conformance import TargetRun, build_report, exchange_record, write_reports
from servegate.report.markdown import render_markdown
from servegate.report.schema import (
    REPORT_VERSION,
    Case,
    ConformanceReport,
    Failure,
    read_report,
    write_json,
    write_yaml,
)
from servegate.targets import ModelInfo, Target

TARGET = Target(
    name="mlserver",
    http_url="http://127.0.0.1:8080",
    implementation="MLServer 1.7.1 with mlserver-huggingface 1.7.1",
    features=frozenset({"v2-rest", "hf-v2-kwargs", "task-fill-mask"}),
    models={"tiny-fill-mask": ModelInfo("tiny-fill-mask", "fill-mask")},
)


def make_cases(metadata_outcome: str = "failed") -> list[Case]:
    exchange = Exchange(
        "v2-rest",
        "GET",
        "http://127.0.0.1:8080/v2/models/m",
        request_headers={"Authorization": "Bearer zzzzzzzz"},
        status=404,
        response_headers={"content-type": "application/json"},
        response_body='{"error": "no model m"}',
    )
    return [
        Case(
            check="c.py::test_live",
            nodeid="c.py::test_live[mlserver]",
            name="test_live[mlserver]",
            features=["v2-rest"],
            outcome="passed",
            rule="GET /v2/health/live returns 200",
        ),
        Case(
            check="c.py::test_metadata",
            nodeid="c.py::test_metadata[mlserver]",
            name="test_metadata[mlserver]",
            features=["v2-rest"],
            outcome=metadata_outcome,
            message="rule: ...",
            failure=Failure(
                rule="GET /v2/models/{m} returns 200",
                problem="status 404, expected 200",
                exchange=exchange_record(exchange),
            )
            if metadata_outcome == "failed"
            else None,
        ),
        Case(
            check="c.py::test_infer[task=fill-mask]",
            nodeid="c.py::test_infer[mlserver-fill-mask]",
            name="test_infer[mlserver-fill-mask]",
            task="fill-mask",
            features=["v2-rest", "hf-v2-kwargs"],
            outcome="expected-deviation",
            message="expected deviation of MLServer (https://example/issue/1): why",
        ),
    ]


def test_json_and_yaml_round_trip_through_the_schema(tmp_path):
    report = build_report(
        "mlserver",
        TARGET,
        make_cases(),
        0.0,
        image="seldonio/mlserver:1.7.1",
        requested_profiles=["oip-rest"],
    )
    assert report.report_version == REPORT_VERSION
    assert (report.implementation.name, report.implementation.version) == ("MLServer", "1.7.1")
    for path in (write_json(report, tmp_path / "r.json"), write_yaml(report, tmp_path / "r.yaml")):
        again = read_report(path)
        assert again == report
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["counts"] == {
        "passed": 1,
        "failed": 1,
        "expected-deviation": 1,
        "unsupported": 0,
        "skipped": 0,
        "error": 0,
    }
    profile = data["profiles"][0]
    assert (profile["name"], profile["result"], profile["requested"]) == (
        "oip-rest",
        "failure",
        True,
    )
    exchange = data["cases"][1]["failure"]["exchange"]
    assert exchange["request_headers"]["Authorization"] == "***"
    assert exchange["status"] == 404


def test_a_report_that_breaks_the_schema_is_refused(tmp_path):
    report = build_report("mlserver", TARGET, make_cases(), 0.0)
    data = json.loads(report.model_dump_json(by_alias=True))
    data["cases"][0]["outcome"] = "sort of"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ServegateError, match=r"cases\.0\.outcome"):
        read_report(tmp_path / "bad.json")


def test_markdown_names_rule_request_and_response():
    md = render_markdown(build_report("mlserver", TARGET, make_cases(), 0.0))
    assert "| oip-rest | ❌ failure |" in md
    assert "GET /v2/models/{m} returns 200" in md
    assert "request: `GET http://127.0.0.1:8080/v2/models/m`" in md
    assert "response: `404` (application/json)" in md
    assert '{"error": "no model m"}' in md
    assert "### Expected deviations (1)" in md


def test_written_files_and_rebuild(tmp_path, capsys):
    reports, paths = write_reports(
        tmp_path, [TargetRun("mlserver", TARGET, make_cases())], started=0.0
    )
    names = {p.name for p in paths}
    assert names == {
        "conformance-mlserver.json",
        "conformance-mlserver.yaml",
        "conformance-mlserver.md",
        "summary.md",
        "report.html",
    }
    (tmp_path / "report.html").unlink()
    assert main(["--reports-dir", str(tmp_path), "report"]) == 0
    assert (tmp_path / "report.html").is_file()
    capsys.readouterr()
    assert main(["report", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "expected-deviation" in json.dumps(schema)


def test_comparison_shows_regressions_and_fixes(tmp_path, capsys):
    base = build_report("prod", TARGET, make_cases("passed"), 0.0, image="img:1")
    cand = build_report("cand", TARGET, make_cases("failed"), 0.0, image="img:2")
    result = compare(base, cand)
    assert [(c.check, c.kind) for c in result.changes] == [("c.py::test_metadata", "regression")]
    assert [p.name for p in result.profile_regressions] == ["oip-rest"]
    assert "regression" in render_html(result)
    write_json(base, tmp_path / "base.json")
    write_json(cand, tmp_path / "cand.json")
    code = main(
        [
            "compare",
            str(tmp_path / "base.json"),
            str(tmp_path / "cand.json"),
            "--fail-on-regression",
            "--html",
            str(tmp_path / "cmp.html"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "| regression | c.py::test_metadata | passed | failed |" in out
    assert "| implementation | img:1 | img:2 |" in out
    assert (tmp_path / "cmp.html").is_file()
    assert (
        main(
            [
                "compare",
                str(tmp_path / "cand.json"),
                str(tmp_path / "base.json"),
                "--fail-on-regression",
            ]
        )
        == 0
    )


def test_compare_fail_on_change_lists_every_check_that_ended_differently(tmp_path, capsys):
    """Two runs of one implementation (local and container) must agree on every check: any
    change fails, a fix as much as a regression, each listed with both outcomes."""
    write_json(build_report("a", TARGET, make_cases("failed"), 0.0), tmp_path / "a.json")
    write_json(build_report("b", TARGET, make_cases("passed"), 0.0), tmp_path / "b.json")
    args = ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--fail-on-change"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "servegate compare: 2 difference(s):" in out
    assert "  c.py::test_metadata: base failed, candidate passed" in out
    assert "  profile oip-rest: base failure, candidate success" in out
    same = ["compare", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--fail-on-change"]
    assert main(same) == 0


def test_a_run_records_the_exchange_of_a_failed_check(pytester, tiny_server):
    pytester.makepyfile(
        test_checks='''
import pytest
from servegate.checks import expect_status

@pytest.mark.features("v2-rest")
def test_metadata(v2):
    """Model metadata answers."""
    expect_status(v2.model_metadata("tiny-text-classification"), 200,
                  "GET /v2/models/{m} returns 200")
'''
    )
    reports = pytester.path / "reports"
    pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
        f"--target={tiny_server.target.http_url}",
        f"--reports-dir={reports}",
        "--image=tiny:dev",
    )
    report = read_report(next(reports.glob("conformance-*.json")))
    (case,) = report.cases
    assert case.check == "test_checks.py::test_metadata"
    assert case.failure is not None and case.failure.exchange is not None
    assert case.failure.rule == "GET /v2/models/{m} returns 200"
    assert case.failure.problem == "status 404, expected 200"
    assert case.failure.exchange.status == 404
    assert case.failure.exchange.url.endswith("/v2/models/tiny-text-classification")
    assert report.implementation.image == "tiny:dev"
    assert isinstance(report, ConformanceReport)


def test_a_check_id_is_the_same_in_every_run_when_a_parameter_carries_a_function():
    """Two runs of one suite compare check by check: a case parameter whose repr holds a
    function's memory address must not make its check a different one in each run."""
    from dataclasses import dataclass

    from servegate.report.conformance import check_id

    @dataclass
    class Case:
        id: str
        build: object

        def __str__(self) -> str:
            return self.id

    first = check_id(
        "t.py::test_x[mlserver-a]", {"target": "mlserver", "case": Case("a", lambda: 1)}
    )
    again = check_id("t.py::test_x[kserve-a]", {"target": "kserve", "case": Case("a", lambda: 2)})
    assert first == again == "t.py::test_x[case=a]"
