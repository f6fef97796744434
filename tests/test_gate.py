"""The promotion gate: exit 0 only when every requested profile succeeds and the load
thresholds hold, the reason first; and the pytest run itself honouring --profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servegate.entry.cli import main

CHECKS = '''
import pytest
from servegate.checks import expect_status

MODE = "{mode}"


@pytest.mark.features("v2-rest")
def test_live(v2):
    """GET /v2/health/live returns 200."""
    expect_status(v2.live(), 200, "GET /v2/health/live returns 200")


@pytest.mark.features("v2-rest")
def test_ready(v2):
    """GET /v2/health/ready returns 200."""
    if MODE == "partial":
        pytest.skip("not checked in this run")
    expect_status(v2.ready(), 200, "GET /v2/health/ready returns 200")


@pytest.mark.features("v2-rest")
def test_metadata(v2):
    """GET /v2/models/{{m}} returns 200."""
    if MODE != "failure":
        return
    expect_status(v2.model_metadata("tiny-text-classification"), 200,
                  "GET /v2/models/{{m}} returns 200")


@pytest.mark.features("v2-grpc")
def test_grpc_live(v2_grpc):
    """ServerLive answers."""
'''


def run_checks(pytester, url: str, mode: str, *args: str) -> tuple[pytest.RunResult, Path]:
    pytester.makepyfile(test_checks=CHECKS.format(mode=mode))
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
        f"--target={url}",
        f"--reports-dir={reports}",
        *args,
    )
    return result, reports


def gate(capsys, reports: Path, *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()  # what came before (a pytester run's output) is not the gate's
    code = main(["--reports-dir", str(reports), "gate", *args])
    return code, capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    "mode, code, first",
    [
        ("success", 0, "servegate gate: PASS"),
        ("partial", 1, "servegate gate: FAIL: profile oip-rest on 127.0.0.1-"),
        ("failure", 1, "servegate gate: FAIL: profile oip-rest on 127.0.0.1-"),
    ],
)
def test_gate_exit_code_follows_the_profile_result(
    pytester, tiny_server, capsys, mode, code, first
):
    result, reports = run_checks(pytester, tiny_server.target.http_url, mode)
    assert result.ret == (1 if mode == "failure" else 0)
    status, lines = gate(capsys, reports, "--profile", "oip-rest")
    assert status == code
    assert lines[0].startswith(first)
    if mode != "success":
        assert f": {mode}: " in lines[0]
        assert "test_" in lines[0]  # the reason names the check


def test_pytest_run_fails_when_a_requested_profile_is_not_shown_though_no_check_failed(
    pytester, tiny_server
):
    # oip-grpc's core check cannot run: the target has no gRPC address
    result, reports = run_checks(
        pytester, tiny_server.target.http_url, "success", "--profile=oip-grpc"
    )
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "[servegate] profile gate failed: profile oip-grpc on" in result.stdout.str()
    report = json.loads(next(reports.glob("conformance-*.json")).read_text())
    assert report["requested_profiles"] == ["oip-grpc"]
    # nothing failed, but the profile's core was not shown: partial, which the gate refuses
    assert report["profiles"][0]["result"] == "partial"
    # and without --profile the same run passes: profiles only inform
    result, _ = run_checks(pytester, tiny_server.target.http_url, "success")
    assert result.ret == 0


@pytest.fixture(scope="module")
def passing_reports(tmp_path_factory) -> Path:
    """A report of a run where every oip-rest check passed, made without a server."""
    from servegate.report.conformance import TargetRun, write_reports
    from servegate.report.schema import Case
    from servegate.targets import Target

    folder = tmp_path_factory.mktemp("reports")
    target = Target(
        name="cand",
        http_url="http://x:8080",
        implementation="MLServer 1.7.1",
        features=frozenset({"v2-rest"}),
    )
    cases = [
        Case(
            check=f"t.py::test_{i}",
            nodeid=f"t.py::test_{i}[cand]",
            name=f"test_{i}[cand]",
            features=["v2-rest"],
            outcome="passed",
        )
        for i in range(3)
    ]
    write_reports(folder, [TargetRun("cand", target, cases)], started=0.0)
    return folder


def write_load(folder: Path, name: str, data: object) -> None:
    (folder / name).write_text(json.dumps(data))


THRESHOLDS = """
thresholds:
  - metric: summary.requests_per_second
    min: 20
  - metric: "scenarios.*.p99_ms"
    max: 800
