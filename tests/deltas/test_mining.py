"""Hard-negative mining: which windows of a stream count as fired, how they join _unknown_, and
that a fine-tune on them stops a delta model firing on windows of their kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from polykws.core import ConfigError
from polykws.training.adapt import TransferConfig, adapt, method_config
from polykws.training.adapt.data import Split, prepare_splits
from polykws.training.adapt.mining import MiningConfig, fine_tune, fired_windows, windows_at, with_negatives


class _ChannelZero(nn.Module):
    """Logits [0, 8 * mean of feature 0, 4 * mean of feature 1]: class 1 fires where feature 0 is high."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x[:, 0, :, :2].mean(dim=1)
        return torch.cat([torch.zeros(x.shape[0], 1), 8 * m[:, :1], 4 * m[:, 1:2]], dim=1)


def test_fired_windows_keeps_one_window_per_burst_above_the_score():
    frames = np.zeros((1000, 4), np.float32)
    frames[200:249, 0] = 1.0  # a full window of "keyword 1" starting at frame 200
    frames[600:630, 1] = 1.0  # weaker: class 2 peaks at softmax 0.91 (logit 4 * 30/49)
    fw = fired_windows(_ChannelZero(), frames, 49, 2, [1, 2], min_score=0.5, refractory_frames=25)
    assert fw.scanned == len(range(0, 1000 - 49 + 1, 2))
    assert list(fw.starts) == sorted(fw.starts)
    # One window per burst: the best aligned one, every other within the refractory is dropped.
    assert 200 in fw.starts and fw.classes[list(fw.starts).index(200)] == 1
    assert np.all(np.diff(fw.starts) >= 25)
    # Windows half over the burst still fire (a cut keyword); a refractory of a window keeps one.
    near = fw.starts[(fw.starts > 150) & (fw.starts < 250)]
    assert len(near) == 3, near
    wide = fired_windows(_ChannelZero(), frames, 49, 2, [1, 2], min_score=0.5, refractory_frames=49)
    assert list(wide.starts[(wide.starts > 150) & (wide.starts < 250)]) == [200]
    assert set(fw.classes) == {1, 2}
    assert np.all(fw.scores >= 0.5)
    # Raising the score drops the weaker burst, and nothing fires on silence.
    strict = fired_windows(_ChannelZero(), frames, 49, 2, [1, 2], min_score=0.99, refractory_frames=25)
    assert set(strict.classes) == {1}
    quiet = fired_windows(_ChannelZero(), np.zeros((500, 4), np.float32), 49, 2, [1, 2], min_score=0.5, refractory_frames=25)
    assert quiet.starts.size == 0 and quiet.scanned > 0
    short = fired_windows(_ChannelZero(), frames[:10], 49, 2, [1, 2], min_score=0.5, refractory_frames=25)
    assert short.starts.size == 0 and short.scanned == 0
    w = windows_at(frames, fw.starts, 49)
    assert w.shape == (fw.starts.size, 49, 4) and np.array_equal(w[list(fw.starts).index(200)], frames[200:249])


def test_with_negatives_appends_unknown_rows():
    data = {"train": Split(torch.zeros(3, 1, 49, 4), torch.tensor([1, 2, 1])), "val": Split(torch.zeros(2, 1, 49, 4), torch.tensor([1, 2]))}
    out = with_negatives(data, np.ones((2, 49, 4), np.float32), unknown_id=0)
    assert out["train"].y.tolist() == [1, 2, 1, 0, 0]
    assert torch.equal(out["train"].x[3:], torch.ones(2, 1, 49, 4))
    assert out["val"] is data["val"] and data["train"].y.numel() == 3
    assert with_negatives(data, np.zeros((0, 49, 4), np.float32), 0)["train"] is data["train"]


@pytest.mark.parametrize("bad", [{"rounds": -1}, {"rounds": 1, "epochs": 0}, {"min_score": 1.0}, {"stride_ms": 0},
                                 {"max_per_keyword_row": 0.0}, {"negative_s_per_snr": 0}, {"rounds": True}, {"copies": 0}])
def test_mining_config_refuses(bad):
    with pytest.raises(ConfigError):
        MiningConfig(**bad)


def test_fine_tune_on_mined_windows_stops_the_firing():
    """On the shipped base, an SWR model that calls the first 60 % of keyword k1 a keyword stops
    doing so once such windows are _unknown_ rows, while its clip accuracy holds."""
    from polykws.core.assets import shipped_base
    from polykws.training.checkpoint import load_model

    base = load_model(shipped_base().checkpoint).model
    frames, feats = base.input_shape
    protos = np.zeros((4, frames, feats), np.float32)
    for c in range(1, 4):  # each keyword raises its own band of channels
        protos[c, :, 8 * c : 8 * c + 8] = 3.0
    labels = ("_unknown_", "k1", "k2", "k3")

    class Rows:
        def __init__(self, n: int, seed: int):
            g = np.random.default_rng(seed)
            self.y = g.integers(0, 4, n)
            self.x = protos[self.y] + g.normal(size=(n, frames, feats)).astype(np.float32)
            self.labels = labels

    def partial(n: int, seed: int) -> np.ndarray:  # k1's band over the first 30 frames only
        x = np.random.default_rng(seed).normal(size=(n, frames, feats)).astype(np.float32)
        x[:, :30] += protos[1][:30]
        return x

    splits = {"train": Rows(320, 1), "val": Rows(80, 2), "test": Rows(80, 3)}
    cfg = TransferConfig(epochs=8, probe_epochs=20, batch_size=32, seed=0, num_threads=1)
    dm = adapt(base, splits, method_config("swr", budget_bytes=600), cfg).delta_model
    held_out = torch.from_numpy(partial(64, 8))[:, None]

    def keyword_rate() -> float:
        dm.eval()
        with torch.no_grad():
            return float((dm(held_out).argmax(1) != 0).float().mean())

    before = keyword_rate()
    assert before > 0.8, before
    data, _ = prepare_splits(splits, base)
    val_acc = fine_tune(dm, with_negatives(data, partial(96, 7), labels.index("_unknown_")), cfg, 4, round_index=0)
    after = keyword_rate()
    assert after < 0.3, (before, after)
    assert val_acc > 0.95, val_acc
