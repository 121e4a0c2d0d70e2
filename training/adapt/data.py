"""The harness's data: validated in-memory feature splits and scoring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from polykws.core import PolykwsError


@dataclass
class Split:
    x: torch.Tensor  # (N, 1, frames, features) float32
    y: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.y.shape[0])


def _to_split(name: str, split: Any, input_shape: tuple[int, int] | None) -> Split:
    for attr in ("x", "y"):
        if not hasattr(split, attr):
            raise PolykwsError(f"split {name!r}: expected an object with .x and .y (a FeatureSplit), got {type(split).__name__}")
    x = torch.as_tensor(np.asarray(split.x, dtype=np.float32))
    y = torch.as_tensor(np.asarray(split.y, dtype=np.int64))
    if x.dim() != 3:
        raise PolykwsError(f"split {name!r}: features must be (N, frames, features), got {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise PolykwsError(f"split {name!r}: {x.shape[0]} feature rows but labels of shape {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise PolykwsError(f"split {name!r} is empty")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise PolykwsError(f"split {name!r}: features are {tuple(x.shape[1:])} but the base expects {tuple(input_shape)}")
    if not torch.isfinite(x).all():
        raise PolykwsError(f"split {name!r}: features contain NaN or inf")
    return Split(x.unsqueeze(1).contiguous(), y)


def prepare_splits(splits: Mapping[str, Any], base_model: nn.Module) -> tuple[dict[str, Split], tuple[str, ...]]:
    """Validate and convert {"train","val"[,"test"]} FeatureSplits; returns tensors and labels."""
    missing = [s for s in ("train", "val") if s not in splits]
    if missing:
        raise PolykwsError(f"adapt() needs splits 'train' and 'val'; missing {missing}")
    input_shape = getattr(base_model, "input_shape", None)
    out = {name: _to_split(name, s, input_shape) for name, s in splits.items() if s is not None}
    labels = tuple(getattr(splits["train"], "labels", ()) or ())
    for name, s in splits.items():
        other = tuple(getattr(s, "labels", ()) or ())
        if labels and other and other != labels:
            raise PolykwsError(f"split {name!r} has labels {other} but train has {labels}")
    num_classes = len(labels) if labels else int(max(int(s.y.max()) for s in out.values())) + 1
    for name, s in out.items():
        if int(s.y.min()) < 0 or int(s.y.max()) >= num_classes:
            raise PolykwsError(f"split {name!r}: label ids outside 0..{num_classes - 1}")
    if not labels:
        labels = tuple(str(i) for i in range(num_classes))
    return out, labels


@torch.no_grad()
def evaluate_logits(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == y).float().mean())


def weighted_accuracy(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> float:
    """Accuracy with each example weighted by its class's weight; with inverse-frequency weights
    it is the mean per-class recall over the classes present."""
    w = weight[y]
    return float(((logits.argmax(dim=1) == y).float() * w).sum() / w.sum())


def class_weights(y: torch.Tensor, num_classes: int, power: float = 1.0) -> torch.Tensor:
    """Loss weights (total / (classes present x class count)) ** power; absent classes weigh 0."""
    counts = torch.bincount(y, minlength=num_classes).float()
    present = counts > 0
    w = torch.zeros(num_classes)
    w[present] = (counts.sum() / (present.sum() * counts[present])) ** power
    return w


@torch.no_grad()
def score(model: nn.Module, split: Split, batch: int = 1024) -> float:
    model.eval()
    return accuracy(evaluate_logits(model, split.x, batch), split.y)
