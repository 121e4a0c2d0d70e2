"""Report rendering: HTML + Markdown tables carry the figures, PNGs are real images, and the page renders."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from report_fixture import report_data

from polykws.pipeline.report import render_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs: list[str] = []
        self.cells: list[str] = []
        self.stack: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        if tag in ("td", "th"):
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells[-1] += data


def test_report_files_and_tables(tmp_path):
    data = report_data()
    written = render_report(data, tmp_path)
    names = {p.name for p in written}
    assert {"index.html", "report.md", "accuracy_vs_bytes.png", "flash_budget.png", "streaming_det.png", "confusion_de.png", "confusion_uk.png"} <= names
    page = (tmp_path / "index.html").read_text()
    parser = _Collect()
    parser.feed(page)
    # Every referenced image exists and is a decodable PNG of a sane size.
    import matplotlib.image as mpimg

    assert len(parser.imgs) == 3 + 4
    for src in parser.imgs:
        img = mpimg.imread(tmp_path / src)
        assert img.shape[0] > 150 and img.shape[1] > 150, src
    cells = parser.cells
    # Per-language table: keywords, test clips, float/int8 accuracy, FRR at 1 FA/h, updated params, blob bytes.
    i = cells.index("de")
    assert cells[i : i + 11] == ["de", "swr", "1,000", "null, eins, zwei, drei (+2 filler)", "40", "90.0%", "89.5%", "-0.5 pt", "25.0%", "1,234", "2,100"]
    # Flash budget: base + blobs against N full models.
    shared = 45856 + 2100 + 2110 + 2120
    assert f"{shared:,}" in cells and f"{4 * 45856:,}" in cells
    assert f"shared layout uses {100 * shared / (4 * 45856):.1f}%" in cells
    assert "Firmware stage skipped: TFLM_DIR is not set" in page
    md = (tmp_path / "report.md").read_text()
    assert "| de | swr | 1,000 | null, eins, zwei, drei (+2 filler) | 40 | 90.0% | 89.5% | -0.5 pt | 25.0% | 1,234 | 2,100 |" in md
    # Streaming view: per language FRR at 0.5 and 1 FA/h, the shipped threshold (and when validation missed the target).
    assert "| de | 1.25 (1.00) | 400 | 30.0% | 25.0% | 200 | 30.0% | 0.8 | 0.31 |" in md
    assert "| uk | 1.25 (1.00) | 402 | 50.0% | 45.0% | 202 (val misses 1 FA/h) | 50.0% | 2.8 | 0.31 |" in md
    assert "![DET curves](streaming_det.png)" in md
    assert "![accuracy vs bytes](accuracy_vs_bytes.png)" in md and "Skipped: TFLM_DIR is not set" in md
    # Method comparison: means over the three languages.
    assert "| swr | 1,000 | 3 | 1 | 1,100 | 82.0% | 81.6% | 2,317 |" in md
    assert "| **mean of 3** |  |  |  | 123 | **85.0%** | **84.5%** | -0.5 pt | 35.0% | 1,235 | 2,110 |" in md


def test_report_firmware_rows_and_missing_values(tmp_path):
    data = report_data(firmware_measured=True)
    data["languages"][0]["int8_acc"] = None  # not measured: shown as "-", never invented
    data["languages"][0]["confusion"] = None
    render_report(data, tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "mps2-an386" in page and "7,700,000" in page and "skipped" not in page.lower().split("firmware")[1][:200]
    parser = _Collect()
    parser.feed(page)
    i = parser.cells.index("de")
    assert parser.cells[i + 6] == "-" and parser.cells[i + 7] == "-"
    assert not (tmp_path / "confusion_de.png").exists()
    # QEMU scores a subset of the test split; the firmware table says so, so its accuracy is not
    # mistaken for the language table's (which scores all 410 clips).
    j = parser.cells.index("mps2-an386")
    assert parser.cells[j + 3] == "50-clip subset of 410"
    assert "| mps2-an386 | cmsis-nn | de | 50-clip subset of 410 |" in (tmp_path / "report.md").read_text()


def test_report_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    render_report(report_data(), a)
    render_report(report_data(), b)
    for p in sorted(a.iterdir()):
        assert p.read_bytes() == (b / p.name).read_bytes(), p.name


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    render_report(report_data(), tmp_path / "report")
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
             f"--screenshot={shot}", "--window-size=1280,4000", (tmp_path / "report" / "index.html").as_uri()],
            check=True, capture_output=True, timeout=120,
        )
    import matplotlib.image as mpimg

    img = (mpimg.imread(shot)[..., :3] * 255).astype(np.int16)
    assert img.shape[:2] == (4000, 1280)
    # The PNG figures really load in the page: the flash plot's base colour (#4c72b0) and the
    # confusion matrices' dark blue occur only inside the images, not in the HTML's own CSS.
    base_blue = np.abs(img - np.array([0x4C, 0x72, 0xB0])).sum(-1) < 12
    dark_blue = np.abs(img - np.array([0x08, 0x30, 0x6B])).sum(-1) < 40
    assert base_blue.sum() > 2000, "flash budget figure not rendered"
    assert dark_blue.sum() > 500, "confusion matrices not rendered"
    non_white = (img.sum(-1) < 700).mean()
    assert 0.02 < non_white < 0.6


def test_report_lists_every_skip_and_warning(tmp_path):
    data = report_data()
    render_report(data, tmp_path / "none")
    assert "No file was skipped." in (tmp_path / "none" / "index.html").read_text()
    data["skips"] = [{"stage": "scan", "reason": "corrupt", "files": 3, "list": "scan/skipped.json"},
                     {"stage": "features/uk", "reason": "silent", "files": 1, "list": "features/uk/skipped.json"}]
    data["warnings"] = ["scan: xx/solo: 1 clip(s), none in val or test"]
    render_report(data, tmp_path / "some")
    page = (tmp_path / "some" / "index.html").read_text()
    parser = _Collect()
    parser.feed(page)
    i = parser.cells.index("corrupt")
    assert parser.cells[i - 1 : i + 3] == ["scan", "corrupt", "3", "scan/skipped.json"]
    assert "features/uk" in parser.cells and "xx/solo: 1 clip(s), none in val or test" in page
    md = (tmp_path / "some" / "report.md").read_text()
    assert "| scan | corrupt | 3 | scan/skipped.json |" in md and "No file was skipped" not in md
