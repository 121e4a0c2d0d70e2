"""Frontends: shapes and dtypes, micro == pymicro-features bit for bit, value ranges, config rules."""

from __future__ import annotations

import numpy as np
import pytest
from pymicro_features import MicroFrontend

from polykws.datasets.frontend import (
    FRONTENDS,
    FrontendConfig,
    audio_to_pcm16,
    compute_features,
    compute_features_batch,
    frontend_by_name,
    mfcc_frontend,
    micro_frontend,
)
from polykws.core import ConfigError


def _speechlike(kit, seed=0, samples=16000):
    x = np.zeros(samples, np.float32)
    x[3000:3000 + 8000] = kit.tone(0.5, freq_hz=180 + 40 * seed, amp=0.4, seed=seed)
    return x + 0.001 * np.random.default_rng(seed).standard_normal(samples).astype(np.float32)


@pytest.mark.parametrize("name", sorted(FRONTENDS))
def test_shape_dtype_and_range(name, kit):
    cfg = frontend_by_name(name)
    x = _speechlike(kit, samples=cfg.clip_samples)
    f = compute_features(x, cfg)
    assert f.shape == cfg.input_shape == {"mfcc": (49, 10), "micro": (49, 40), "micro_1500ms": (74, 40)}[name]
    assert f.dtype == np.float32
    lo, hi = cfg.value_range
    assert lo <= f.min() and f.max() <= hi
    batch = compute_features_batch(np.stack([x, _speechlike(kit, 1, cfg.clip_samples)]), cfg)
    assert batch.shape == (2, *cfg.input_shape) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], f)  # batching changes nothing
    with pytest.raises(ValueError):
        compute_features(x[:8000], cfg)


def _pymicro_direct(pcm: np.ndarray) -> np.ndarray:
    """The reference: feed pymicro-features 10 ms at a time, exactly as its README does."""
    fe = MicroFrontend()
    frames = []
    for i in range(0, len(pcm) - 159, 160):
        out = fe.process_samples(pcm[i : i + 160].astype("<i2").tobytes())
        if out.features:
            frames.append(out.features)
    return np.array(frames, dtype=np.float32)


def test_micro_is_bit_exact_with_pymicro_features(kit):
    cfg = micro_frontend()
    for seed in range(3):
        x = _speechlike(kit, seed)
        pcm = audio_to_pcm16(x)
        direct = _pymicro_direct(pcm)
        assert direct.shape == (98, 40)
        ours = compute_features(x, cfg)
        # Every 2nd frame; no value of real-level speech reaches the clip at 26.0.
        assert direct.max() < cfg.value_range[1]
        np.testing.assert_array_equal(ours, direct[::2])


def test_micro_clips_only_above_the_pinned_range():
    # A full-scale square wave drives the frontend past 26.0 (TFLM's micro_speech clamps there too).
    cfg = micro_frontend()
    x = np.sign(np.sin(np.arange(16000) * 0.3)).astype(np.float32) * 0.99997
    direct = _pymicro_direct(audio_to_pcm16(x))[::2]
    assert direct.max() > 26.0
    np.testing.assert_array_equal(compute_features(x, cfg), np.clip(direct, 0.0, 26.0))


def test_pcm16_conversion_inverts_soundfile_scaling():
    ints = np.array([-32768, -1, 0, 1, 32767], np.int16)
    np.testing.assert_array_equal(audio_to_pcm16(ints.astype(np.float32) / 32768.0), ints)


def test_mfcc_lower_bound_is_the_exact_floor():
    cfg = mfcc_frontend()
    f = compute_features(np.zeros(16000, np.float32), cfg)
    # c0 of silence is sqrt(40) * ln(1e-6); the pinned range starts just below it.
    assert f[:, 0] == pytest.approx(np.sqrt(40) * np.log(1e-6), abs=1e-3)
    assert cfg.value_range[0] <= f.min()


def test_micro_config_cannot_drift_from_the_wheel():
    with pytest.raises(ConfigError):
        FrontendConfig(kind="micro", window_size_ms=25.0, window_stride_ms=10.0, num_features=40, frame_decimation=2)
    cfg = micro_frontend()
    assert cfg.micro_params["num_channels"] == cfg.num_features
    assert FrontendConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.config_hash() != mfcc_frontend().config_hash()
    with pytest.raises(ConfigError):
        mfcc_frontend().micro_params
