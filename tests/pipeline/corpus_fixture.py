"""A tiny folder-layout corpus the tests generate: `<lang>/fix_<lang>/<word>/<speaker>_nohash_<take>.wav`.

Each word is a short tone sequence (its own frequencies), spoken by "speakers" that shift the
pitch and level; `_background_noise_/` holds coloured noise. Small and learnable, so the whole
pipeline can run in seconds on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
WORDS = {
    "aa": ["one", "two", "three", "other"],
    "bb": ["uno", "dos", "tres", "otro"],
    "cc": ["ein", "zwei", "drei", "ander"],
}


def _word_wave(lang_i: int, word_i: int, speaker: int, take: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.6 * SR)) / SR
    pitch = 1.0 + 0.04 * (speaker - 4)
    f = [(300 + 170 * word_i + 55 * lang_i) * pitch, (900 + 260 * ((word_i + lang_i) % 4)) * pitch]
    seg = len(t) // 2
    wave = np.concatenate([np.sin(2 * np.pi * f[0] * t[:seg]), np.sin(2 * np.pi * f[1] * t[seg:])])
    wave *= np.hanning(len(wave)) * (0.3 + 0.05 * (speaker % 3))
    out = np.zeros(SR, np.float32)
    start = int(rng.integers(0, SR - len(wave)))
    out[start : start + len(wave)] = wave
    out += 0.01 * rng.standard_normal(SR)
    return out.astype(np.float32)


def make_corpus(root: Path, speakers: int = 8, takes: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for li, (lang, words) in enumerate(WORDS.items()):
        for wi, word in enumerate(words):
            d = root / lang / f"fix_{lang}" / word
            d.mkdir(parents=True, exist_ok=True)
            for s in range(speakers):
                for k in range(takes):
                    sf.write(d / f"spk{li}{s:02d}_nohash_{k}.wav", _word_wave(li, wi, s, k, rng), SR, subtype="PCM_16")
    noise = root / "_background_noise_"
    noise.mkdir(parents=True, exist_ok=True)
    for i in range(6):
        n = np.cumsum(rng.standard_normal(3 * SR)).astype(np.float32)
        n = (n - n.mean()) / (np.abs(n).max() + 1e-6) * 0.2
        sf.write(noise / f"noise{i}.wav", n, SR, subtype="PCM_16")
    return root


def pipeline_config(corpus: Path, artifacts: Path, output: Path, *, export: bool = False, methods=("head_only",)) -> dict:
    tasks = {lang: {"keywords": words[:3], "unknown_words": words[3:]} for lang, words in WORDS.items()}
    return {
        "name": "fixture",
        "artifacts": str(artifacts),
        "output": str(output),
        "data": {"root": str(corpus), "noise_dir": "", "frontend": "mfcc", "split": {"val_pct": 10.0, "test_pct": 10.0},
                 "tasks": tasks, "cache_dir": str(artifacts.parent / "feature-cache")},
        "base": {"language": "aa", "model": "ds_cnn_s",
                 "fit": {"epochs": 2, "batch_size": 32, "progress": False, "spec_augment": {"enabled": False}}},
        "adapt": {"languages": ["bb", "cc"], "methods": list(methods), "budgets": [300], "seeds": [0],
                  "ship_method": methods[0], "ship_budget": 300, "fit": {"epochs": 2, "probe_epochs": 3, "batch_size": 32}},
        "export": {"enabled": export, "calibration_samples": 32},
        "firmware": {"enabled": "off"},
        "executor": {"kind": "serial"},
    }


def make_gsc_mswc(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """A GSC-v2-shaped English root and an MSWC-shaped root (de) with official split lists/CSVs."""
    import csv
    import io

    rng = np.random.default_rng(seed)
    gsc = root / "gsc"
    words = ["yes", "no", "up", "cat"]
    val, test = [], []
    for wi, word in enumerate(words):
        for s in range(6):
            for k in range(2):
                rel = f"{word}/{s:08x}_nohash_{k}.wav"
                (gsc / word).mkdir(parents=True, exist_ok=True)
                sf.write(gsc / rel, _word_wave(0, wi, s, k, rng), SR, subtype="PCM_16")
                (val if s == 0 else test if s == 1 else []).append(rel)
    (gsc / "validation_list.txt").write_text("\n".join(val) + "\n")
    (gsc / "testing_list.txt").write_text("\n".join(test) + "\n")
    (gsc / "_background_noise_").mkdir()
    for i in range(3):
        sf.write(gsc / "_background_noise_" / f"n{i}.wav", (0.1 * rng.standard_normal(2 * SR)).astype(np.float32), SR)
    mswc = root / "mswc"
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["SET", "LINK", "WORD", "VALID", "SPEAKER", "GENDER"])
    n = 0
    for wi, word in enumerate(["eins", "zwei", "drei", "katze"]):
        for s in range(6):
            for k in range(2):
                n += 1
                link = f"{word}/common_voice_de_{n}.opus"
                path = mswc / "de" / "clips" / link
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, _word_wave(1, wi, s, k, rng), SR, format="OGG", subtype="OPUS")
                w.writerow(["DEV" if s == 0 else "TEST" if s == 1 else "TRAIN", link, word, "True", f"spk{s}", "NA"])
    (mswc / "de" / "de_splits.csv").write_text(buf.getvalue())
    return gsc, mswc
