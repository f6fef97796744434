"""End to end: the conformance suite starts both reference servers itself, runs the first
slice against each, writes its reports and leaves no server behind.

The first run creates the servers' envs under .servegate/ (minutes); later runs reuse them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".servegate"

pytestmark = pytest.mark.slow


def _server_processes() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(STATE_DIR) in cmdline and ("mlserver" in cmdline or "kserve" in cmdline):
            found.append(f"{pid}: {cmdline[:200]}")
    return found


def test_first_slice_passes_on_both_reference_servers(pytester: pytest.Pytester) -> None:
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess(
        str(ROOT / "conformance"),
        "-p",
        "no:cacheprovider",
        f"--state-dir={STATE_DIR}",
        f"--reports-dir={reports}",
        f"--junitxml={reports / 'junit.xml'}",
        "-rfEs",
        timeout=3000,
    )
    assert result.ret == 0, result.stdout.str()[-5000:]
    assert (reports / "junit.xml").exists()
    expected_tasks = {
        "mlserver": {
            "text-classification",
            "token-classification",
            "question-answering",
            "fill-mask",
            "text-generation",
            "text2text-generation",
            "feature-extraction",
            "image-classification",
        },
        "kserve": {
            "text-classification",
            "token-classification",
            "fill-mask",
            "text-generation",
            "text2text-generation",
            "feature-extraction",
        },
    }
    for server, tasks in expected_tasks.items():
        report = json.loads((reports / f"conformance-{server}.json").read_text())
        assert report["result"] == "success"
        passed_tasks = {c["task"] for c in report["cases"] if c["outcome"] == "passed"}
        assert tasks <= passed_tasks, f"{server}: no passing check for {tasks - passed_tasks}"
        assert (reports / "logs" / f"{server}-cpu.log").exists()
    assert _server_processes() == []
