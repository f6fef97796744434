"""Secrets never reach a report or a log: credential headers, API keys, HF_TOKEN, and the
exact values a run was given, wherever they turn up (a server that echoes them included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from servegate.redaction import (
    REDACTED,
    redact_data,
    redact_headers,
    redact_text,
    secrets_from,
)
from tests.servers.https_v2 import make_certs, start_https_v2

TOKEN = "abcdef-token-123456"
HF = "hf_AbCdEfGhIjKlMnOp"


def test_credential_headers_are_redacted_by_name():
    headers = {
        "Authorization": "Bearer x",
        "X-Api-Key": "k",
        "X-Auth-Token": "t",
        "Cookie": "c",
        "Content-Type": "application/json",
    }
    out = redact_headers(headers)
    assert out["Content-Type"] == "application/json"
    assert {out[k] for k in headers if k != "Content-Type"} == {REDACTED}


@pytest.mark.parametrize(
    "text, secret",
    [
        ("Authorization: Bearer eyJhbGciOi.J9xyz", "eyJhbGciOi.J9xyz"),
        ("token hf_AbCdEfGhIjKlMnOp in a log line", HF),
        ("OPENAI_API_KEY=sk-proj-1234567890abc", "sk-proj-1234567890abc"),
        ("HF_TOKEN=whatever-value started", "whatever-value"),
        ('{"api_key": "k-123456789", "n": 1}', "k-123456789"),
        ("GET /v1/models?api_key=qwerty123&x=1", "qwerty123"),
        ("https://user:pa55word@host/v2", "pa55word"),
    ],
)
def test_secret_shapes_are_redacted_in_text(text, secret):
    out = redact_text(text)
    assert secret not in out
    assert REDACTED in out


def test_known_values_are_redacted_wherever_they_appear():
    secrets = secrets_from({"Authorization": f"Bearer {TOKEN}"}, {"HF_TOKEN": "plainvalue99"})
    assert TOKEN in secrets and "plainvalue99" in secrets
    text = f"echoed {TOKEN} and plainvalue99 back"
    assert redact_text(text, secrets) == f"echoed {REDACTED} and {REDACTED} back"


def test_ordinary_text_is_left_alone():
    text = "status 404, expected 200; bearer of news; token classification [0.5, 1.0]"
    assert redact_text(text, ("ab",)) == text


def test_structured_data_keeps_its_shape():
    data = {"request_headers": {"authorization": "Bearer zzz"}, "body": [f"x {TOKEN}"], "n": 2}
    assert redact_data(data, (TOKEN,)) == {
        "request_headers": {"authorization": REDACTED},
        "body": [f"x {REDACTED}"],
        "n": 2,
    }


CHECKS = (
    '''
import pytest
from servegate.checks import expect_status


@pytest.mark.features("v2-rest")
def test_live(v2):
    """GET /v2/health/live returns 200."""
    expect_status(v2.live(), 200, "GET /v2/health/live returns 200")


@pytest.mark.features("v2-rest")
def test_metadata(v2):
    """GET /v2/models/{m} returns 200."""
    print("client sends Bearer '''
    + TOKEN
    + """")
    expect_status(v2.model_metadata("echo-text-classification"), 200,
                  "GET /v2/models/{m} returns 200")
"""
)


def test_no_secret_in_any_report_or_log(pytester, tmp_path, monkeypatch):
    pytest.importorskip("cryptography")
    certs = make_certs(tmp_path)
    server = start_https_v2(certs, token=TOKEN)
    monkeypatch.setenv("HF_TOKEN", HF)
    try:
        pytester.makepyfile(test_checks=CHECKS)
        reports = pytester.path / "reports"
        result = pytester.runpytest_subprocess(
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            "-rA",
            f"--target={server.url}",
            f"--ca-bundle={certs.ca}",
            f"--header=Authorization: Bearer {TOKEN}",
            f"--reports-dir={reports}",
            f"--junitxml={reports / 'junit.xml'}",
        )
    finally:
        server.stop()
    result.assert_outcomes(passed=1, failed=1)
    # the server echoed the bearer token into its 404 body: the report has the exchange...
    import json

    report = json.loads(next(reports.glob("conformance-*.json")).read_text())
    failed = next(c for c in report["cases"] if c["outcome"] == "failed")
    exchange = failed["failure"]["exchange"]
    assert exchange["status"] == 404
    assert exchange["request_headers"]["Authorization"] == REDACTED
    assert "echo-text-classification" in exchange["url"]
    # ...and no file, nor the terminal, holds the token or HF_TOKEN's value
    files = [p for p in reports.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".json", ".yaml", ".md", ".html", ".xml"}
    for path in files:
        text = Path(path).read_text(errors="replace")
        assert TOKEN not in text, path
        assert HF not in text, path
    out = result.stdout.str() + result.stderr.str()
    assert TOKEN not in out and HF not in out
    assert "client sends ***" in out  # captured output is redacted, not dropped