"""


@pytest.mark.parametrize(
    "load, code, first",
    [
        (
            {"summary": {"requests_per_second": 31.5}, "scenarios": {"a": {"p99_ms": 120}}},
            0,
            "servegate gate: PASS",
        ),
        (
            {"summary": {"requests_per_second": 12.0}, "scenarios": {"a": {"p99_ms": 120}}},
            1,
            "servegate gate: FAIL: load load-v2.json summary.requests_per_second: 12 < min 20",
        ),
        (
            {"summary": {"requests_per_second": 31.5}, "scenarios": {"a": {"p99_ms": 950}}},
            1,
            "servegate gate: FAIL: load load-v2.json scenarios.a.p99_ms: 950 > max 800",
        ),
        (
            {"summary": {"requests_per_second": 31.5}},
            1,
            "servegate gate: FAIL: load metric scenarios.*.p99_ms: found in no load result",
        ),
        (
            {"valid": False, "invalid_reason": "Locust CPU above 90%", "summary": {}},
            1,
            "servegate gate: FAIL: load load-v2.json: run marked invalid: Locust CPU above 90%",
        ),
    ],
)
def test_load_thresholds(passing_reports, tmp_path, capsys, load, code, first):
    reports = tmp_path / "reports"
    reports.mkdir()
    for path in passing_reports.glob("conformance-*.json"):
        (reports / path.name).write_text(path.read_text())
    write_load(reports, "load-v2.json", load)
    (tmp_path / "t.yaml").write_text(THRESHOLDS)
    status, lines = gate(capsys, reports, "--thresholds", str(tmp_path / "t.yaml"))
    assert (status, lines[0][: len(first)]) == (code, first)


def test_load_result_own_breach_fails_even_without_thresholds(passing_reports, tmp_path, capsys):
    assert gate(capsys, passing_reports)[0] == 0
    reports = tmp_path / "r"
    reports.mkdir()
    for path in passing_reports.glob("conformance-*.json"):
        (reports / path.name).write_text(path.read_text())
    write_load(reports, "load-x.json", {"passed": False, "breaches": ["p99 1200 ms > 800 ms"]})
    status, lines = gate(capsys, reports)
    assert status == 1
    assert lines[0] == (
        "servegate gate: FAIL: load load-x.json: its thresholds broke: p99 1200 ms > 800 ms"
    )


def test_thresholds_required_without_load_results(passing_reports, tmp_path, capsys):
    (tmp_path / "t.yaml").write_text(THRESHOLDS)
    status, lines = gate(capsys, passing_reports, "--thresholds", str(tmp_path / "t.yaml"))
    assert status == 1 and "no load result matches" in lines[0]


def test_summary_is_appended_as_markdown(passing_reports, tmp_path, capsys):
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier\n")
    assert gate(capsys, passing_reports, "--summary", str(summary))[0] == 0
    text = summary.read_text()
    assert text.startswith("earlier\n### servegate gate: PASS")
    assert "| ✅ | profile oip-rest on cand |" in text


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "no conformance report in"),
        (lambda d: (d / "conformance-x.json").write_text("{not json"), "cannot read it"),
        (
            lambda d: (d / "conformance-x.json").write_text('{"report_version": 1}'),
            "report_version 1, this servegate reads version 2",
        ),
        (
            lambda d: (d / "conformance-x.json").write_text('{"report_version": 2}'),
            "not a valid conformance report",
        ),
    ],
)
def test_unreadable_inputs_exit_2_with_the_reason(tmp_path, capsys, setup, message):
    setup(tmp_path)
    status, lines = gate(capsys, tmp_path)
    assert status == 2
    assert lines[0].startswith("servegate gate: ERROR: ") and message in lines[0]


def test_bad_thresholds_file_exits_2(passing_reports, tmp_path, capsys):
    (tmp_path / "t.yaml").write_text("thresholds:\n  - metric: x\n")
    status, lines = gate(capsys, passing_reports, "--thresholds", str(tmp_path / "t.yaml"))
    assert status == 2 and "needs min or max" in lines[0]


def _run_document(valid: bool) -> dict:
    """A load-run result as the Locust side writes it, client-bound or not."""
    from servegate.load import results
    from servegate.load.metrics import Samples
    from servegate.load.validity import Validity

    samples = Samples()
    for i in range(100):
        samples.add("infer", 10.0 + i % 5, at=float(i) / 100)
    validity = Validity()
    if not valid:
        validity.cpu(97.0)
    return results.build_run_result(
        "v2", samples, started=0.0, ended=1.0, target={}, config={}, validity=validity.report()
    )


@pytest.mark.parametrize("valid", [True, False])
def test_a_load_run_marked_invalid_fails_a_gate_with_thresholds(
    passing_reports, tmp_path, capsys, valid
):
    """The gate reads the run's own ``validity.valid``, the field the writer writes."""
    reports = tmp_path / "reports"
    reports.mkdir()
    for path in passing_reports.glob("conformance-*.json"):
        (reports / path.name).write_text(path.read_text())
    write_load(reports, "load-v2.json", _run_document(valid))
    # limits by path, which every servegate reads, and limits on the run's own figures
    for text in (
        "thresholds: [{metric: totals.requests_per_s, min: 50}]\n",
        "min_throughput_rps: 50\nmax_p99_ms: 100\n",
    ):
        (tmp_path / "t.yaml").write_text(text)
        status, lines = gate(capsys, reports, "--thresholds", str(tmp_path / "t.yaml"))
        if valid:
            assert status == 0, lines
            continue
        assert status == 1
        assert lines[0] == (
            "servegate gate: FAIL: load load-v2.json: run marked invalid: cpu_warning: the load "
            "generator ran above 90 % CPU (max 97 %, 1 warnings)"
        )
    if valid:
        assert any("load-v2.json: min_throughput_rps, max_p99_ms hold" in line for line in lines)
    else:
        assert status == 1
        assert lines[0] == (
            "servegate gate: FAIL: load load-v2.json: run marked invalid: cpu_warning: the load "
            "generator ran above 90 % CPU (max 97 %, 1 warnings)"
        )
    # allow_invalid reads the figures all the same
    (tmp_path / "t.yaml").write_text("allow_invalid: true\nmin_throughput_rps: 50\n")
    assert gate(capsys, reports, "--thresholds", str(tmp_path / "t.yaml"))[0] == 0


