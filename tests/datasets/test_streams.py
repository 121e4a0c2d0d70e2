"""Long evaluation streams: seeded, levels as configured, truth where the words are."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from polykws.core import ConfigError, PolykwsError
from polykws.datasets.task import TaskSpec
from polykws.datasets.manifest import ClipRecord
from polykws.datasets.streams import StreamConfig, active_span, iter_streams, stream_sources
from polykws.datasets.synth import MULTILINGUAL

from .conftest import tone, write_wav


def _corpus(tmp_path):
    rows = []
    for lang, words in (("xx", ["go", "stop", "maybe"]), ("yy", ["other"])):
        for w_i, w in enumerate(words):
            for spk in range(2):
                x = np.concatenate([np.zeros(1600, np.float32), tone(0.4, freq_hz=200 + 90 * w_i, seed=spk), np.zeros(3200, np.float32)])
                p = write_wav(tmp_path / lang / w / f"s{spk}.wav", x)
                rows.append(ClipRecord(str(p), lang, w, f"t:{lang}{spk}", "test", x.shape[0] / 16000, 16000, "t"))
    noise = []
    rng = np.random.default_rng(0)
    for i in range(12):  # enough files that the file split gives the test split some
        noise.append(str(write_wav(tmp_path / "noise" / f"n{i}.wav", (0.05 * rng.standard_normal(24000)).astype(np.float32))))
    return rows, noise


TASK = TaskSpec("xx", ("go", "stop"), unknown_words=("maybe",))
CFG = StreamConfig(snrs_db=(10.0, 0.0), negative_s_per_snr=20.0, gap_s_min=0.5, gap_s_max=1.0)


def test_sources_by_kind(tmp_path):
    rows, _ = _corpus(tmp_path)
    src = stream_sources(rows, TASK, "test")
    assert sorted({lb for _, lb in src["keyword"]}) == ["go", "stop"]
    assert {lb for _, lb in src["unknown"]} == {"maybe"}
    assert {lb for _, lb in src["other_language"]} == {"yy:other"}
    assert stream_sources(rows, TASK, "val")["keyword"] == []


def test_training_only_rows_never_enter_a_stream(tmp_path):
    # Synthesized keywords and pseudo-words (`mul`) are training-only rows: with them added, every
    # training stream (hard-negative mining's) is bit-identical and none of their clips is an event.
    rows, noise = _corpus(tmp_path)
    rows = [replace(r, split="train") for r in rows]
    extra = [ClipRecord(f"{r.path}.{lang}", lang, label, f"espeak:v{i}", "train", r.duration_s, 16000, "espeak", train_only=True)
             for i, r in enumerate(rows) for lang, label in ((MULTILINGUAL, f"es_{r.label}"), (r.language, r.label))]
    for r in extra:
        (tmp_path / r.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(r.path.rsplit(".", 1)[0], r.path)
    src = stream_sources(rows + extra, TASK, "train")
    assert sum(len(v) for v in src.values()) == sum(len(v) for v in stream_sources(rows, TASK, "train").values()) > 0
    assert not any(r.train_only for kind in src.values() for r, _ in kind)
    for s, t in zip(iter_streams(rows, TASK, noise, "train", CFG), iter_streams(rows + extra, TASK, noise, "train", CFG), strict=True):
        assert np.array_equal(s.audio, t.audio) and s.events == t.events


def test_streams_are_seeded_and_levelled(tmp_path):
    rows, noise = _corpus(tmp_path)
    a = list(iter_streams(rows, TASK, noise, "test", CFG))
    b = list(iter_streams(rows, TASK, noise, "test", CFG))
    assert [s.name for s in a] == ["xx/test/positive/snr10", "xx/test/negative/snr10", "xx/test/positive/snr0", "xx/test/negative/snr0"]
    for s, t in zip(a, b):
        assert np.array_equal(s.audio, t.audio) and s.events == t.events
    other_seed = list(iter_streams(rows, TASK, noise, "test", StreamConfig(**{**CFG.to_dict(), "seed": 1})))
    assert not np.array_equal(a[0].audio, other_seed[0].audio)

    for s in a:
        if s.kind == "positive":
            assert sorted(e.label for e in s.events) == ["go", "go", "stop", "stop"]  # every clip once
        else:
            assert s.duration_s >= CFG.negative_s_per_snr
            assert {e.kind for e in s.events} <= {"unknown", "other_language"} and s.events
        # The SNR holds: active speech power over the noise power in the gaps.
        speech_db = 10 * np.log10(np.mean([np.mean(s.audio[e.start_sample:e.end_sample].astype(np.float64) ** 2) for e in s.events]))
        mask = np.ones(s.audio.shape[0], bool)
        for e in s.events:
            mask[max(0, e.start_sample - 3200): e.end_sample + 3200] = False
        noise_db = 10 * np.log10(np.mean(s.audio[mask].astype(np.float64) ** 2))
        # speech + noise inside the words, hence the tolerance towards higher at 0 dB
        assert abs(noise_db - (CFG.speech_level_dbfs - s.snr_db)) < 0.5
        assert speech_db - noise_db == pytest.approx(10 * np.log10(10 ** (s.snr_db / 10) + 1), abs=1.0)


def test_event_spans_are_the_words(tmp_path):
    x = np.zeros(16000, np.float32)
    x[4000:8000] = tone(0.25)
    lo, hi = active_span(x)
    assert 4000 <= lo <= 4800 and 7200 <= hi <= 8000
    assert active_span(np.zeros(1000, np.float32)) is None


def test_errors(tmp_path):
    rows, noise = _corpus(tmp_path)
    with pytest.raises(PolykwsError, match="no keyword clip in the val split"):
        next(iter_streams(rows, TASK, noise, "val", CFG))
    with pytest.raises(PolykwsError, match="no usable background-noise"):
        next(iter_streams(rows, TASK, [], "test", CFG))
    with pytest.raises(ConfigError, match="gap_s_min"):
        StreamConfig(gap_s_min=0)
    with pytest.raises(ConfigError, match="stream kinds"):
        next(iter_streams(rows, TASK, noise, "test", CFG, kinds=("both",)))
