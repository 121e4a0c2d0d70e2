"""The feature cache: one example recipe (clip, augmented copy or silence crop) per cached
`.npy`, keyed by everything that changes its values, computed in parallel and written atomically.
`features.load_task_features` plans the examples; this module turns them into arrays.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from polykws.core import sha256_file, stable_hash

from ._parallel import parallel_map
from .audio import BadAudioError, load_audio, load_waveform
from .augment import AugmentConfig, augment_waveform_warm, partial_keyword
from .frontend import FrontendConfig, compute_features_batch, compute_features_warm



# ---------------------------------------------------------------------------------------------
# Examples ("recipes") and their cache keys


@dataclass(frozen=True)
class _Example:
    kind: str  # clip | augmented | partial | silence
    label_idx: int
    speaker: str
    path: str  # audio path (clip/augmented) or noise path ("" = digital silence)
    key: str  # cache key
    copy: int = 0
    aug_seed: int = 0
    noise_offset: int = 0
    noise_gain: float = 0.0
    # Background the frontend runs over before the example (augmented copies and silence crops):
    # features from a warm frontend, as on a device that listens continuously. 0 = a fresh frontend.
    warm_samples: int = 0


def _feature_path(cache_dir: Path, frontend: FrontendConfig, key: str) -> Path:
    return cache_dir / frontend.config_hash() / key[:2] / f"{key}.npy"


def _write_cache_file(path: Path, arr: np.ndarray) -> None:
    """Write-then-rename (never a torn file under the final name), without fsync.

    Cache entries are recomputable: a crash can at worst lose an entry (np.load then fails and
    the example is recomputed), so paying an fsync per example would only slow the build.
    """
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


# Worker-side state: the noise pool for augmentation, loaded once per process.
_NOISE_CACHE: dict[str, np.ndarray] = {}


def _noise_wave(path: str, sample_rate_hz: int) -> np.ndarray:
    wave = _NOISE_CACHE.get(path)
    if wave is None:
        wave = load_waveform(path, sample_rate_hz, allow_silent=True)
        _NOISE_CACHE[path] = wave
    return wave


def _compute_chunk(job: tuple) -> list:
    """Worker: compute + cache features for a chunk of examples. Returns arrays or ('bad', ...)."""
    frontend_dict, cache_dir, examples, aug_dict, noise_paths = job
    frontend = FrontendConfig.from_dict(frontend_dict)
    aug = AugmentConfig(**aug_dict) if aug_dict else None
    results: list = [None] * len(examples)
    waves, where = [], []
    for i, ex in enumerate(examples):
        w = ex.warm_samples
        preceding = np.zeros(w, np.float32)
        try:
            if ex.kind == "silence":
                if ex.path:
                    noise = _noise_wave(ex.path, frontend.sample_rate_hz)
                    seg = np.resize(noise, frontend.clip_samples) if noise.shape[0] < frontend.clip_samples else noise[ex.noise_offset : ex.noise_offset + frontend.clip_samples]
                    wave = (seg * np.float32(ex.noise_gain)).astype(np.float32)
                    # The same recording before the crop (wrapping around a short file), at the same gain.
                    preceding = (np.take(noise, np.arange(ex.noise_offset - w, ex.noise_offset), mode="wrap") * np.float32(ex.noise_gain)).astype(np.float32)
                else:
                    wave = np.zeros(frontend.clip_samples, np.float32)
            else:
                wave = load_audio(ex.path, frontend.sample_rate_hz, frontend.clip_samples)
                if ex.kind in ("augmented", "partial"):
                    rng = np.random.default_rng(ex.aug_seed)
                    cfg = aug
                    if ex.kind == "partial":
                        _, wave = partial_keyword(wave, rng, sample_rate_hz=frontend.sample_rate_hz)
                        # The piece keeps the place partial_keyword gave it; noise, gain, speed
                        # and pitch apply as to any augmented copy.
                        cfg = replace(aug, time_shift_ms=0.0, offset_anywhere=False) if aug is not None else None
                    if cfg is not None:
                        pool = [_noise_wave(p, frontend.sample_rate_hz) for p in noise_paths]
                        preceding, wave = augment_waveform_warm(wave, cfg, rng, pool, frontend.sample_rate_hz, warm_samples=w)
        except BadAudioError as exc:
            results[i] = ("bad", exc.path, exc.reason, exc.detail)
            continue
        if w:
            feats = compute_features_warm(wave, preceding, frontend)
            _write_cache_file(_feature_path(Path(cache_dir), frontend, ex.key), feats)
            results[i] = feats
            continue
        waves.append(wave)
        where.append(i)
    if waves:
        feats = compute_features_batch(np.stack(waves), frontend)
        for j, i in enumerate(where):
            _write_cache_file(_feature_path(Path(cache_dir), frontend, examples[i].key), feats[j])
            results[i] = feats[j]
    return results


def _compute_all(
    examples: list[_Example],
    frontend: FrontendConfig,
    cache_dir: Path,
    *,
    augment: AugmentConfig | None,
    noise_paths: Sequence[str],
    workers: int | None,
    progress: bool,
    description: str,
) -> tuple[list, dict]:
    """Features for every example (cache first). Returns (arrays or bad tuples, stats)."""
    out: list = [None] * len(examples)
    todo: list[int] = []
    for i, ex in enumerate(examples):
        p = _feature_path(cache_dir, frontend, ex.key)
        if p.is_file():
            try:
                out[i] = np.load(p, allow_pickle=False)
                continue
            except (OSError, ValueError):  # a torn or foreign file: recompute it
                pass
        todo.append(i)
    stats = {"cached": len(examples) - len(todo), "computed": 0}
    if todo:
        import torch  # noqa: F401 - loaded before parallel_map so inline runs get one thread too

        chunk = 48
        jobs = [
            (frontend.to_dict(), str(cache_dir), [examples[i] for i in todo[s : s + chunk]], augment.to_dict() if augment else None, tuple(noise_paths))
            for s in range(0, len(todo), chunk)
        ]
        results = []
        for res in parallel_map(_compute_chunk, jobs, workers=workers, min_items_per_worker=2, description=description, progress=progress):
            results.extend(res)
        for i, res in zip(todo, results):
            out[i] = res
        stats["computed"] = sum(1 for r in results if not isinstance(r, tuple))
    return out, stats


# ---------------------------------------------------------------------------------------------
# Building a task


def _seed_for(*parts) -> int:
    return int(stable_hash(list(parts), 16), 16) & ((1 << 63) - 1)


def _audio_hashes(paths: Iterable[str]) -> dict[str, str]:
    hashes = {}
    for p in sorted(set(paths)):
        try:
            hashes[p] = sha256_file(p)
        except OSError:
            hashes[p] = ""  # unreadable: the worker reports it with a reason
    return hashes
