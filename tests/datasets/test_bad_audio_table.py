"""The bad-audio table: one generated corpus folder holding every awkward input a user may have,
scanned once. Every case ends as a clip, a counted skip with its reason, or a named error, and
the counts add up. docs/DATA.md holds the same table (BAD_AUDIO_TABLE below is its source).

The scan runs in a subprocess; as root it runs as `nobody` (setpriv), because root reads
files whatever their mode and the unreadable cases would not be unreadable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# (case, path under <root>/xx/src/, outcome): "clip", "skip:<reason>", or "clip+warning".
BAD_AUDIO_TABLE = [
    ("empty file", "word/empty.wav", "skip:empty"),
    ("truncated WAV", "word/truncated.wav", "skip:truncated"),
    ("text renamed .wav", "word/readme.wav", "skip:not_audio"),
    ("8 kHz", "word/tone_8k.wav", "clip"),
    ("44.1 kHz stereo", "word/cd_stereo.wav", "clip"),
    ("digital silence", "word/silence.wav", "skip:silent"),
    ("NaN in a float WAV", "word/nan.wav", "skip:nan"),
    ("inf in a float WAV", "word/inf.wav", "skip:nan"),
    ("float WAV peaking at 1000x full scale", "word/loud.wav", "skip:overrange"),
    ("30 s recording", "word/long.wav", "clip"),
    ("0.1 s recording", "word/short.wav", "clip"),
    ("unicode and space in the name", "word/привіт світ.wav", "clip"),
    ("file symlink loop (a -> b -> a)", "word/loop_a.wav", "skip:unreadable"),
    ("file symlink loop (b -> a -> b)", "word/loop_b.wav", "skip:unreadable"),
    ("directory symlink loop", "word/again", "skip:symlink_loop"),
    ("unreadable file", "word/locked.wav", "skip:unreadable"),
    ("unreadable folder", "word/locked_dir", "skip:unreadable"),
    ("corrupt FLAC (bytes flipped in a frame)", "word/corrupt.flac", "skip:corrupt"),
    ("AAC in an MP4 named .mp3", "word/aac.mp3", "clip"),
    ("keyword with one clip", "solo/one.wav", "clip+warning"),
]
# Besides the table: an empty corpus root is a named error, not "0 clips".

SCAN_SCRIPT = """
import json, sys
from polykws.datasets.scan import scan
from polykws.core import PolykwsError
try:
    r = scan(sys.argv[1], workers=1)
except PolykwsError as exc:
    print(json.dumps({"error": str(exc)}))
    raise SystemExit(0)
