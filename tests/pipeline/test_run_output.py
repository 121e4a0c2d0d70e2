"""What `polykws run` prints: a table readable at 80 columns and in logs, and where the shipped files are."""

from __future__ import annotations

from pathlib import Path

from report_fixture import report_data
from rich.console import Console

from polykws.pipeline.engine import RunResult, StageOutcome
from polykws.pipeline.run import artifact_lines, summary_table


def _render(width: int) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"), color_system=None)
    console.print(summary_table(report_data()))
    return console.export_text()


def test_summary_table_fits_80_columns_with_no_cut_cells():
    text = _render(80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "…" not in text, "a cell was cut:\n" + text
    for word in ["pretrained", "blob B"] + [r["method"] for r in report_data()["languages"]]:
        assert word in text, word


def test_summary_table_names_every_language():
    text = _render(80)
    data = report_data()
    assert f"{data['base']['language']} base" in text
    for r in data["languages"]:
        assert any(line.split()[:1] == [r["lang"]] for line in text.splitlines()), r["lang"]


def test_run_prints_the_pack_and_flash_image_paths(tmp_path):
    (tmp_path / "flash.bin").write_bytes(b"\0")
    pack = StageOutcome("pack", "pack", "k", "ran", {}, tmp_path, str(tmp_path), 0.0)
    assert artifact_lines(RunResult({"pack": pack}, 0.0)) == [f"pack: {tmp_path}", f"flash image: {Path(tmp_path) / 'flash.bin'}"]
    assert artifact_lines(RunResult({}, 0.0)) == []
