"""Long evaluation streams: keyword clips and negatives placed in real background noise, seeded.

A streaming keyword spotter is judged on continuous audio (FRR at a fixed number of false
accepts per hour), so this module turns a split's clips into long 16 kHz streams with their
ground truth. Everything is drawn from one seed, so the same rows, noise files and
:class:`StreamConfig` give bit-identical audio and events; nothing is stored in the repo.

For every SNR in ``snrs_db`` a language gets two streams:

- ``positive``: every keyword clip of the split, once, in a seeded order, each after a noise gap
  of ``gap_s_min``-``gap_s_max`` seconds;
- ``negative``: ``negative_s_per_snr`` seconds of words that must never fire - the language's
  non-target words (``_unknown_`` material) and other languages' words of the same split - and
  stretches of noise alone (``noise_only_share`` of the segments). Training-only rows (a
  synthesized corpus: pseudo-words in language ``mul``, or synthesized keywords, marked by the
  scan) never enter a stream, so adding them to training leaves every stream bit-identical.

Levels: every word is scaled so its active-speech power (the power of its 10 ms frames within
30 dB of its loudest, as ``augment.mix_at_snr`` measures it) is ``speech_level_dbfs``. The
background is a continuous bed of crops of the split's noise recordings (noise files are split by
file, as for ``_silence_``: ``features.split_noise_files``), each crop normalised to the same
power ``speech_level_dbfs - snr_db`` and joined with short linear cross-fades, so the SNR holds
for every word of the stream and the bed has no clicks.

Ground truth: a word's event spans its active region (first to last active 10 ms frame); the
clip placed in the stream keeps ``edge_margin_ms`` either side of it with ``fade_ms`` fades.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import numpy as np

from polykws.core import ConfigError, PolykwsError, stable_hash

from .audio import BadAudioError, load_waveform
from .augment import active_power, active_span  # noqa: F401 (active_span re-exported)
from .features import split_noise_files
from .task import TaskSpec
from .manifest import SPLITS, ClipRecord
from .splits import SplitConfig

STREAM_KINDS = ("positive", "negative")
# Event kinds: a keyword to detect, or a word that must not fire.
EVENT_KINDS = ("keyword", "unknown", "other_language")


@dataclass(frozen=True)
class StreamConfig:
    snrs_db: tuple[float, ...] = (20.0, 10.0, 5.0, 0.0)
    speech_level_dbfs: float = -26.0
    gap_s_min: float = 1.0
    gap_s_max: float = 3.0
    # 4 SNRs x 900 s = one hour of negative audio per language.
    negative_s_per_snr: float = 900.0
    noise_only_share: float = 0.25
    noise_crop_s_min: float = 1.0
    noise_crop_s_max: float = 4.0
    crossfade_ms: float = 10.0
    edge_margin_ms: float = 100.0
    fade_ms: float = 10.0
    sample_rate_hz: int = 16000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "snrs_db", tuple(float(s) for s in self.snrs_db))
        if not self.snrs_db:
            raise ConfigError("streams need at least one SNR in snrs_db")
        if not self.speech_level_dbfs < 0:
            raise ConfigError(f"speech_level_dbfs must be below 0 dBFS, got {self.speech_level_dbfs!r}")
        if not 0 < self.gap_s_min <= self.gap_s_max:
            raise ConfigError(f"stream gaps must satisfy 0 < gap_s_min <= gap_s_max, got [{self.gap_s_min}, {self.gap_s_max}]")
        if self.negative_s_per_snr < 0:
            raise ConfigError(f"negative_s_per_snr must be >= 0, got {self.negative_s_per_snr!r}")
        if not 0.0 <= self.noise_only_share <= 1.0:
            raise ConfigError(f"noise_only_share must be in [0, 1], got {self.noise_only_share!r}")
        if not 0 < self.noise_crop_s_min <= self.noise_crop_s_max:
            raise ConfigError("noise crops must satisfy 0 < noise_crop_s_min <= noise_crop_s_max")
        for name in ("crossfade_ms", "edge_margin_ms", "fade_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.fade_ms > self.edge_margin_ms:
            raise ConfigError("fade_ms must not exceed edge_margin_ms (the fade would cut into the word)")
        if self.sample_rate_hz <= 0:
            raise ConfigError(f"sample_rate_hz must be > 0, got {self.sample_rate_hz!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["snrs_db"] = list(self.snrs_db)
        return d


@dataclass(frozen=True)
class StreamEvent:
    """One word placed in a stream; samples are stream positions of its active region."""

    label: str
    kind: str
    start_sample: int
    end_sample: int
    path: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Stream:
    name: str
    language: str
    split: str
    kind: str
    snr_db: float
    audio: np.ndarray  # float32 mono in [-1, 1]
    events: tuple[StreamEvent, ...]
    sample_rate_hz: int = 16000

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / self.sample_rate_hz

    @property
    def keyword_events(self) -> tuple[StreamEvent, ...]:
        return tuple(e for e in self.events if e.kind == "keyword")


@dataclass(frozen=True)
class _Word:
    audio: np.ndarray  # trimmed, faded, unit active power
    onset: int  # active region inside `audio`
    offset: int
    label: str
    kind: str
    path: str


def _seed(*parts) -> int:
    return int(stable_hash([str(p) for p in parts], 16), 16) & ((1 << 63) - 1)


def _fade(x: np.ndarray, n: int) -> np.ndarray:
    if n <= 0 or x.shape[0] < 2 * n:
        return x
    ramp = np.linspace(0.0, 1.0, n + 2, dtype=np.float64)[1:-1].astype(np.float32)
    y = x.copy()
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def _prepare_word(record: ClipRecord, kind: str, label: str, cfg: StreamConfig) -> _Word | None:
    try:
        x = load_waveform(record.path, cfg.sample_rate_hz)
    except BadAudioError:
        return None
    span = active_span(x, cfg.sample_rate_hz)
    if span is None:
        return None
    margin = int(round(cfg.edge_margin_ms * cfg.sample_rate_hz / 1000))
    lo, hi = max(0, span[0] - margin), min(x.shape[0], span[1] + margin)
    seg = _fade(x[lo:hi].astype(np.float32), int(round(cfg.fade_ms * cfg.sample_rate_hz / 1000)))
    p = active_power(x[span[0] : span[1]])
    if p <= 0:
        return None
    seg = (seg / np.float32(math.sqrt(p))).astype(np.float32)
    return _Word(seg, span[0] - lo, span[1] - lo, label, kind, record.path)


class _NoiseBed:
    """Continuous background from seeded crops of the split's noise files, each at unit power."""

    def __init__(self, waves: Sequence[np.ndarray], cfg: StreamConfig):
        if not waves:
            raise PolykwsError("no usable background-noise recording in this split")
        self.waves = list(waves)
        self.cfg = cfg

    def render(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        cfg = self.cfg
        sr = cfg.sample_rate_hz
        xf = int(round(cfg.crossfade_ms * sr / 1000))
        out = np.zeros(n_samples + xf, np.float32)
        pos = 0
        while pos < n_samples:
            wave = self.waves[int(rng.integers(0, len(self.waves)))]
            want = int(round(rng.uniform(cfg.noise_crop_s_min, cfg.noise_crop_s_max) * sr)) + xf
            if wave.shape[0] <= want:
                crop = np.resize(wave, want)
            else:
                start = int(rng.integers(0, wave.shape[0] - want + 1))
                crop = wave[start : start + want]
            p = float(np.mean(crop.astype(np.float64) ** 2))
            crop = (crop / np.float32(math.sqrt(p))).astype(np.float32) if p > 0 else crop.astype(np.float32)
            if xf and pos > 0:
                ramp = np.linspace(0.0, 1.0, xf + 2, dtype=np.float64)[1:-1].astype(np.float32)
                crop = crop.copy()
                crop[:xf] *= ramp
                out[pos : pos + xf] *= ramp[::-1]
            end = min(out.shape[0], pos + crop.shape[0])
            out[pos:end] += crop[: end - pos]
            pos = end - xf if end - xf > pos else end
        return out[:n_samples]


def stream_sources(records: Sequence[ClipRecord], task: TaskSpec, split: str) -> dict[str, list[tuple[ClipRecord, str]]]:
    """The split's rows by event kind: (row, label) for keywords, unknown words and other languages' words."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    out: dict[str, list[tuple[ClipRecord, str]]] = {k: [] for k in EVENT_KINDS}
    for r in sorted(records, key=lambda r: r.path):
        if r.is_noise or r.split != split or r.train_only or (task.sources and r.source not in task.sources and task.matches_language(r)):
            continue
        kw = task.keyword_of(r)
        if kw is not None:
            out["keyword"].append((r, kw))
        elif task.matches_language(r):
            if not task.unknown_words or r.label in task.unknown_words:
                out["unknown"].append((r, r.label))
        else:
            out["other_language"].append((r, f"{r.language}:{r.label}"))
    return out


def split_noise_waves(noise_paths: Sequence[str], split: str, sample_rate_hz: int = 16000, split_cfg: SplitConfig = SplitConfig()) -> list[np.ndarray]:
    """The split's background-noise recordings (the same file split as `_silence_` uses)."""
    waves = []
    for p in split_noise_files(sorted(set(noise_paths)), split_cfg)[split]:
        try:
            waves.append(load_waveform(p, sample_rate_hz, allow_silent=True))
        except BadAudioError:
            continue
    return [w for w in waves if w.shape[0] and float(np.max(np.abs(w))) > 0]


def _render(name: str, language: str, split: str, kind: str, snr_db: float, words: list[_Word], gaps: list[int],
            noise: _NoiseBed, cfg: StreamConfig, rng: np.random.Generator) -> Stream:
    if len(gaps) != len(words) + 1:  # pragma: no cover - guards the callers' bookkeeping
        raise AssertionError("a stream needs one gap before every word and one after the last")
    total = sum(gaps) + sum(w.audio.shape[0] for w in words)
    speech_amp = np.float32(10.0 ** (cfg.speech_level_dbfs / 20.0))
    noise_amp = np.float32(10.0 ** ((cfg.speech_level_dbfs - snr_db) / 20.0))
    audio = noise.render(total, rng) * noise_amp
    events = []
    pos = 0
    for i, w in enumerate(words):
        pos += gaps[i]
        audio[pos : pos + w.audio.shape[0]] += w.audio * speech_amp
        events.append(StreamEvent(w.label, w.kind, pos + w.onset, pos + w.offset, w.path))
        pos += w.audio.shape[0]
    np.clip(audio, -1.0, 1.0, out=audio)
    return Stream(name, language, split, kind, snr_db, audio, tuple(events), cfg.sample_rate_hz)


def iter_streams(
    records: Sequence[ClipRecord],
    task: TaskSpec,
    noise_paths: Sequence[str],
    split: str = "test",
    cfg: StreamConfig = StreamConfig(),
    kinds: Sequence[str] = STREAM_KINDS,
) -> Iterator[Stream]:
    """Yield the positive and negative stream of every SNR for `task` on `split` (see module doc).

    One stream at a time: an hour of negatives is about 230 MB of float32, so callers score each
    stream and drop it. Raises when the split has no keyword clip or no noise recording.
    """
    bad = [k for k in kinds if k not in STREAM_KINDS]
    if bad:
        raise ConfigError(f"stream kinds must be among {STREAM_KINDS}, got {bad}")
    sources = stream_sources(records, task, split)
    if "positive" in kinds and not sources["keyword"]:
        raise PolykwsError(f"task {task.language}: no keyword clip in the {split} split to build streams from")
    noise = _NoiseBed(split_noise_waves(noise_paths, split, cfg.sample_rate_hz), cfg)
    cache: dict[str, _Word | None] = {}

    def word(r: ClipRecord, label: str, kind: str) -> _Word | None:
        if r.path not in cache:
            cache[r.path] = _prepare_word(r, kind, label, cfg)
        return cache[r.path]

    sr = cfg.sample_rate_hz
    for snr in cfg.snrs_db:
        for kind in kinds:
            rng = np.random.default_rng(_seed(cfg.seed, task.language, split, kind, snr))
            if kind == "positive":
                order = rng.permutation(len(sources["keyword"]))
                words = [w for i in order if (w := word(*sources["keyword"][i], "keyword")) is not None]
                gaps = [int(round(rng.uniform(cfg.gap_s_min, cfg.gap_s_max) * sr)) for _ in range(len(words) + 1)]
            else:
                pools = [(k, sources[k]) for k in ("unknown", "other_language") if sources[k]]
                words, gaps = [], [0]  # gaps[i] precedes words[i]; gaps[-1] is the pending gap
                length, target = 0, int(round(cfg.negative_s_per_snr * sr))
                while length < target:
                    gap = int(round(rng.uniform(cfg.gap_s_min, cfg.gap_s_max) * sr))
                    if not pools or rng.random() < cfg.noise_only_share:
                        gaps[-1] += gap  # noise alone: a stretch without a word
                        length += gap
                        continue
                    k, pool = pools[int(rng.integers(0, len(pools)))]
                    w = word(*pool[int(rng.integers(0, len(pool)))], k)
                    if w is None:
                        continue
                    gaps[-1] += gap
                    words.append(w)
                    gaps.append(0)
                    length += gap + w.audio.shape[0]
                gaps[-1] += int(round(cfg.gap_s_max * sr))  # room for a late detection of the last word
            name = f"{task.language}/{split}/{kind}/snr{snr:g}"
            yield _render(name, task.language, split, kind, snr, words, gaps, noise, cfg, rng)
