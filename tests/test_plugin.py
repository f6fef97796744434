"""The pytest plugin end to end against a small V2 server: discovery, unsupported checks,
reports, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servegate.exit_codes import TARGET_UNREACHABLE, TARGET_UNUSABLE

CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance"


def run_suite(pytester: pytest.Pytester, *args: str, path: Path = CONFORMANCE) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        str(path), "-p", "no:cacheprovider", f"--reports-dir={pytester.path / 'reports'}", *args
    )


def test_suite_against_a_target_reports_per_check(pytester, tiny_server):
    url = tiny_server.target.http_url
    # the health checks only: the small server is no complete V2 server
    result = run_suite(pytester, f"--target={url}", "-rs", path=CONFORMANCE / "test_health.py")
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes and "error" not in outcomes, result.stdout.str()
    assert result.ret == 0
    report = json.loads(
        (
            pytester.path / "reports" / f"conformance-127.0.0.1-{url.rsplit(':', 1)[1]}.json"
        ).read_text()
    )
    assert report["counts"]["passed"] == outcomes["passed"]
    passed = {c["name"].split("[")[0] for c in report["cases"] if c["outcome"] == "passed"}
    assert {"test_server_live_returns_200", "test_server_ready_returns_200"} <= passed
    # gRPC and V1 are not served: unsupported, not failed and not silently skipped
    assert report["counts"]["unsupported"] >= 2
    names = {c["name"]: c for c in report["cases"]}
    assert (
        names["test_grpc_server_live_and_ready[127.0.0.1-" + url.rsplit(":", 1)[1] + "]"]["outcome"]
        == "unsupported"
    )
    assert "summary.md" in {p.name for p in (pytester.path / "reports").iterdir()}


def test_unreachable_target_is_one_clear_line(pytester):
    result = run_suite(pytester, "--target=http://127.0.0.1:9")
    assert result.ret == TARGET_UNREACHABLE
    out = result.stdout.str() + result.stderr.str()
    assert "target http://127.0.0.1:9 does not answer" in out
    assert "Traceback" not in out
    # the report is still written, with the reason, so that the gate can say why
    report = json.loads((pytester.path / "reports" / "conformance-127.0.0.1-9.json").read_text())
    assert report["result"] == "failure"
    assert report["error"]["kind"] == "unreachable"
    assert report["error"]["exit_code"] == TARGET_UNREACHABLE
    assert "does not answer" in report["error"]["message"]


def test_malformed_target_is_a_usage_error(pytester):
    result = run_suite(pytester, "--target=127.0.0.1:8080")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "expected an http:// or https:// URL" in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_declared_model_that_is_not_served_is_named(pytester, tiny_server):
    result = run_suite(
        pytester, f"--target={tiny_server.target.http_url}", "--model=bert-large=fill-mask"
    )
    assert result.ret == TARGET_UNUSABLE
    out = result.stdout.str()
    assert "--model bert-large: the target does not serve it" in out
    assert "tiny-text-classification" in out
    # what was asked, and what came back
    assert "/v2/models/bert-large/ready -> 200" in out
