"""The synthesized default corpus: byte-identical under a seed, in the folder layout, scannable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from polykws.datasets.scan import scan
from polykws.datasets.synth import MULTILINGUAL, SPOKEN, VOCABULARY, SynthConfig, pseudo_vocabulary, speaker_params, synthesize_corpus
from polykws.core import ConfigError

SMALL = dict(languages=("en", "de"), groups=("commands",), speakers=3, noise_files_per_kind=1, noise_seconds=2.0)


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.wav"))}


def test_synth_is_deterministic_and_scannable(tmp_path):
    cfg = SynthConfig(**SMALL)
    a = synthesize_corpus(cfg, tmp_path / "a", workers=2)
    assert a["clips"] == 2 * 10 * 3 and a["noise_files"] == 7
    da = _digest(tmp_path / "a")
    assert len(da) == 60 + 7
    # German alone, one worker, no noise: byte-identical German (each part depends only on the
    # seed and its own language, never on scheduling or on the other parts).
    b = synthesize_corpus(SynthConfig(**{**SMALL, "languages": ("de",), "noise_files_per_kind": 0}), tmp_path / "b", workers=1)
    assert b["clips"] == 30
    db = _digest(tmp_path / "b")
    assert db == {k: v for k, v in da.items() if k.startswith("de/")}
    # A rerun reuses finished parts; another seed gives other audio.
    again = synthesize_corpus(cfg, tmp_path / "a", workers=1)
    assert again["reused_parts"] == 3 and _digest(tmp_path / "a") == da
    synthesize_corpus(SynthConfig(**{**SMALL, "seed": 1, "languages": ("de",), "noise_files_per_kind": 0}), tmp_path / "c", workers=1)
    dc = _digest(tmp_path / "c")
    assert set(dc) == set(db) and all(dc[k] != db[k] for k in db)

    # Layout: <lang>/espeak/<word>/<speaker>_<take>.wav, 16 kHz mono PCM16, real speech levels.
    root = tmp_path / "a"
    assert sorted(p.name for p in (root / "de" / "espeak").iterdir() if p.is_dir()) == sorted(VOCABULARY["de"]["commands"])
    info = sf.info(str(root / "de" / "espeak" / "nein" / "v02_0.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16") and 0.15 < info.duration < 1.5
    result = scan(root, workers=1)
    assert not result.skipped and len(result.clips) == 60 and len(result.noise) == 7
    assert {r.speaker_id for r in result.clips} == {"espeak:v00", "espeak:v01", "espeak:v02"}
    # Speaker v01 is the same split in both languages.
    split_of = {(r.language, r.speaker_id): r.split for r in result.clips}
    assert split_of[("en", "espeak:v01")] == split_of[("de", "espeak:v01")]
    for p in (root / "_background_noise_").iterdir():
        if p.suffix == ".wav":
            x, sr = sf.read(str(p))
            assert sr == 16000 and x.shape == (32000,) and 1e-3 < np.sqrt(np.mean(x**2)) < 0.2


def test_speakers_differ_and_config_is_validated():
    cfg = SynthConfig(speakers=40)
    voices = {speaker_params(cfg, "fr", k)["voice"] for k in range(40)}
    assert len(voices) == 40  # every speaker has its own variant
    assert speaker_params(cfg, "fr", 3) == speaker_params(SynthConfig(speakers=40), "fr", 3)
    for bad in (dict(languages=("xx",)), dict(speakers=0), dict(groups=("colors",)), dict(languages=())):
        with pytest.raises(ConfigError):
            SynthConfig(**bad)
    assert len(SynthConfig().languages) >= 6
    for lang, groups in VOCABULARY.items():
        assert all(len(words) == len(set(words)) == 10 for words in groups.values()), lang


def test_pseudo_words_are_a_multilingual_negative_language(tmp_path):
    voices = ("es", "lt", "de")
    cfg = SynthConfig(languages=(), pseudo_words=2, pseudo_voices=voices, speakers=4, pseudo_speakers_per_word=2, noise_files_per_kind=0)
    vocab = pseudo_vocabulary(cfg)
    assert list(vocab) == list(voices) and all(len(w) == len(set(w)) == 2 for w in vocab.values())
    # Seeded by the voice alone: another voice list keeps each voice's words.
    assert pseudo_vocabulary(SynthConfig(**{**cfg.to_dict(), "pseudo_voices": ("de",)}))["de"] == vocab["de"]
    summary = synthesize_corpus(cfg, tmp_path / "a", workers=1)
    assert summary["languages"] == [MULTILINGUAL] and summary["clips"] == 3 * 2 * 2
    result = scan(tmp_path / "a", workers=1)
    assert not result.skipped and {r.language for r in result.clips} == {MULTILINGUAL}
    assert sorted({r.label for r in result.clips}) == sorted(f"{v}_{w}" for v, ws in vocab.items() for w in ws)
    # Each word by pseudo_speakers_per_word of the speakers; the audio is the voice's reading of it.
    by_label: dict[str, set] = {}
    for r in result.clips:
        by_label.setdefault(r.label, set()).add(r.speaker_id)
        info = sf.info(r.path)
        assert info.samplerate == 16000 and 0.2 < info.duration < 1.2
    assert all(len(s) == 2 for s in by_label.values())
    again = synthesize_corpus(SynthConfig(**cfg.to_dict()), tmp_path / "b", workers=1)
    assert again["clips"] == summary["clips"] and _digest(tmp_path / "b") == _digest(tmp_path / "a")
    # Without pseudo-words the config (and so the corpus hash) is the vocabulary corpus's alone.
    assert not any(k.startswith("pseudo") for k in SynthConfig(**SMALL).to_dict())
    for bad in (dict(pseudo_words=2, pseudo_voices=()), dict(pseudo_words=2, pseudo_voices=("es", "es")),
                dict(pseudo_words=2, pseudo_voices=("es_x",)), dict(pseudo_words=2, pseudo_speakers_per_word=5),
                dict(languages=(MULTILINGUAL,)), dict(pseudo_words=-1)):
        with pytest.raises(ConfigError):
            SynthConfig(**{**cfg.to_dict(), **bad})


SCRIPT = {"uk": "CYRILLIC", "ar": "ARABIC", "bn": "BENGALI", "gu": "GUJARATI"}


def test_recorded_languages_are_synthesized_under_their_corpora_labels(tmp_path):
    """uk, ar, bn, gu and lt clips are filed under the labels their recorded corpora use (the
    shipped config's keywords), so a synthesized clip is a row of the same class; what espeak-ng
    reads is the word in the language's own script."""
    import unicodedata

    import yaml

    tasks = yaml.safe_load((Path(__file__).parents[2] / "configs" / "shared-real-micro.yaml").read_text())["data"]["tasks"]
    cfg = SynthConfig(languages=tuple(SCRIPT) + ("lt",), groups=("digits", "commands"), speakers=2, noise_files_per_kind=0)
    for lang in cfg.languages:
        assert set(map(str, tasks[lang]["keywords"])) <= set(cfg.words(lang)), lang
    for lang, script in SCRIPT.items():
        for label in cfg.words(lang):
            letters = [c for c in SPOKEN[lang][label] if c.isalpha()]
            assert letters and all(script in unicodedata.name(c) for c in letters), (lang, label)
    summary = synthesize_corpus(cfg, tmp_path / "c", workers=2)
    assert summary["clips"] == 2 * (4 * 10 + 20)
    result = scan(tmp_path / "c", workers=1)
    assert not result.skipped
    assert {(r.language, r.label) for r in result.clips} == {(lang, w) for lang in cfg.languages for w in cfg.words(lang)}
    for p in (tmp_path / "c" / "ar" / "espeak" / "seven").iterdir():
        if p.suffix == ".wav":
            assert 0.2 < sf.info(str(p)).duration < 1.5
    with pytest.raises(ConfigError, match=r"synth languages \['uk'\] have none of the groups \['commands'\]; uk has \['digits'\]"):
        SynthConfig(languages=("uk",), groups=("commands",))


def test_espeak_reads_the_spoken_text_not_the_label(tmp_path, monkeypatch):
    from polykws.datasets import synth

    said = []

    def say(self, text, voice, rate_wpm, pitch, pitch_range):
        said.append((text, voice.split("+")[0]))
        return np.full(4000, 0.1, np.float32)

    monkeypatch.setattr(synth._Espeak, "say", say)
    cfg = SynthConfig(languages=("uk", "lt"), groups=("digits",), speakers=1, noise_files_per_kind=0)
    synth._synth_language((cfg.to_dict(), "uk", str(tmp_path / "uk")))
    synth._synth_language((cfg.to_dict(), "lt", str(tmp_path / "lt")))
    assert said[:2] == [("нуль", "uk"), ("один", "uk")] and ("šeši", "lt") in said
    assert sorted(p.name for p in (tmp_path / "uk").iterdir())[:2] == ["eight", "five"]

