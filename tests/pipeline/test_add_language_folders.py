"""`add-language --data` on folders as users keep them: the real digit sets as plain keyword folders,
an unreadable folder's error, and a summary that says "speakers" only when the ids are real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from polykws.cli import main


def test_an_unreadable_folder_stops_before_training_and_shows_the_tree(tmp_path, capsys):
    d = tmp_path / "mine"
    (d / "notes").mkdir(parents=True)
    (d / "notes" / "todo.txt").write_text("record more\n")
    rc = main(["add-language", "--data", str(d), "--lang", "xx", "--into", str(tmp_path / "pack")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "the folder as seen (two levels):\n  mine/\n    notes/\n      todo.txt" in err
    assert "keywords: <root>/<keyword>/<file>" in err and "e.g. one/man_4_01.mp3" in err
    assert not (tmp_path / "pack").exists()


def _result(speakers_from_names: bool):
    from polykws.datasets.check import DataCheck
    from polykws.pipeline.userdata import AddLanguageResult

    check = DataCheck("d", "keywords", "xx", [], [], [], 40, speakers_from_names)
    return AddLanguageResult(check, ("a", "_silence_"), 100, 0.98, 0.97, test_clips=51, test_speakers=46, flash_image=Path("f.bin"),
                             pack_dir=None, out=Path("w"), timings_s={})


def test_the_summary_says_held_out_speakers_only_when_the_speakers_are_real():
    assert _result(True).held_out == "held-out speakers (46 speakers, 51 test examples)"
    pseudo = _result(False).held_out
    assert "speakers (" not in pseudo and pseudo.startswith("held-out clips (51 test examples")


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("lang, folder, speakers, rule", [
    ("uk", "uk/ukrainian_digits", 76, "<speaker>_<n>"),
    ("ar", "ar/arabic_digits", 26, "<digits>_<tag>_<n>"),
])
def test_the_real_digit_sets_go_through_as_plain_keyword_folders(shared_data, tmp_path, capsys, lang, folder, speakers, rule):
    """The shared sets are <keyword>/<file> folders with the recordings' own names: no flags needed."""
    rc = main(["add-language", "--data", str(shared_data / "kws" / folder), "--lang", lang, "--into", str(tmp_path / "pack"),
               "--out", str(tmp_path / "work"), "--epochs", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"speakers: {speakers} inferred from the file names ({rule})" in out
    assert f"{lang}: 11 labels" in out and "held-out speakers (" in out


def test_a_plain_folder_runs_the_check_through_adapt_data(tmp_path, capsys):
    for w in ("yes", "no"):
        for s in ("anna", "ben", "chen"):
            for t in range(2):
                p = tmp_path / "d" / w / f"{s}_{t}.wav"
                p.parent.mkdir(parents=True, exist_ok=True)
                sf.write(p, (0.3 * np.sin(np.arange(6400) / 9.0)).astype(np.float32), 16000, subtype="PCM_16")
    rc = main(["adapt", "--lang", "xx", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    # The report's table title holds the folder's path, and the console wraps it at 80 columns
    # wherever that path's length puts the break: compare the words, not the line breaks.
    out = " ".join(captured.out.split())
    assert rc == 2 and "keywords layout" in out and "speakers: 3 inferred from the file names (<speaker>_<n>)" in out
    assert "keyword 'yes': 6 usable clip(s); at least 10 are needed" in captured.err
