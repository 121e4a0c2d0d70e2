"""`polykws train base` and `polykws eval` end to end on a generated audio corpus.

The corpus is written by the test: three "words" (distinct harmonic tone patterns) spoken by 12
"speakers" (each a pitch offset), in the folder layout, plus two background-noise files. It runs
through the real datasets pipeline (scan, speaker splits, features, _silence_/_unknown_).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from polykws.cli import main
from polykws.training.checkpoint import load_model
from polykws.training.config import load_train_config
from polykws.core import ConfigError

WORDS = {"alpha": (300.0, 600.0), "beta": (500.0, 250.0), "gamma": (800.0, 800.0), "delta": (400.0, 400.0)}


def _word(f_start: float, f_end: float, pitch: float, rng: np.random.Generator) -> np.ndarray:
    sr, n = 16000, 9600
    t = np.arange(n) / sr
    f = (f_start + (f_end - f_start) * t / t[-1]) * pitch
    phase = 2 * np.pi * np.cumsum(f) / sr
    sig = sum(np.sin(k * phase) / k for k in range(1, 5))
    x = 0.25 * np.hanning(n) * sig + 0.003 * rng.standard_normal(n)
    return x.astype(np.float32)


def make_corpus(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    corpus = root / "corpus"
    for s in range(12):
        pitch = 0.8 + 0.04 * s
        for word, (f0, f1) in WORDS.items():
            for take in range(2):
                path = corpus / "xx" / "tones" / word / f"spk{s:02d}_nohash_{take}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(path), _word(f0, f1, pitch, rng), 16000, subtype="PCM_16")
    noise = root / "noise"
    noise.mkdir()
    for i in range(4):
        sf.write(str(noise / f"n{i}.wav"), (0.05 * rng.standard_normal(32000)).astype(np.float32), 16000, subtype="PCM_16")
    return corpus, noise


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("cli"))


def write_config(tmp_path: Path, corpus: Path, noise: Path, **fit) -> Path:
    cfg = {
        "run_dir": str(tmp_path / "run"),
        "model": {"name": "ds_cnn_s", "frontend": "mfcc"},
        "data": {
            "corpora": [{"root": str(corpus)}],
            "unknown_words": ["delta"],
            "noise_dir": str(noise),
            "cache_dir": str(tmp_path / "features"),
            "manifest_dir": str(tmp_path / "manifests"),
        },
        "fit": {"epochs": 2, "batch_size": 16, "progress": False, "num_threads": 1, **fit},
    }
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_base_then_eval(tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.setenv("POLYKWS_WORKERS", "1")
    cfg_path = write_config(tmp_path, *corpus)
    out = tmp_path / "artifacts" / "base.pt"
    assert main(["train", "base", "--config", str(cfg_path), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "best.pt", "checkpoint.pt", "data.json", "eval/report.json", "eval/confusion.png"):
        assert (run / name).is_file(), name
    loaded = load_model(out)
    assert loaded.labels == ("xx:alpha", "xx:beta", "xx:gamma", "_silence_", "_unknown_")
    assert loaded.meta["role"] == "base" and loaded.meta["train_config"]["data"]["unknown_words"] == ["delta"]
    assert loaded.sha256 in printed and "top-1" in printed
    # The report is on the speaker-disjoint test split: its speakers are none of train's.
    data = json.loads((run / "data.json").read_text())
    assert data["test"]["speakers"] and not set(data["test"]["speakers"]) & set(data["train"]["speakers"])
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["num_samples"] == data["test"]["examples"]
    assert report["false_accept_rate"] is not None  # _silence_/_unknown_ clips exist in test

    # The same run again without --resume refuses to clobber it (one clear line, exit 2).
    assert main(["train", "base", "--config", str(cfg_path), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    # --resume on a finished run re-evaluates and keeps the same best weights.
    assert main(["train", "base", "--config", str(cfg_path), "--resume", "--no-progress"]) == 0
    assert load_model(run / "best.pt").sha256 == loaded.sha256
    capsys.readouterr()

    assert main(["eval", "--model", str(out), "--config", str(cfg_path), "--out", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert ev["top1"] == pytest.approx(report["top1"]) and ev["confusion"] == report["confusion"]


def test_bad_config_is_one_clear_error(tmp_path, corpus, capsys):
    cfg_path = write_config(tmp_path, *corpus, epochs=0)
    assert main(["train", "base", "--config", str(cfg_path)]) == 2
    err = capsys.readouterr().err
    assert str(cfg_path) in err and "fit: epochs must be > 0" in err
    cfg_path.write_text(cfg_path.read_text().replace("num_threads", "num_thread"))
    with pytest.raises(ConfigError, match=r"fit: unknown key\(s\) \['num_thread'\]"):
        load_train_config(cfg_path)


def test_base_data_takes_the_task_options_and_augment(tmp_path, corpus, monkeypatch):
    """A base for streams: partial words join _unknown_, _silence_ follows silence_fraction, and
    the augmented copies are made as `data.augment` says (its config is in their cache keys)."""
    from polykws.datasets.frontend import frontend_by_name
    from polykws.training.data import build_base_splits

    monkeypatch.setenv("POLYKWS_WORKERS", "1")
    path = write_config(tmp_path, *corpus)
    frontend = frontend_by_name("mfcc")
    plain = load_train_config(path, {"data.augment_copies": 1})
    stream = load_train_config(path, {
        "data.augment_copies": 1, "data.augment": {"offset_anywhere": True, "snr_db_min": 0.0},
        "data.partial_keyword_fraction": 0.5, "data.silence_fraction": 0.25,
    })
    a = build_base_splits(plain.data, frontend, seed=0)["train"]
    b = build_base_splits(stream.data, frontend, seed=0)["train"]
    clips = a.origin.count("clip")
    keyword_clips = sum(1 for o, y in zip(a.origin, a.y) if o == "clip" and not a.labels[int(y)].startswith("_"))
    assert "partial" not in a.origin
    assert b.origin.count("partial") == int(np.ceil(0.5 * keyword_clips))
    unknown = b.labels.index("_unknown_")
    assert all(int(y) == unknown for o, y in zip(b.origin, b.y) if o == "partial")
    assert b.origin.count("silence") == int(np.ceil(0.25 * keyword_clips)) != a.origin.count("silence")
    assert b.origin.count("clip") == clips
    # Same clips, another augment recipe: every augmented copy differs.
    aug_a = a.x[[i for i, o in enumerate(a.origin) if o == "augmented"]]
    aug_b = b.x[[i for i, o in enumerate(b.origin) if o == "augmented"]]
    assert aug_a.shape == aug_b.shape and not np.isclose(aug_a, aug_b).all(axis=(1, 2)).any()
