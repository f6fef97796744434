"""The HTML report renders in a real browser: headless Debian chromium takes a screenshot, and
the screenshot shows the conformance matrix's coloured cells, the load table and the plot.

Needs `chromium` (apt-get install -y chromium; .ci/run installs it) and Pillow; skipped with
that reason when either is missing."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from servegate.report.conformance import TargetRun, write_reports
from servegate.report.html import COLOURS
from servegate.report.schema import Case
from servegate.targets import Target

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: the plot's colour and size: a solid rectangle nothing else on the page has
PLOT_RGB = (255, 0, 255)
PLOT_SIZE = (320, 120)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG, made without an imaging library."""
    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))


def make_page(folder: Path) -> Path:
    cases = {
        "mlserver": ["passed", "passed", "failed"],
        "kserve": ["passed", "passed", "unsupported"],
    }
    runs = []
    for slot, outcomes in cases.items():
        target = Target(
            name=slot,
            http_url=f"http://{slot}:8080",
            implementation=slot,
            features=frozenset({"v2-rest"}),
        )
        runs.append(
            TargetRun(
                slot,
                target,
                [
                    Case(
                        check=f"t.py::test_{i}",
                        nodeid=f"t.py::test_{i}[{slot}]",
                        name=f"test_{i}[{slot}]",
                        features=["v2-rest"],
                        outcome=o,
                        task=("fill-mask" if i == 2 else None),
                    )
                    for i, o in enumerate(outcomes)
                ],
            )
        )
    (folder / "load-v2.json").write_text(
        '{"name": "V2 REST load", "valid": true, "summary": {"requests_per_second": 41.2},'
        ' "rows": [{"users": 1, "p50_ms": 12.5, "p99_ms": 30.1},'
        ' {"users": 8, "p50_ms": 20.0, "p99_ms": 61.7}]}'
    )
    (folder / "load-v2-latency.png").write_bytes(png(*PLOT_SIZE, PLOT_RGB))
    write_reports(folder, runs, started=0.0)
    return folder / "report.html"


def test_html_report_renders_tables_and_plots(tmp_path):
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless browser: apt-get install -y chromium (the CI script does)")
    image = pytest.importorskip("PIL.Image", reason="Pillow reads the screenshot (dev extra)")
    page = make_page(tmp_path)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1280,2200",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pixels = image.open(shot).convert("RGB")
    counts = {colour: n for n, colour in pixels.getcolors(maxcolors=1 << 24)}

    def area(colour: tuple[int, int, int]) -> int:
        return counts.get(colour, 0)

    # the matrix: a passed, a failed and an unsupported cell, each a filled table cell
    for state in ("pass", "fail", "unsupported"):
        assert area(rgb(COLOURS[state])) > 1500, state
    # the load table's header row
    assert area(rgb(COLOURS["load_header"])) > 1500
    # the plot, embedded, drawn at its own size
    assert area(PLOT_RGB) >= 0.95 * PLOT_SIZE[0] * PLOT_SIZE[1]
    html = page.read_text()
    assert "V2 REST load" in html and "requests_per_second" in html and "61.7" in html
