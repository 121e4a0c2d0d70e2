"""DataLoaders over precomputed feature arrays (polykws.datasets.FeatureSplit or plain arrays).

Features are cached as arrays by datasets/, so an epoch is pure tensor indexing: the loaders
hand out whole batches by fancy indexing (no per-sample collate), and shuffling is a function of
(seed, epoch) alone. That is what makes a resumed run replay exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class ArrayDataset(Dataset):
    """x: (N, frames, features) float32, y: (N,) int64. Indexed by a list of indices -> a batch."""

    def __init__(self, x: Any, y: Any):
        x_t = torch.as_tensor(np.asarray(x, dtype=np.float32))
        y_t = torch.as_tensor(np.asarray(y, dtype=np.int64))
        if x_t.dim() != 3:
            raise ValueError(f"features must be (N, frames, features), got shape {tuple(x_t.shape)}")
        if y_t.shape != (x_t.shape[0],):
            raise ValueError(f"{x_t.shape[0]} feature rows but labels of shape {tuple(y_t.shape)}")
        self.x, self.y = x_t, y_t

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, index: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        return self.x[idx], self.y[idx]


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of indices; with shuffle, the order is a pure function of (seed, epoch).

    fit() calls `set_epoch(epoch)` before each epoch (like DistributedSampler), so epoch k has
    the same order whether or not the run was interrupted before it.
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, seed: int = 0, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(_mix(self.seed, self.epoch, 0x5EED))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        stop = self.n - self.n % self.batch_size if self.drop_last else self.n
        for start in range(0, stop, self.batch_size):
            yield order[start : start + self.batch_size]

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)


def _mix(*parts: int) -> int:
    """A stable 63-bit seed from integers (independent of Python's hash randomisation)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def make_loader(x: Any, y: Any, *, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False) -> DataLoader:
    ds = ArrayDataset(x, y)
    sampler = EpochBatchSampler(len(ds), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    # batch_size=None: the sampler yields whole index lists and the dataset returns whole batches.
    return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=0)


@dataclass
class TaskLoaders:
    """What fit() consumes: train/val loaders (test for the final report) plus the label list."""

    train: DataLoader
    val: DataLoader
    labels: tuple[str, ...]
    test: DataLoader | None = None

    def __getitem__(self, key: str) -> DataLoader:
        value = getattr(self, key)
        if value is None:
            raise KeyError(key)
        return value


def loaders_from_splits(splits: dict[str, Any], *, batch_size: int, seed: int = 0, eval_batch_size: int = 512) -> TaskLoaders:
    """Loaders from {"train","val"[,"test"]} FeatureSplit-like objects (attributes x, y, labels)."""
    missing = [k for k in ("train", "val") if k not in splits]
    if missing:
        raise ValueError(f"splits lack {missing}; have {sorted(splits)}")
    labels = tuple(splits["train"].labels)
    for name, split in splits.items():
        if tuple(split.labels) != labels:
            raise ValueError(f"split {name!r} has labels {tuple(split.labels)}, train has {labels}")
        if len(split.y) == 0:
            raise ValueError(f"split {name!r} is empty")
    train = make_loader(splits["train"].x, splits["train"].y, batch_size=batch_size, shuffle=True, seed=seed, drop_last=False)
    val = make_loader(splits["val"].x, splits["val"].y, batch_size=eval_batch_size, shuffle=False)
    test = make_loader(splits["test"].x, splits["test"].y, batch_size=eval_batch_size, shuffle=False) if "test" in splits else None
    return TaskLoaders(train=train, val=val, test=test, labels=labels)


# --- The base's pretraining data (scan -> records -> one pooled task -> feature splits) -------


def _listing_signature(root: Path) -> str:
    """Hash of every file's relative path, size and mtime: a changed corpus invalidates its manifest."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            st = p.stat()
            h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def scan_corpus_cached(root: Path, *, val_pct: float, test_pct: float, manifest_dir: Path, progress: bool = False):
    """Manifest rows of a whole corpus root, scanned once and cached by (root, listing, split rule).

    The whole root is scanned (not one language) so every caller sees the same speaker splits a
    transfer run on the same root sees: splits are assigned per speaker namespace, never per query.
    """
    from polykws.datasets import SplitConfig, read_manifest, write_manifest
    from polykws.datasets.scan import scan  # the package attribute `scan` is shadowed by its submodule
    from polykws.core import stable_hash

    if not root.is_dir():
        raise FileNotFoundError(f"corpus root {root} is not a folder")
    split = SplitConfig(val_pct=val_pct, test_pct=test_pct)
    key = stable_hash({"root": str(root.resolve()), "listing": _listing_signature(root), "split": split.to_dict()})
    path = manifest_dir / f"{root.name}-{key}.jsonl"
    if path.is_file():
        return read_manifest(path)
    result = scan(root, split=split, progress=progress)
    if result.skipped:
        # Skips are counted and reported, never silent: keep the list beside the manifest.
        from polykws.core import atomic_write_json

        atomic_write_json(path.with_suffix(".skipped.json"), [s.to_dict() for s in result.skipped])
        print(f"note: {len(result.skipped)} file(s) under {root} skipped (listed in {path.with_suffix('.skipped.json')})")
    write_manifest(path, result.records)
    return result.records


def ensure_synth_corpus(corpus, *, progress: bool = False) -> None:
    """Create a corpus root from its `synth` settings when it is missing (deterministic TTS)."""
    root = corpus.resolved_root()
    if corpus.synth is None:
        return
    from polykws.datasets import SynthConfig, synthesize_corpus

    cfg = SynthConfig(languages=tuple(corpus.synth.languages), speakers=corpus.synth.speakers, seed=corpus.synth.seed)
    # Resumable and marker-checked: a complete corpus with the same config costs nothing.
    synthesize_corpus(cfg, root, progress=progress)


def base_records(data_cfg, *, progress: bool = False) -> list:
    """All manifest rows the base may train on, with each corpus' split filter applied.

    Noise rows (synthesized background noise) are kept for `_silence_`; clip rows outside a
    corpus' `splits` are dropped entirely, so they can reach no split of the base.
    """
    from polykws.core import resolve_path

    rows = []
    for corpus in data_cfg.corpora:
        ensure_synth_corpus(corpus, progress=progress)
        root = corpus.resolved_root()
        records = scan_corpus_cached(
            root, val_pct=data_cfg.val_pct, test_pct=data_cfg.test_pct, manifest_dir=resolve_path(data_cfg.manifest_dir), progress=progress
        )
        for r in records:
            if r.is_noise:
                rows.append(r)
                continue
            if corpus.languages and r.language not in corpus.languages:
                continue
            if corpus.sources and r.source not in corpus.sources:
                continue
            if r.split not in corpus.splits:
                continue
            rows.append(r)
    return rows


def base_task(data_cfg, records):
    """The pooled TaskSpec: language '*' with language-qualified keywords in a stable order."""
    from collections import Counter

    from polykws.datasets import TaskSpec

    if data_cfg.keywords:
        keywords = tuple(data_cfg.keywords)
    else:
        unknown = set(data_cfg.unknown_words)
        train_counts = Counter(f"{r.language}:{r.label}" for r in records if not r.is_noise and r.split == "train")
        seen = sorted({(r.language, r.label) for r in records if not r.is_noise})
        keywords = tuple(
            f"{lang}:{label}"
            for lang, label in seen
            if label not in unknown and train_counts[f"{lang}:{label}"] >= max(data_cfg.min_train_clips, 1)
        )
    return TaskSpec("*", keywords, **data_cfg.task_options())


def build_base_splits(data_cfg, frontend, *, seed: int = 0, progress: bool = False) -> dict:
    """{"train","val","test"} FeatureSplits of the base task (features cached on disk)."""
    from polykws.datasets import load_task_features
    from polykws.core import resolve_path

    if not data_cfg.corpora:
        raise ValueError("data.corpora is empty: the base needs at least one corpus")
    records = base_records(data_cfg, progress=progress)
    task = base_task(data_cfg, records)
    noise_dir = resolve_path(data_cfg.noise_dir) if data_cfg.noise_dir else None
    return load_task_features(
        records,
        task,
        frontend,
        cache_dir=resolve_path(data_cfg.cache_dir),
        noise_dir=noise_dir,
        augment=data_cfg.augment,
        augment_copies=data_cfg.augment_copies,
        seed=seed,
        progress=progress,
        max_per_keyword=data_cfg.max_per_keyword,
        frontend_warm_ms=data_cfg.frontend_warm_ms,
    )