def test_run_limits_apply_to_load_runs_through_the_locust_evaluator(
    passing_reports, tmp_path, capsys
):
    reports = tmp_path / "reports"
    reports.mkdir()
    for path in passing_reports.glob("conformance-*.json"):
        (reports / path.name).write_text(path.read_text())
    write_load(reports, "load-v2.json", _run_document(True))
    (tmp_path / "t.yaml").write_text("min_throughput_rps: 500\n")
    status, lines = gate(capsys, reports, "--thresholds", str(tmp_path / "t.yaml"))
    assert status == 1
    assert lines[0] == (
        "servegate gate: FAIL: load load-v2.json: throughput 100.00 req/s is below the minimum "
        "500 req/s"
    )
    # a run limit with no load run to apply to fails too: nothing to check is no pass
    (reports / "load-v2.json").unlink()
    write_load(reports, "load-other.json", {"points": []})
    status, lines = gate(capsys, reports, "--thresholds", str(tmp_path / "t.yaml"))
    assert status == 1 and "min_throughput_rps need a load run" in lines[0]


def test_a_load_result_from_a_newer_servegate_is_named_not_guessed(
    passing_reports, tmp_path, capsys
):
    reports = tmp_path / "reports"
    reports.mkdir()
    for path in passing_reports.glob("conformance-*.json"):
        (reports / path.name).write_text(path.read_text())
    write_load(reports, "load-v2.json", {**_run_document(True), "schema_version": 99})
    (tmp_path / "t.yaml").write_text("min_throughput_rps: 5\n")
    status, lines = gate(capsys, reports, "--thresholds", str(tmp_path / "t.yaml"))
    assert status == 1
    assert lines[0].startswith(
        "servegate gate: FAIL: load load-v2.json: unreadable: schema_version 99, this servegate "
        "reads up to 1"
    )


def test_a_load_run_written_before_goodput_and_telemetry_is_still_read(tmp_path):
    """Fields added later are optional: an earlier servegate's result keeps its meaning."""
    from servegate.load.document import LoadRun, parse_document

    old = _run_document(False)
    for key in ("goodput", "telemetry"):
        del old[key]
    doc = parse_document(json.loads(json.dumps(old)))
    assert isinstance(doc, LoadRun) and doc.is_valid() is False
    assert doc.invalid_why().startswith("cpu_warning: the load generator ran above 90 % CPU")


def test_files_chooses_which_results_the_gate_reads_and_require_whether_none_fails(
    passing_reports, tmp_path, capsys
):
    reports = tmp_path / "reports"
    reports.mkdir()
    for path in passing_reports.glob("conformance-*.json"):
        (reports / path.name).write_text(path.read_text())
    write_load(reports, "load-v2.json", _run_document(True))
    write_load(reports, "load-other.json", _run_document(False))
    th = tmp_path / "t.yaml"
    th.write_text('files: "load-v2*.json"\nmin_throughput_rps: 50\n')
    assert gate(capsys, reports, "--thresholds", str(th))[0] == 0  # the invalid one not read
    th.write_text("min_throughput_rps: 50\n")
    assert gate(capsys, reports, "--thresholds", str(th))[0] == 1  # every load-*.json
    th.write_text('files: "load-none*.json"\nrequire: false\n')
    assert gate(capsys, reports, "--thresholds", str(th))[0] == 0
    th.write_text('files: "load-none*.json"\n')
    status, lines = gate(capsys, reports, "--thresholds", str(th))
    assert status == 1 and "no load result matches" in lines[0]
