"""Tasks and feature splits: from manifest rows to (x, y) arrays, cached on disk.

A :class:`~.task.TaskSpec` names a language and its keywords; ``_silence_`` and ``_unknown_`` are added
when enabled. :func:`load_task_features` builds train/val/test :class:`FeatureSplit` arrays:

- keyword clips come from rows whose label is a keyword, in the row's (speaker-disjoint) split;
- ``_unknown_`` is a seeded sample of the language's non-target words (plus every word of the
  ``unknown_languages``), as many as an average keyword class unless ``unknown_fraction`` says
  otherwise (GSC: 10 % with 10 keywords, the same);
- ``_silence_`` is built from background noise: random 1 s crops of the split's noise files at a
  random volume in [0, 1] (as TF's speech_commands does), plus ``true_silence_fraction`` of all-zero
  clips. Noise files are split by file (never shared between splits);
- ``augment_copies`` extra training rows per training clip come from ``augment_waveform``;
- with ``frontend_warm_ms`` (micro frontend only), augmented rows and ``_silence_`` crops are
  computed by a frontend that first ran over that much of the same background (the noise stretch
  before the crop, at the same level), as on a device that listens continuously; clean clips have
  no background to warm on and keep a fresh frontend.

Caching: every example's features live in ``<cache_dir>/<frontend hash>/<key[:2]>/<key>.npy`` where
key hashes the frontend hash, the audio file's SHA-256 and the loader version (plus the augment
config, seed and copy index for augmented rows, or the noise file, offset and gain for silence;
and the warm-up length when there is one).
A second call finds every key and computes nothing. Misses are computed by a process pool (all
cores, one thread each).
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from polykws.core import ConfigError, PolykwsError, stable_hash

from .audio import LOADER_VERSION, BadAudioError, load_waveform
from .augment import AugmentConfig
from .featurecache import _audio_hashes, _compute_all, _Example, _seed_for
from .frontend import FrontendConfig
from .manifest import ANY_LANGUAGE, SILENCE_LABEL, SPLITS, UNKNOWN_LABEL, ClipRecord
from .scan import SkippedFile
from .splits import SplitConfig, speaker_splits
from .task import TaskSpec

FEATURE_CACHE_VERSION = 1
# The partial-keyword recipe (augment.partial_keyword, PartialConfig's defaults) in the cache key.
PARTIAL_VERSION = 1


@dataclass
class FeatureSplit:
    """Features of one split: x (N, frames, features) float32, y (N,) int64 indexes into labels.

    speakers and paths are per example ("" speaker for _silence_; silence paths describe the
    noise crop). origin is "clip", "augmented" or "silence". skipped lists files that could not
    be used (bad audio) - never silently dropped.
    """

    x: np.ndarray
    y: np.ndarray
    labels: tuple[str, ...]
    speakers: tuple[str, ...]
    paths: tuple[str, ...]
    origin: tuple[str, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()
    notes: tuple[str, ...] = ()
    frontend: FrontendConfig | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def class_counts(self) -> dict[str, int]:
        counts = Counter(int(v) for v in self.y)
        return {label: counts.get(i, 0) for i, label in enumerate(self.labels)}


def noise_files(noise_dir: str | os.PathLike | None) -> list[str]:
    """Every audio file under `noise_dir`, sorted (the background-noise pool)."""
    if not noise_dir:
        return []
    root = Path(noise_dir)
    if not root.is_dir():
        raise PolykwsError(f"noise_dir {root} is not a folder")
    return [str(p) for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in {".wav", ".flac", ".ogg", ".mp3", ".opus"}]


def split_noise_files(paths: Sequence[str], split_cfg: SplitConfig = SplitConfig()) -> dict[str, list[str]]:
    """Noise files per split, by file (quota rule over file names): no recording spans two splits.

    Keyed by the file *name*, never its directory: the same noise folder mounted elsewhere (another
    checkout, a CI machine) must give the same `_silence_` splits. Two files with one name share a split.
    """
    if not paths:
        return {s: [] for s in SPLITS}
    keys = {p: f"noise:{os.path.basename(p)}" for p in paths}
    assignment, _ = speaker_splits(sorted(set(keys.values())), SplitConfig(val_pct=split_cfg.val_pct, test_pct=split_cfg.test_pct, mode="quota"))
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for p in sorted(paths):
        out[assignment[keys[p]]].append(p)
    return out


def _cache_key(fe_hash: str, **parts) -> str:
    """Cache key of one example: the cache version and frontend hash plus what identifies its samples."""
    return stable_hash({"v": FEATURE_CACHE_VERSION, "fe": fe_hash, **parts}, 32)


def _partition_rows(
    records: Sequence[ClipRecord], task: TaskSpec, noise_dir: str | os.PathLike | None
) -> tuple[dict[str, list[ClipRecord]], dict[str, list[ClipRecord]], list[str]]:
    """Split rows into keyword clips and non-target words (both per split), and noise file paths."""
    keyword_rows: dict[str, list[ClipRecord]] = defaultdict(list)
    other_rows: dict[str, list[ClipRecord]] = defaultdict(list)
    noise_paths: list[str] = list(noise_files(noise_dir))
    for r in records:
        if r.is_noise:  # noise serves every task, whatever its source filter
            noise_paths.append(r.path)
            continue
        if r.language in task.unknown_languages and not task.matches_language(r):
            other_rows[r.split].append(r)  # the source filter is about the task's own corpus
            continue
        if task.sources and r.source not in task.sources:
            continue
        kw = task.keyword_of(r)
        if kw is not None:
            keyword_rows[r.split].append(r)
        elif task.matches_language(r) and (not task.unknown_words or r.label in task.unknown_words):
            other_rows[r.split].append(r)
    return keyword_rows, other_rows, noise_paths


def _check_task_rows(
    records: Sequence[ClipRecord], task: TaskSpec, keyword_rows: dict[str, list[ClipRecord]], other_rows: dict[str, list[ClipRecord]]
) -> None:
    """Raise when a keyword has no clips, or the task wants `_unknown_` but has no non-target words."""
    found = {task.keyword_of(r) for rows in keyword_rows.values() for r in rows}
    missing = [k for k in task.keywords if k not in found]
    if missing:
        have = sorted({r.label for r in records if task.matches_language(r) and not r.is_noise})
        raise PolykwsError(f"task {task.language}: keywords {missing} have no clips; labels present: {have}")
    if task.unknown and not any(other_rows.values()):
        raise PolykwsError(
            f"task {task.language} has an _unknown_ class but no non-target words: every {task.language} word is a keyword. "
            "Pass unknown=False, fewer keywords, or add recordings of other words."
        )


def _check_silence_noise(task: TaskSpec, noise_by_split: dict[str, list[str]]) -> None:
    """Raise when the task wants noise-based `_silence_` but no split has a noise file."""
    if task.silence and not any(noise_by_split.values()) and task.true_silence_fraction < 1.0:
        raise PolykwsError(
            f"task {task.language} has a _silence_ class but no background noise: pass noise_dir, include "
            "_background_noise_ rows, or set true_silence_fraction=1.0 for digital silence only"
        )


def _load_noise_waves(
    noise_by_split: dict[str, list[str]], sample_rate_hz: int, skipped: dict[str, list[SkippedFile]]
) -> dict[str, np.ndarray]:
    """Load every split's noise files; unreadable ones go to `skipped` and leave their split's list."""
    noise_waves: dict[str, np.ndarray] = {}
    for split in SPLITS:
        for p in noise_by_split[split]:
            try:
                noise_waves[p] = load_waveform(p, sample_rate_hz, allow_silent=True)
            except BadAudioError as exc:
                skipped[split].append(SkippedFile(p, exc.reason, exc.detail, ANY_LANGUAGE, "noise"))
        noise_by_split[split] = [p for p in noise_by_split[split] if p in noise_waves]
    return noise_waves


@dataclass
class _SplitPlanner:
    """Decides every example of a split: seeded by (seed, split, ...), so independent of scheduling."""

    task: TaskSpec
    frontend: FrontendConfig
    seed: int
    hashes: dict[str, str]
    noise_waves: dict[str, np.ndarray]
    noise_pool_key: str
    augment: AugmentConfig | None
    augment_copies: int
    max_per_keyword: int
    notes: dict[str, list[str]]
    warm_samples: int = 0
    fe_hash: str = field(init=False)
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.fe_hash = self.frontend.config_hash()
        self.index = {label: i for i, label in enumerate(self.task.labels)}

    def clip_key(self, path: str) -> str:
        return _cache_key(self.fe_hash, audio=self.hashes[path], loader=LOADER_VERSION)

    def plan(self, split: str, keyword_rows: list[ClipRecord], other_rows: list[ClipRecord], noise_pool: list[str]) -> list[_Example]:
        examples = self.keyword_examples(keyword_rows)
        n_kw = len(examples)
        per_class = n_kw / len(self.task.keywords) if self.task.keywords else 0
        if self.task.unknown:
            examples += self.unknown_examples(split, other_rows, n_kw, per_class)
        if self.task.silence:
            examples += self.silence_examples(split, noise_pool, n_kw, per_class)
        if split == "train" and self.augment_copies:
            examples += self.augmented_examples([e for e in examples if e.kind == "clip"])
        if split == "train" and self.task.partial_keyword_fraction:
            examples += self.partial_examples(examples[:n_kw])
        return examples

    def keyword_examples(self, rows: list[ClipRecord]) -> list[_Example]:
        task = self.task
        rows = sorted(rows, key=lambda r: r.path)
        if self.max_per_keyword:
            by_kw: dict[str, list[ClipRecord]] = defaultdict(list)
            for r in sorted(rows, key=lambda r: stable_hash([self.seed, r.path])):
                by_kw[task.keyword_of(r)].append(r)
            rows = sorted((r for kw_rows in by_kw.values() for r in kw_rows[: self.max_per_keyword]), key=lambda r: r.path)
        return [_Example("clip", self.index[task.keyword_of(r)], r.speaker_id, r.path, self.clip_key(r.path)) for r in rows]

    def unknown_examples(self, split: str, rows: list[ClipRecord], n_kw: int, per_class: float) -> list[_Example]:
        candidates = sorted(rows, key=lambda r: r.path)
        want = math.ceil(self.task.unknown_fraction * n_kw) if self.task.unknown_fraction else math.ceil(per_class)
        rng = np.random.default_rng(_seed_for(self.seed, split, "unknown"))
        pick = sorted(rng.choice(len(candidates), size=min(want, len(candidates)), replace=False).tolist()) if candidates else []
        if len(pick) < want:
            self.notes[split].append(f"_unknown_: {len(pick)} of {want} wanted (only {len(candidates)} non-target clips in {split})")
        label = self.index[UNKNOWN_LABEL]
        return [_Example("clip", label, candidates[i].speaker_id, candidates[i].path, self.clip_key(candidates[i].path)) for i in pick]

    def silence_examples(self, split: str, pool: list[str], n_kw: int, per_class: float) -> list[_Example]:
        task = self.task
        want = math.ceil(task.silence_fraction * n_kw) if task.silence_fraction else math.ceil(per_class)
        if not pool and task.true_silence_fraction < 1.0:
            self.notes[split].append(f"_silence_: no noise files in {split}; digital silence only")
        label = self.index[SILENCE_LABEL]
        examples = []
        for i in range(want):
            rng = np.random.default_rng(_seed_for(self.seed, split, "silence", i))
            if not pool or rng.random() < task.true_silence_fraction:
                examples.append(_Example("silence", label, "", "", _cache_key(self.fe_hash, silence="zeros")))
                continue
            path = pool[int(rng.integers(0, len(pool)))]
            wave = self.noise_waves[path]
            offset = int(rng.integers(0, max(1, wave.shape[0] - self.frontend.clip_samples + 1)))
            gain = float(rng.uniform(0.0, 1.0))
            key = _cache_key(self.fe_hash, noise=self.hashes[path], offset=offset, gain=gain, loader=LOADER_VERSION, **self._warm_key())
            examples.append(_Example("silence", label, "", path, key, noise_offset=offset, noise_gain=gain, warm_samples=self.warm_samples))
        return examples

    def augmented_examples(self, base: list[_Example]) -> list[_Example]:
        aug_id = stable_hash(self.augment.to_dict())
        examples = []
        for copy in range(1, self.augment_copies + 1):
            for e in base:
                audio = self.hashes[e.path]
                aug_seed = _seed_for(self.seed, "augment", audio, copy)
                key = _cache_key(self.fe_hash, audio=audio, loader=LOADER_VERSION, aug=aug_id, seed=aug_seed, noise=self.noise_pool_key,
                                 **self._warm_key())
                examples.append(_Example("augmented", e.label_idx, e.speaker, e.path, key, copy=copy, aug_seed=aug_seed,
                                         warm_samples=self.warm_samples))
        return examples

    def partial_examples(self, keywords: list[_Example]) -> list[_Example]:
        """`_unknown_` examples cut from keyword clips (augment.partial_keyword), seeded per pick."""
        want = math.ceil(self.task.partial_keyword_fraction * len(keywords))
        if not keywords:
            return []
        aug_id = stable_hash(self.augment.to_dict()) if self.augment else ""
        label = self.index[UNKNOWN_LABEL]
        examples = []
        for i in range(want):
            e = keywords[i % len(keywords)]
            audio = self.hashes[e.path]
            seed = _seed_for(self.seed, "partial", audio, i // len(keywords))
            key = _cache_key(self.fe_hash, audio=audio, loader=LOADER_VERSION, partial=PARTIAL_VERSION, aug=aug_id, seed=seed,
                             noise=self.noise_pool_key if self.augment else "", **(self._warm_key() if self.augment else {}))
            examples.append(_Example("partial", label, e.speaker, e.path, key, aug_seed=seed,
                                     warm_samples=self.warm_samples if self.augment else 0))
        return examples

    def _warm_key(self) -> dict[str, int]:
        # Only a warm frontend enters the key, so reset features keep their cache files.
        return {"warm": self.warm_samples} if self.warm_samples else {}


def _sort_results(
    flat: list[tuple[str, _Example]], arrays: list, records: Sequence[ClipRecord], task: TaskSpec, skipped: dict[str, list[SkippedFile]]
) -> dict[str, list[tuple[_Example, np.ndarray]]]:
    """Group computed features by split; failed examples go to `skipped` (once per file and split)."""
    per_split: dict[str, list[tuple[_Example, np.ndarray]]] = defaultdict(list)
    source_of = {r.path: (r.language, r.source) for r in records}
    for (split, ex), arr in zip(flat, arrays):
        if isinstance(arr, tuple):
            _, path, reason, detail = arr
            if not any(s.path == path for s in skipped[split]):
                lang, src = source_of.get(path, (task.language, "noise"))
                skipped[split].append(SkippedFile(path, reason, detail, lang, src))
            continue
        per_split[split].append((ex, arr))
    return per_split


def _example_path(e: _Example) -> str:
    """The path a FeatureSplit reports: the audio file, or a description of a silence crop."""
    if e.kind != "silence":
        return e.path
    return f"silence:{e.path}@{e.noise_offset}x{e.noise_gain:.3f}" if e.path else "silence:zeros"


def _feature_split(
    items: list[tuple[_Example, np.ndarray]], labels: tuple[str, ...], skipped: list[SkippedFile], notes: list[str], frontend: FrontendConfig
) -> FeatureSplit:
    x = np.stack([a for _, a in items]).astype(np.float32) if items else np.zeros((0, *frontend.input_shape), np.float32)
    return FeatureSplit(
        x=x,
        y=np.array([e.label_idx for e, _ in items], dtype=np.int64),
        labels=labels,
        speakers=tuple(e.speaker for e, _ in items),
        paths=tuple(_example_path(e) for e, _ in items),
        origin=tuple(e.kind for e, _ in items),
        skipped=tuple(skipped),
        notes=tuple(notes),
        frontend=frontend,
    )


def warm_samples_for(frontend: FrontendConfig, frontend_warm_ms: float) -> int:
    """Samples of preceding background for `frontend_warm_ms`; refused where it cannot matter."""
    if frontend_warm_ms < 0:
        raise ConfigError(f"frontend_warm_ms must be >= 0, got {frontend_warm_ms!r}")
    if frontend_warm_ms and frontend.kind != "micro":
        raise ConfigError(f"frontend_warm_ms applies to the micro frontend (noise reduction and PCAN carry state); "
                          f"{frontend.kind} has no state across frames")
    return int(round(frontend.sample_rate_hz * frontend_warm_ms / 1000.0))


def load_task_features(
    records: Sequence[ClipRecord],
    task: TaskSpec,
    frontend: FrontendConfig,
    *,
    cache_dir: str | os.PathLike,
    noise_dir: str | os.PathLike | None = None,
    augment: AugmentConfig | None = None,
    augment_copies: int = 0,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    strict: bool = False,
    max_per_keyword: int = 0,
    frontend_warm_ms: float = 0.0,
) -> dict[str, FeatureSplit]:
    """Build {"train", "val", "test"} FeatureSplits for task from manifest rows (see module doc).

    `frontend_warm_ms`: the frontend first runs over this much of the background that augmented
    copies and `_silence_` crops are made of (module doc), as a device's does.
    """
    if augment_copies < 0:
        raise ConfigError(f"augment_copies must be >= 0, got {augment_copies}")
    warm_samples = warm_samples_for(frontend, frontend_warm_ms)
    if augment_copies and augment is None:
        augment = AugmentConfig()
    cache_dir = Path(cache_dir)

    # 1. Partition rows: keyword clips, non-target words, noise.
    keyword_rows, other_rows, noise_paths = _partition_rows(records, task, noise_dir)
    _check_task_rows(records, task, keyword_rows, other_rows)
    noise_by_split = split_noise_files(sorted(set(noise_paths)))
    _check_silence_noise(task, noise_by_split)

    # 2. Decide every example of every split (seeded, independent of scheduling).
    audio_paths = [r.path for rows in keyword_rows.values() for r in rows] + [r.path for rows in other_rows.values() for r in rows]
    hashes = _audio_hashes(audio_paths + list(noise_paths))
    skipped: dict[str, list[SkippedFile]] = defaultdict(list)
    notes: dict[str, list[str]] = defaultdict(list)
    noise_waves = _load_noise_waves(noise_by_split, frontend.sample_rate_hz, skipped)
    train_noise = noise_by_split["train"]
    planner = _SplitPlanner(
        task, frontend, seed, hashes, noise_waves,
        noise_pool_key=stable_hash(sorted(hashes.get(p, p) for p in train_noise)),
        augment=augment, augment_copies=augment_copies, max_per_keyword=max_per_keyword, notes=notes, warm_samples=warm_samples,
    )
    plan = {split: planner.plan(split, keyword_rows.get(split, []), other_rows.get(split, []), noise_by_split[split]) for split in SPLITS}

    # 3. Compute (or load) features for all splits in one pool.
    flat = [(split, ex) for split in SPLITS for ex in plan[split]]
    arrays, _ = _compute_all(
        [ex for _, ex in flat], frontend, cache_dir,
        augment=augment, noise_paths=train_noise, workers=workers, progress=progress,
        description=f"{frontend.kind} features {task.language}",
    )
    per_split = _sort_results(flat, arrays, records, task, skipped)
    if strict and any(skipped.values()):
        bad = [s for split in SPLITS for s in skipped[split]]
        raise PolykwsError("strict: unusable files:\n" + "\n".join(f"  {s.path}: {s.reason} ({s.detail})" for s in bad[:20]))
    return {split: _feature_split(per_split.get(split, []), task.labels, skipped[split], notes[split], frontend) for split in SPLITS}


def warm_feature_cache(
    records: Sequence[ClipRecord],
    frontend: FrontendConfig,
    *,
    cache_dir: str | os.PathLike,
    workers: int | None = None,
    progress: bool = True,
    languages: Iterable[str] | None = None,
) -> dict:
    """Compute (or find) the features of every clip row: {'clips', 'computed', 'cached', 'skipped'}."""
    langs = set(languages) if languages else None
    rows = [r for r in records if not r.is_noise and (langs is None or r.language in langs)]
    hashes = _audio_hashes(r.path for r in rows)
    fe_hash = frontend.config_hash()
    examples = [
        _Example("clip", 0, r.speaker_id, r.path, _cache_key(fe_hash, audio=hashes[r.path], loader=LOADER_VERSION))
        for r in sorted(rows, key=lambda r: r.path)
    ]
    arrays, stats = _compute_all(
        examples, frontend, Path(cache_dir), augment=None, noise_paths=(), workers=workers, progress=progress, description=f"{frontend.kind} features"
    )
    stats["clips"] = len(examples)
    stats["skipped"] = sum(1 for a in arrays if isinstance(a, tuple))
    return stats
