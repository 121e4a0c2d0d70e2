"""Layouts (folder, GSC v2, MSWC) on generated fixture trees; manifest round trip; skips; --strict."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from polykws.cli import main as cli_main
from polykws.datasets.manifest import NOISE_LABEL, ClipRecord, read_manifest, write_manifest
from polykws.datasets.scan import scan
from polykws.datasets.sources import SPEAKER_PARSERS
from polykws.datasets.sources.gsc import GSC_12_KEYWORDS, GSC_V2_WORDS, download_gsc_v2, gsc_task
from polykws.datasets.splits import which_set
from polykws.core import ConfigError, PolykwsError


def _folder_tree(root: Path, kit) -> dict:
    """<root>/<lang>/<source>/<keyword>/<file> with 12 speakers, noise, and one bad file of each kind."""
    for lang, words in (("en", ("yes", "no", "cat")), ("xx", ("ka", "lo"))):
        for w_i, word in enumerate(words):
            for spk in range(12):
                kit.write_wav(root / lang / "toy" / word / f"s{spk:02d}_nohash_0.wav", kit.tone(0.4, freq_hz=150 + 20 * spk + 7 * w_i, seed=spk))
    for i in range(4):
        kit.write_wav(root / NOISE_LABEL / f"hum{i}.wav", 0.05 * np.random.default_rng(i).standard_normal(24000).astype(np.float32))
    bad = kit.bad_files(root / "en" / "toy" / "yes")
    (root / "en" / "toy" / "README.md").write_text("metadata is not a clip\n")
    kit.write_wav(root / "en" / "stray.wav", kit.tone(0.3))  # audio outside any keyword folder
    return bad


def test_folder_layout_counts_every_skip(tmp_path, kit):
    bad = _folder_tree(tmp_path, kit)
    result = scan(tmp_path, workers=1)
    assert result.layout == "folder"
    clips = result.clips
    assert len(clips) == 5 * 12
    assert {r.language for r in clips} == {"en", "xx"}
    assert all(r.speaker_id.startswith("toy:s") for r in clips)
    assert len(result.noise) == 4 and {r.language for r in result.noise} == {"*"}
    reasons = Counter(s.reason for s in result.skipped)
    # bad_files gives two "empty" variants and one of every other reason, plus the stray wav.
    assert reasons == {"empty": 2, "truncated": 1, "not_audio": 1, "nan": 1, "silent": 1, "unreadable": 1, "corrupt": 1, "overrange": 1, "misplaced": 1}
    skipped_paths = {s.path for s in result.skipped}
    assert {str(p) for p in bad.values()} <= skipped_paths
    row = {(r["language"], r["source"]): r for r in result.summary()}[("en", "toy")]
    assert row["clips"] == 36 and row["keywords"] == 3 and row["speakers"] == 12
    assert row["train"] + row["val"] + row["test"] == 36 and row["val"] > 0 and row["test"] > 0
    assert sum(row["skipped"].values()) == 9  # README.md is metadata, not a skip
    stray = {(r["language"], r["source"]): r for r in result.summary()}[("en", "?")]
    assert stray["skipped"] == {"misplaced": 1} and stray["clips"] == 0


def test_strict_turns_a_skip_into_an_error_naming_the_file(tmp_path, kit):
    bad = _folder_tree(tmp_path, kit)
    with pytest.raises(PolykwsError) as info:
        scan(tmp_path, strict=True, workers=1)
    assert str(bad["nan"]) in str(info.value) and "nan" in str(info.value)
    rc = cli_main(["data", "scan", str(tmp_path), "--strict", "--workers", "1"])
    assert rc == 2


def test_scan_and_manifest_cli(tmp_path, kit, capsys):
    _folder_tree(tmp_path / "corpus", kit)
    out = tmp_path / "m.jsonl"
    assert cli_main(["data", "manifest", str(tmp_path / "corpus"), "--out", str(out), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "toy" in text and "skipped files: 10" in text and "not_audio" in text
    rows = read_manifest(out)
    assert len(rows) == 60 + 4
    skipped = [json.loads(line) for line in (tmp_path / "m.jsonl.skipped.jsonl").read_text().splitlines()]
    assert len(skipped) == 10 and {"path", "reason", "detail"} <= set(skipped[0])


def test_manifest_roundtrip_and_bad_rows(tmp_path):
    rec = ClipRecord("/a/b.wav", "en", "yes", "gsc:abc", "train", 1.0, 16000, "gsc_v2")
    p = write_manifest(tmp_path / "m.jsonl", [rec, rec])
    assert read_manifest(p) == [rec, rec]
    with pytest.raises(ValueError):
        ClipRecord("/a/b.wav", "en", "yes", "gsc:abc", "training", 1.0, 16000, "gsc_v2")
    p.write_text(p.read_text() + '{"path": "/x.wav"}\n')
    with pytest.raises(PolykwsError, match=r"m.jsonl:3"):
        read_manifest(p)


def test_a_training_only_row_is_marked_in_the_manifest_and_only_trains(tmp_path):
    rec = ClipRecord("/a/b.wav", "en", "yes", "gsc:abc", "train", 1.0, 16000, "gsc_v2")
    synth = ClipRecord("/s/v00_0.wav", "uk", "one", "espeak:v00", "train", 1.0, 16000, "espeak", train_only=True)
    p = write_manifest(tmp_path / "m.jsonl", [rec, synth])
    # A recorded row's line carries no marker, so manifests without training-only rows keep their bytes.
    first, second = p.read_text().splitlines()
    assert "train_only" not in first and '"train_only": true' in second
    assert read_manifest(p) == [rec, synth]
    with pytest.raises(ConfigError, match=r"v00_0.wav: a train_only row must be in the train split"):
        ClipRecord("/s/v00_0.wav", "uk", "one", "espeak:v00", "test", 1.0, 16000, "espeak", train_only=True)
    with pytest.raises(ConfigError, match="train_only must be true or false"):
        ClipRecord("/s/v00_0.wav", "uk", "one", "espeak:v00", "train", 1.0, 16000, "espeak", train_only="yes")


# ---------------------------------------------------------------------------------------------
# Google Speech Commands v2


def _gsc_tree(root: Path, kit, speakers=("0a1b2c3d", "1f2e3d4c", "22aa33bb", "3c3c3c3c", "4d5e6f70", "5a5a5a5a")) -> None:
    words = GSC_12_KEYWORDS + ("cat", "dog", "marvin")
    val, test = [], []
    for w_i, word in enumerate(words):
        for s_i, spk in enumerate(speakers):
            rel = f"{word}/{spk}_nohash_0.wav"
            kit.write_wav(root / rel, kit.tone(0.9, freq_hz=120 + 13 * w_i + 3 * s_i, seed=s_i))
            # Official lists: first speaker validation, second test (deliberately not which_set).
            (val if s_i == 0 else test if s_i == 1 else []).append(rel)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    for name in ("white_noise", "pink_noise", "running_tap"):
        kit.write_wav(root / NOISE_LABEL / f"{name}.wav", 0.1 * np.random.default_rng(len(name)).standard_normal(16000 * 3).astype(np.float32))
    (root / "LICENSE").write_text("CC BY 4.0\n")


def test_gsc_v2_layout_uses_official_lists(tmp_path, kit):
    _gsc_tree(tmp_path, kit)
    result = scan(tmp_path, workers=1)
    assert result.layout == "gsc_v2"
    clips = result.clips
    assert len(clips) == 13 * 6 and not result.skipped
    by_spk = {r.speaker_id: r.split for r in clips}
    assert by_spk["gsc:0a1b2c3d"] == "val" and by_spk["gsc:1f2e3d4c"] == "test"
    assert {by_spk[f"gsc:{s}"] for s in ("22aa33bb", "3c3c3c3c", "4d5e6f70", "5a5a5a5a")} == {"train"}
    assert len(result.noise) == 3 and all(r.label == NOISE_LABEL for r in result.noise)


def test_gsc_without_lists_uses_which_set(tmp_path, kit):
    _gsc_tree(tmp_path, kit)
    (tmp_path / "validation_list.txt").unlink()
    (tmp_path / "testing_list.txt").unlink()
    result = scan(tmp_path, workers=1)
    assert result.layout == "gsc_v2"  # still detected (noise folder + <spk>_nohash_ names)
    for r in result.clips:
        assert r.split == which_set(Path(r.path).name)
    assert {r.split for r in result.clips} == {"train", "val"}  # speaker 5a5a5a5a hashes to val


def test_gsc_12_and_35_class_tasks():
    t12 = gsc_task(12)
    assert t12.labels == GSC_12_KEYWORDS + ("_silence_", "_unknown_") and len(t12.labels) == 12
    t35 = gsc_task(35)
    assert len(t35.labels) == 35 and set(t35.labels) == set(GSC_V2_WORDS)
    with pytest.raises(PolykwsError):
        gsc_task(20)


def test_gsc_download_verifies_checksum(tmp_path, kit):
    # A tiny archive served from a file:// URL stands in for download.tensorflow.org.
    src = tmp_path / "src"
    _gsc_tree(src, kit, speakers=("0a1b2c3d", "1f2e3d4c"))
    archive = tmp_path / "speech_commands_v0.02.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(src)), recursive=False)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(PolykwsError, match="SHA-256 mismatch"):
        download_gsc_v2(tmp_path / "dl_bad", url=archive.as_uri(), sha256="0" * 64)
    assert not list((tmp_path / "dl_bad").glob("*.tar.gz*"))
    target = download_gsc_v2(tmp_path / "dl", url=archive.as_uri(), sha256=digest)
    assert (target / "testing_list.txt").is_file()
    assert scan(target, workers=1).layout == "gsc_v2"


# ---------------------------------------------------------------------------------------------
# MSWC


def test_mswc_layout_with_opus_and_split_csv(tmp_path, kit):
    rows = []
    for lang in ("de", "cy"):
        for w_i, word in enumerate(("eins", "zwei")):
            for c in range(4):
                name = f"common_voice_{lang}_{1000 * w_i + c}.opus"
                kit.write_opus(tmp_path / lang / "clips" / word / name, kit.tone(1.0, freq_hz=200 + 30 * c, seed=c))
                split = ("TRAIN", "TRAIN", "DEV", "TEST")[c]
                rows.append((lang, split, f"{word}/{name}", word, "True", f"spk{c}hash", "FEMALE"))
        # One clip the CSV does not list.
        kit.write_opus(tmp_path / lang / "clips" / "eins" / "common_voice_x_unlisted.opus", kit.tone(1.0))
    for lang in ("de", "cy"):
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["SET", "LINK", "WORD", "VALID", "SPEAKER", "GENDER"])
        w.writerows(r[1:] for r in rows if r[0] == lang)
        (tmp_path / lang / f"{lang}_splits.csv").write_text(buf.getvalue())
    result = scan(tmp_path, workers=1)
    assert result.layout == "mswc" and not result.skipped
    recs = {Path(r.path).name: r for r in result.clips}
    assert len(recs) == 2 * 2 * 4 + 1  # two unlisted files share a name across languages
    r = recs["common_voice_de_2.opus"]
    assert (r.language, r.label, r.speaker_id, r.split) == ("de", "eins", "mswc:spk2hash", "val")
    assert recs["common_voice_de_1003.opus"].split == "test"
    assert all(r.sample_rate_hz in (16000, 48000) and 0.9 < r.duration_s < 1.2 for r in result.clips)
    assert ("de", "mswc") in result.hashed_speakers  # the unlisted clip got a per-clip pseudo-speaker


# ---------------------------------------------------------------------------------------------
# Speaker parsers on the real shared file names


@pytest.mark.shared
def test_every_shared_file_name_parses_to_a_speaker(shared_data):
    kws = shared_data / "kws"
    for lang_dir in sorted(p for p in kws.iterdir() if p.is_dir()):
        for src_dir in sorted(p for p in lang_dir.iterdir() if p.is_dir()):
            parser = SPEAKER_PARSERS.get(src_dir.name)
            assert parser is not None, f"no speaker parser registered for {src_dir.name}"
            if parser.hashed:
                continue
            files = [f for kw in src_dir.iterdir() if kw.is_dir() for f in kw.iterdir()]
            speakers = {parser.parse(f.name) for f in files}
            assert None not in speakers, src_dir
            assert len(speakers) >= 5, (src_dir, speakers)


@pytest.mark.shared
def test_speaker_parsers_on_real_names():
    expect = {
        "fsdd": ("0_george_12.wav", "george"),
        "ukrainian_digits": ("woman_26_01.mp3", "woman_26"),
        "arabic_digits": ("00000001_NO_01.wav", "00000001"),
        "gujarati_digits": ("R1S1T1D0.wav", "R1S1"),
        "lt_speech_commands": ("07_nohash_1.wav", "07"),
        "speech_commands_anrose": ("f5733968_nohash_2.wav", "f5733968"),
    }
    for source, (name, spk) in expect.items():
        assert SPEAKER_PARSERS[source].parse(name) == spk
    bn = SPEAKER_PARSERS["bengali_digits"].parse
    assert bn("ARUSHI_F_8_EK_04.wav") == bn("ek_arushi_ (3).wav") == "arushi"
    assert bn("somnath_panch_18KHz (21).wav") == "somnath"
    assert bn("milan_pnach_ (15).wav") == "milan"
    assert bn("priyanka_ak_ (1) (23).wav") == "priyanka"
    assert bn("My recording 25.wav") == "my_recording"


@pytest.mark.shared
def test_which_set_reproduces_the_official_gsc_lists(shared_data):
    src = shared_data / "kws" / "en" / "speech_commands_v001_vinsis"
    val = set((src / "validation_list.txt").read_text().split())
    test = set((src / "testing_list.txt").read_text().split())
    n = 0
    for f in sorted(src.glob("*/*.wav")):
        rel = f"{f.parent.name}/{f.name}"
        official = "val" if rel in val else "test" if rel in test else "train"
        assert which_set(f.name) == official, rel
        n += 1
    assert n > 200
