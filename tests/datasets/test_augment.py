"""Augmentation: validated configs, seeded determinism, the SNR it promises, SpecAugment masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polykws.datasets.augment import (
    AugmentConfig,
    SpecAugmentConfig,
    active_power,
    augment_waveform,
    mix_at_snr,
    pitch_shift,
    spec_augment,
    speed_perturb,
)
from polykws.core import ConfigError


def _clip(kit):
    x = np.zeros(16000, np.float32)
    x[4000:12000] = kit.tone(0.5, amp=0.4)
    return x


def test_config_validation():
    for bad in (dict(noise_prob=1.5), dict(snr_db_min=20, snr_db_max=5), dict(speed_min=1.2, speed_max=1.1), dict(pitch_semitones=-1), dict(time_shift_ms=-5)):
        with pytest.raises(ConfigError):
            AugmentConfig(**bad)
    with pytest.raises(ConfigError):
        SpecAugmentConfig(time_masks=-1)


def test_same_seed_same_output_other_seed_differs(kit):
    x = _clip(kit)
    noise = [np.random.default_rng(i).standard_normal(40000).astype(np.float32) * 0.1 for i in range(3)]
    cfg = AugmentConfig(noise_prob=1.0, speed_prob=1.0, pitch_prob=1.0)
    a = augment_waveform(x, cfg, np.random.default_rng(7), noise)
    b = augment_waveform(x, cfg, np.random.default_rng(7), noise)
    c = augment_waveform(x, cfg, np.random.default_rng(8), noise)
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a).max() <= 1.0


def test_mix_hits_the_requested_snr(kit):
    x = _clip(kit)
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    for snr in (0.0, 10.0, 20.0):
        y = mix_at_snr(x, noise, snr)
        added = y - x
        got = 10 * np.log10(active_power(x) / np.mean(added.astype(np.float64) ** 2))
        assert got == pytest.approx(snr, abs=0.01)


def test_speed_and_pitch_perturbation(kit):
    x = kit.tone(0.5, freq_hz=200)
    faster = speed_perturb(x, 1.1)
    assert faster.shape[0] == pytest.approx(x.shape[0] / 1.1, rel=0.01)
    shifted = pitch_shift(x, 2.0)
    assert shifted.shape == x.shape  # duration kept

    def peak_hz(sig):
        spec = np.abs(np.fft.rfft(sig * np.hanning(sig.size)))
        return np.argmax(spec) * 16000 / sig.size

    assert peak_hz(shifted) == pytest.approx(200 * 2 ** (2 / 12), rel=0.05)
    assert peak_hz(faster) == pytest.approx(200 * 1.1, rel=0.05)


def test_spec_augment_is_seeded_and_masks(kit):
    batch = torch.randn(8, 1, 49, 40) + 5.0
    cfg = SpecAugmentConfig(time_masks=2, time_mask_frames=6, freq_masks=2, freq_mask_bins=4)
    a = spec_augment(batch, cfg, torch.Generator().manual_seed(1))
    b = spec_augment(batch, cfg, torch.Generator().manual_seed(1))
    c = spec_augment(batch, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == batch.shape and not torch.equal(a, batch)
    masked = a != batch
    # Masked cells take the example's mean; at most 2*6 frames and 2*4 bins per example.
    for i in range(8):
        mean = batch[i].mean()
        assert torch.allclose(a[i][masked[i]], mean.expand(int(masked[i].sum())))
        frames = masked[i, 0].all(dim=1).sum().item()
        bins = masked[i, 0].all(dim=0).sum().item()
        assert frames <= 12 and bins <= 8
    assert torch.equal(spec_augment(batch, SpecAugmentConfig(0, 0, 0, 0), torch.Generator().manual_seed(1)), batch)
    with pytest.raises(ValueError):
        spec_augment(batch[:, 0], cfg, torch.Generator())


def test_offset_anywhere_places_the_whole_word_across_the_window(kit):
    from polykws.datasets.augment import active_span

    x = _clip(kit)  # 0.5 s of tone in a 1 s clip
    cfg = AugmentConfig(offset_anywhere=True, noise_prob=0.0, speed_prob=0.0, pitch_prob=0.0, gain_db_min=0.0, gain_db_max=0.0)
    a, b = active_span(x)
    starts = []
    for seed in range(40):
        y = augment_waveform(x, cfg, np.random.default_rng(seed))
        lo, hi = active_span(y)
        # The span moves whole (to within the 10 ms frame grid it is measured on).
        assert 0 <= lo and hi <= x.shape[0] and abs((hi - lo) - (b - a)) <= 320, (seed, lo, hi)
        starts.append(lo)
    # Uniform over the room the word leaves: both ends of the window are reached, not only +-100 ms.
    room = x.shape[0] - (b - a)
    assert min(starts) < 0.1 * room and max(starts) > 0.9 * room
    # The default leaves the dict (and so every cached feature's key) as it was.
    assert "offset_anywhere" not in AugmentConfig().to_dict() and AugmentConfig(offset_anywhere=True).to_dict()["offset_anywhere"]