print(json.dumps({"clips": [c.path for c in r.clips], "skipped": [s.to_dict() for s in r.skipped], "warnings": r.warnings}))
"""


def _tone(seconds: float, sr: int = 16000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * np.hanning(len(t))
    return np.stack([x] * channels, axis=1).astype(np.float32) if channels > 1 else x.astype(np.float32)


def build_bad_audio_corpus(root: Path, kit) -> Path:
    """Write every case of BAD_AUDIO_TABLE under root/xx/src/."""
    w = root / "xx" / "src" / "word"
    w.mkdir(parents=True)
    (w / "empty.wav").write_bytes(b"")
    full = sf.write(str(w / "full.tmp.wav"), _tone(0.5), 16000, format="WAV", subtype="PCM_16") or (w / "full.tmp.wav")
    (w / "truncated.wav").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    (w / "readme.wav").write_text("not audio at all\n")
    sf.write(str(w / "tone_8k.wav"), _tone(0.6, 8000), 8000, format="WAV", subtype="PCM_16")
    sf.write(str(w / "cd_stereo.wav"), _tone(0.8, 44100, channels=2), 44100, format="WAV", subtype="PCM_16")
    sf.write(str(w / "silence.wav"), np.zeros(16000, np.float32), 16000, format="WAV", subtype="PCM_16")
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        x = _tone(0.5)
        x[100:120] = value
        sf.write(str(w / name), x, 16000, format="WAV", subtype="FLOAT")
    sf.write(str(w / "loud.wav"), 1000.0 * _tone(0.5) / 0.3, 16000, format="WAV", subtype="FLOAT")
    sf.write(str(w / "long.wav"), np.tile(_tone(1.0), 30), 16000, format="WAV", subtype="PCM_16")
    sf.write(str(w / "short.wav"), _tone(0.1), 16000, format="WAV", subtype="PCM_16")
    sf.write(str(w / "привіт світ.wav"), _tone(0.7), 16000, format="WAV", subtype="PCM_16")
    os.symlink("loop_b.wav", w / "loop_a.wav")
    os.symlink("loop_a.wav", w / "loop_b.wav")
    os.symlink("../word", w / "again")
    sf.write(str(w / "locked.wav"), _tone(0.5), 16000, format="WAV", subtype="PCM_16")
    (w / "locked_dir").mkdir()
    sf.write(str(w / "locked_dir" / "inside.wav"), _tone(0.5), 16000, format="WAV", subtype="PCM_16")
    kit.corrupt_flac(w / "corrupt.flac")
    kit.write_m4a(w / "aac.mp3", _tone(0.6))
    solo = root / "xx" / "src" / "solo"
    solo.mkdir()
    sf.write(str(solo / "one.wav"), _tone(0.5), 16000, format="WAV", subtype="PCM_16")
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            if not os.path.islink(os.path.join(dirpath, f)):
                os.chmod(os.path.join(dirpath, f), 0o644)
    os.chmod(w / "locked.wav", 0o000)
    os.chmod(w / "locked_dir", 0o000)
    return root


def _scan_unprivileged(root: Path) -> dict:
    cmd = [sys.executable, "-c", SCAN_SCRIPT, str(root)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: the unreadable-file cases cannot be made unreadable")
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    env = dict(os.environ, HOME="/tmp", PYTHONDONTWRITEBYTECODE="1")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture()
def world_readable_tmp():
    d = Path(tempfile.mkdtemp(prefix="polykws-badaudio-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        for dirpath, _, _ in os.walk(d):
            os.chmod(dirpath, 0o755)
        for p in d.rglob("*"):
            if not p.is_symlink():
                os.chmod(p, 0o755)
        shutil.rmtree(d)


def test_bad_audio_table(world_readable_tmp, kit):
    root = build_bad_audio_corpus(world_readable_tmp / "corpus", kit)
    got = _scan_unprivileged(root)
    assert "error" not in got, got
    src = root / "xx" / "src"
    clips = {Path(p).relative_to(src).as_posix() for p in got["clips"]}
    skips = {Path(s["path"]).relative_to(src).as_posix(): s for s in got["skipped"]}
    for case, rel, outcome in BAD_AUDIO_TABLE:
        if outcome.startswith("clip"):
            assert rel in clips, (case, rel, skips.get(rel))
        else:
            reason = outcome.split(":", 1)[1]
            assert rel in skips, (case, rel, sorted(skips))
            assert skips[rel]["reason"] == reason, (case, skips[rel])
            assert skips[rel]["detail"], case  # every skip says why
    # The counts add up: every case is exactly one clip or one skip, nothing else appears.
    want = Counter(o.split(":")[-1].replace("+warning", "") for _, _, o in BAD_AUDIO_TABLE)
    have = Counter(s["reason"] for s in got["skipped"]) + Counter({"clip": len(clips)})
    assert have == want
    assert len(clips) + len(skips) == len(BAD_AUDIO_TABLE)
    assert any(w.startswith("xx/solo: 1 clip(s), none in") for w in got["warnings"]), got["warnings"]


def test_empty_corpus_root_is_a_named_error(world_readable_tmp):
    (world_readable_tmp / "empty").mkdir()
    got = _scan_unprivileged(world_readable_tmp / "empty")
    assert "no usable audio files" in got.get("error", "") and str(world_readable_tmp / "empty") in got["error"]


def test_unreadable_source_folder_is_a_counted_skip(world_readable_tmp, kit):
    root = world_readable_tmp / "c"
    kit.write_wav(root / "xx" / "ok" / "word" / "a.wav", _tone(0.5))
    kit.write_wav(root / "xx" / "closed" / "word" / "b.wav", _tone(0.5))
    for dirpath, _, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    os.chmod(root / "xx" / "closed", 0o000)
    got = _scan_unprivileged(root)
    assert [s["reason"] for s in got["skipped"]] == ["unreadable"] and got["skipped"][0]["path"].endswith("xx/closed")
    assert len(got["clips"]) == 1


def test_table_is_in_docs(repo):
    text = (repo / "docs" / "DATA.md").read_text()
    for case, _, outcome in BAD_AUDIO_TABLE:
        assert f"| {case} |" in text, case
