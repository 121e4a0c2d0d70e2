"""Hard-negative mining: the windows of negative streams where a language model fires become
`_unknown_` training rows, and the model's trainable parameters are fine-tuned on them.

A detector's false accepts per hour are set by the tail of its scores over hours of audio that
holds no keyword, which clip-level `_unknown_` rows never show it: words cut by the window edge,
two words in one window, noise through a warm frontend. Mining takes that tail from streams built
only of training speakers and training noise (polykws.datasets.streams on the ``train`` split), so
nothing of validation or test is seen, and a round adds the windows that fire most to
`_unknown_`. A delta model keeps its sites, so the blob's layout and budget stay.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from polykws.core import ConfigError
from polykws.training.adapt.config import TransferConfig
from polykws.training.adapt.data import Split
from polykws.training.adapt.train import train_phase
from polykws.training.adapt.harness import delta_groups
from polykws.training.deltas import DeltaModel


@dataclass(frozen=True)
class MiningConfig:
    # Fine-tune rounds; 0 ships the adapted model as it is.
    rounds: int = 0
    # Training negative stream audio per SNR and round (the SNRs are the streaming section's).
    negative_s_per_snr: float = 600.0
    # Hop between scored windows: finer than the detector's stride, since a device meets every phase.
    stride_ms: int = 40
    # A window fires when a keyword's softmax probability (float model) reaches this.
    min_score: float = 0.5
    # Fired windows closer than this to a higher-scoring one are the same false accept.
    refractory_ms: int = 500
    # At most this many mined windows per round, per keyword training row.
    max_per_keyword_row: float = 0.5
    # Fine-tune epochs per round, on the training split with every window mined so far.
    epochs: int = 5
    # Rows per mined window. Class balance gives _unknown_ one class's weight however many rows it
    # has, so copies raise the mined windows' share of it rather than the class's weight.
    copies: int = 1

    def __post_init__(self) -> None:
        for name in ("rounds", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"mining {name} must be an integer >= 0, got {v!r}")
        if self.epochs == 0 and self.rounds:
            raise ConfigError("mining epochs must be >= 1 when rounds > 0")
        if not self.negative_s_per_snr > 0:
            raise ConfigError(f"mining negative_s_per_snr must be > 0, got {self.negative_s_per_snr!r}")
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or self.copies < 1:
            raise ConfigError(f"mining copies must be an integer >= 1, got {self.copies!r}")
        for name in ("stride_ms", "refractory_ms"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"mining {name} must be an integer > 0, got {v!r}")
        if not 0.0 < self.min_score < 1.0:
            raise ConfigError(f"mining min_score must be in (0, 1), got {self.min_score!r}")
        if not self.max_per_keyword_row > 0:
            raise ConfigError(f"mining max_per_keyword_row must be > 0, got {self.max_per_keyword_row!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FiredWindows:
    """Windows of one feature stream where a keyword fired: first frame, score and the keyword's class."""

    starts: np.ndarray  # (K,) int64, frame index of each window's first frame
    scores: np.ndarray  # (K,) float32, the top keyword's softmax probability
    classes: np.ndarray  # (K,) int64
    scanned: int  # windows scored


@torch.no_grad()
def fired_windows(model: nn.Module, frames: np.ndarray, window_frames: int, stride_frames: int, keyword_ids: list[int],
                  min_score: float, refractory_frames: int, batch: int = 512) -> FiredWindows:
    """Score every `stride_frames`-th window of `frames` (T, F) and keep the local maxima that fire.

    Greedy by score: a window is kept unless a kept one starts within `refractory_frames` of it.
    """
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    if frames.shape[0] < window_frames:
        empty = np.zeros(0, np.int64)
        return FiredWindows(empty, np.zeros(0, np.float32), empty, 0)
    starts = np.arange(0, frames.shape[0] - window_frames + 1, stride_frames, dtype=np.int64)
    view = np.lib.stride_tricks.sliding_window_view(frames, (window_frames, frames.shape[1]))[:, 0]
    was = model.training
    model.eval()
    kw = torch.as_tensor(keyword_ids, dtype=torch.long)
    scores, classes = [], []
    for i in range(0, starts.size, batch):
        x = torch.from_numpy(np.ascontiguousarray(view[starts[i : i + batch]]))[:, None]
        p = torch.softmax(model(x), dim=1)[:, kw]
        s, c = p.max(dim=1)
        scores.append(s.numpy())
        classes.append(kw[c].numpy())
    model.train(was)
    score = np.concatenate(scores).astype(np.float32)
    cls = np.concatenate(classes).astype(np.int64)
    keep: list[int] = []
    taken = np.zeros(starts.size, bool)
    for i in np.argsort(-score, kind="stable"):
        if score[i] < min_score:
            break
        if taken[i]:
            continue
        keep.append(int(i))
        near = np.abs(starts - starts[i]) < refractory_frames
        taken |= near
    idx = np.asarray(sorted(keep), np.int64)
    return FiredWindows(starts[idx], score[idx], cls[idx], int(starts.size))


def windows_at(frames: np.ndarray, starts: np.ndarray, window_frames: int) -> np.ndarray:
    """The (K, window_frames, F) feature windows starting at `starts`."""
    if starts.size == 0:
        return np.zeros((0, window_frames, frames.shape[1]), np.float32)
    return np.stack([frames[s : s + window_frames] for s in starts]).astype(np.float32)


def with_negatives(data: dict[str, Split], x: np.ndarray, unknown_id: int) -> dict[str, Split]:
    """`data` with `x` (K, frames, features) appended to the training split as `unknown_id`."""
    if x.shape[0] == 0:
        return dict(data)
    tr = data["train"]
    xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
    ys = torch.full((x.shape[0],), int(unknown_id), dtype=torch.long)
    return {**data, "train": Split(torch.cat([tr.x, xs]), torch.cat([tr.y, ys]))}


def fine_tune(dm: DeltaModel, data: dict[str, Split], cfg: TransferConfig, epochs: int, *, round_index: int) -> float:
    """Train `dm`'s deltas and head for `epochs` on `data` (same learning rates and selection as
    the harness's delta phase); returns the validation accuracy kept."""
    return train_phase(dm, data, cfg, delta_groups(dm, cfg), epochs, phase=f"mining-{round_index + 1}", net=dm.model, seed_offset=10 + round_index)
