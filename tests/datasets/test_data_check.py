"""The data check a user's recordings get before adaptation: counts, speakers, levels, flagged clips, thresholds.

The recordings are real audio files written here (tones, silence, clipped and quiet takes) and
read back by the one scanner, so every figure goes through the same decoder as training data."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from polykws.core import ConfigError, PolykwsError
from polykws.datasets.check import DataCheckConfig
from polykws.datasets.check import check_data as _check
from polykws.datasets.check import scan_user_data as _scan


def scan_user_data(*args, **kwargs):
    """One decoder process: the folders are small, and pools would only cost start-up."""
    return _scan(*args, workers=1, **kwargs)


def check_data(*args, **kwargs):
    return _check(*args, workers=1, **kwargs)
from polykws.datasets.report import data_check_table, print_data_check

SR = 16000
SPEAKERS = ("anna", "ben", "chen", "dara", "eli")


def _tone(freq: float, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _folder(root, words=("yes", "no"), takes=3, speakers=SPEAKERS, name="{s}_{k:02d}.wav"):
    """<root>/xx/rec/<word>/<speaker>_<take>.wav (or `name`): one tone per word, every speaker `takes` times."""
    for i, word in enumerate(words):
        d = root / "xx" / "rec" / word
        d.mkdir(parents=True)
        for s in speakers:
            for k in range(takes):
                sf.write(d / name.format(s=s, k=k, i=i), _tone(300 + 200 * i + 10 * k), SR, subtype="PCM_16")
    return root


def test_speakers_come_from_the_regex_and_bad_clips_are_counted_and_named(tmp_path):
    root = _folder(tmp_path)
    d = root / "xx" / "rec" / "yes"
    sf.write(d / "anna_90.wav", _tone(400, seconds=0.1), SR, subtype="PCM_16")      # too short
    sf.write(d / "ben_91.wav", _tone(400, amp=0.001), SR, subtype="PCM_16")           # quiet (peak 0.001 is above digital silence)
    sf.write(d / "chen_92.wav", np.clip(_tone(400, amp=3.0), -1, 1), SR, subtype="PCM_16")  # clipped
    sf.write(d / "dara_93.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")      # digital silence: the scan skips it
    scanned = scan_user_data(root, "xx", speaker_regex=r"^([a-z]+)_")
    check = check_data(scanned, "xx", cfg=DataCheckConfig(min_clips_per_keyword=5, recommended_clips_per_keyword=10,
                                                         min_speakers=3, recommended_speakers=4))
    assert check.speakers_from_names and check.speakers == 5
    by_kw = {k.keyword: k for k in check.keywords}
    assert by_kw["yes"].clips == 18 and by_kw["no"].clips == 15 and by_kw["yes"].speakers == 5
    assert sum(by_kw["no"].splits.values()) == 15 and all(by_kw["no"].splits.get(s) for s in ("train", "val", "test"))
    assert by_kw["no"].duration_s == (1.0, 1.0, 1.0) and by_kw["yes"].duration_s[0] == pytest.approx(0.1)
    assert round(by_kw["no"].rms_dbfs[1]) == round(20 * np.log10(0.3 / np.sqrt(2)))
    flagged = {(p.rsplit("/", 1)[-1], r) for p, r, _ in check.flagged}
    assert flagged == {("anna_90.wav", "too_short"), ("ben_91.wav", "quiet"), ("chen_92.wav", "clipped")}
    assert [(p.rsplit("/", 1)[-1], r) for p, r, _ in check.skipped] == [("dara_93.wav", "silent")]
    assert check.ok and check.errors == []
    assert any("flagged clips (kept): 1 clipped, 1 quiet, 1 too_short" in w for w in check.warnings)
    assert any("skipped files (not used): 1 silent" in w for w in check.warnings)


def test_names_without_speakers_warn_and_ask_for_a_speaker_regex(tmp_path, capsys):
    # "anna00.wav": no separator between speaker and take, so no naming pattern fits.
    root = _folder(tmp_path, name="{s}{k:02d}.wav")
    check = check_data(scan_user_data(root, "xx"), "xx", cfg=DataCheckConfig(min_clips_per_keyword=5, recommended_clips_per_keyword=5))
    assert not check.speakers_from_names
    assert any("splits may share speakers" in w and "--speaker-regex" in w for w in check.warnings)
    print_data_check(check)
    out = capsys.readouterr().out
    assert "--speaker-regex '^([a-z]+)_'" in out and "per-clip pseudo-speakers" in out


def test_too_few_clips_or_speakers_are_errors_with_the_number_needed(tmp_path):
    root = _folder(tmp_path, speakers=("anna", "ben"), takes=4)
    check = check_data(scan_user_data(root, "xx", speaker_regex=r"^([a-z]+)_"), "xx")
    assert not check.ok
    assert any("2 speaker(s); speaker-disjoint train/val/test splits need at least 3" in e for e in check.errors)
    assert any("keyword 'yes': 8 usable clip(s); at least 10 are needed (20 recommended)" in e for e in check.errors)
    with pytest.raises(PolykwsError, match="data check of .* failed"):
        check.raise_on_errors()
    enough = check_data(scan_user_data(_folder(tmp_path / "b", takes=5), "xx", speaker_regex=r"^([a-z]+)_"), "xx")
    assert enough.ok and not any("keyword 'yes'" in w for w in enough.warnings)
    assert any("5 speakers; at least 10 are recommended" in w for w in enough.warnings)


def test_the_table_fits_80_columns(tmp_path):
    from rich.console import Console

    root = _folder(tmp_path)
    check = check_data(scan_user_data(root, "xx", speaker_regex=r"^([a-z]+)_"), "xx")
    console = Console(width=80, record=True)
    console.print(data_check_table(check))
    text = console.export_text()
    assert "yes" in text and "…" not in text


def test_bad_speaker_regexes_and_layouts_are_clear_errors(tmp_path):
    root = _folder(tmp_path)
    with pytest.raises(ConfigError, match="needs exactly one group"):
        scan_user_data(root, "xx", speaker_regex=r"^[a-z]+_")
    with pytest.raises(ConfigError, match="not a regular expression"):
        scan_user_data(root, "xx", speaker_regex=r"^([a-z]+")
    gsc = tmp_path / "gsc"
    (gsc / "yes").mkdir(parents=True)
    sf.write(gsc / "yes" / "0a1b_nohash_0.wav", _tone(300), SR)
    (gsc / "validation_list.txt").write_text("")
    (gsc / "testing_list.txt").write_text("")
    with pytest.raises(ConfigError, match="applies to the folder layouts; .* is gsc_v2"):
        scan_user_data(gsc, "xx", speaker_regex=r"^([a-z]+)_")
    scanned = scan_user_data(gsc, "xx")
    assert {r.language for r in scanned.clips} == {"xx"}
    with pytest.raises(PolykwsError, match="no clips of language 'zz'"):
        check_data(scanned, "zz")
    with pytest.raises(PolykwsError, match=r"keywords \['go'\] have no xx clips; keywords found: yes"):
        check_data(scanned, "xx", ["go"])
    with pytest.raises(ConfigError, match="recommendations must be >= the minimums"):
        DataCheckConfig(min_clips_per_keyword=30)
