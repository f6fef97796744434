"""A run lasts its --run-time even when the locustfiles took long to import (a busy machine):
gevent's loop clock, seconds old after a slow import, once made Locust's run-time timer fire at
once, so the run ended before it started and its results described nothing."""

from __future__ import annotations

import json

from tests.test_load_scenarios import LOADTESTS, _serve, locust

SLOW_IMPORT = f"""
import sys
import time

sys.path.insert(0, {str(LOADTESTS)!r})
from v2_rest import V2RestUser  # noqa: F401,E402

# what a slow import on a busy machine does: the event loop does not run meanwhile
_started = time.perf_counter()
while time.perf_counter() - _started < 3:
    pass
"""


def test_a_slow_import_does_not_cut_the_run_short(tmp_path):
    locustfile = tmp_path / "slow_locustfile.py"
    locustfile.write_text(SLOW_IMPORT)
    for port in _serve("server.py", "--protocols", "v2"):
        done = locust(
            tmp_path,
            port,
            "-f",
            str(locustfile),
            "--model",
            "null",
            "--report-name",
            "slow",
            "--metrics-url",
            "off",
            seconds=2,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "load-slow.json").read_text())
    # the run's own length, not a speed: cut short, it lasted well under a second
    assert doc["duration_s"] >= 1.5, doc["duration_s"]
