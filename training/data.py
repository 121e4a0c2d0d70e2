"""DataLoaders over precomputed feature arrays (polykws.datasets.FeatureSplit or plain arrays).

Features are cached as arrays by datasets/, so an epoch is pure tensor indexing: the loaders
hand out whole batches by fancy indexing (no per-sample collate), and shuffling is a function of
(seed, epoch) alone. That is what makes a resumed run replay exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
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
