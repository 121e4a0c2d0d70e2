"""Augmentation: offline waveform perturbations and online SpecAugment, all seeded.

Offline (``augment_waveform``): applied to a 1 s training clip to make ``augment_copies`` extra
training rows, in this order:

1. speed perturbation (Kaldi-style: resampling, so tempo and pitch move together);
2. pitch shift (phase-vocoder time stretch + resampling: pitch moves, duration does not);
3. back to exactly one clip (centred pad / energy-peak crop, as the loader does);
4. time shift (zero-filled, up to +-``time_shift_ms``);
5. gain;
6. background noise mixed at an SNR drawn from [snr_db_min, snr_db_max], the speech power being
   measured over its active 10 ms frames so a short word in a padded clip is not under-rated.

Speed and pitch factors are quantised so the resampling ratio reduces to small integers (a
50 Hz grid at 16 kHz): torchaudio builds one polyphase kernel per ratio, and an irrational ratio
(2**(2/12)) costs seconds per call.

Online (``spec_augment``): Park et al. (2019) time and frequency masks on a batch of features,
filled with each example's mean, drawn from a ``torch.Generator`` so training stays reproducible.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from polykws.core import ConfigError

from .audio import fit_clip

RATE_GRID_HZ = 50


@dataclass(frozen=True)
class AugmentConfig:
    time_shift_ms: float = 100.0
    noise_prob: float = 0.8
    snr_db_min: float = 5.0
    snr_db_max: float = 20.0
    speed_prob: float = 0.5
    speed_min: float = 0.9
    speed_max: float = 1.1
    pitch_prob: float = 0.3
    pitch_semitones: float = 2.0
    gain_db_min: float = -6.0
    gain_db_max: float = 6.0
    # Place the word's active span anywhere in the window (uniformly, wholly inside) instead of
    # the +-time_shift_ms shift: a stream shows the model every offset of a word as it passes.
    offset_anywhere: bool = False

    def __post_init__(self) -> None:
        for name in ("noise_prob", "speed_prob", "pitch_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"augment {name} must be in [0, 1], got {v!r}")
        if not 0.0 <= self.time_shift_ms <= 500.0:
            raise ConfigError(f"augment time_shift_ms must be in [0, 500], got {self.time_shift_ms!r}")
        if self.snr_db_min > self.snr_db_max:
            raise ConfigError("augment snr_db_min must be <= snr_db_max")
        if not 0.5 <= self.speed_min <= self.speed_max <= 2.0:
            raise ConfigError(f"augment speed range must satisfy 0.5 <= min <= max <= 2, got [{self.speed_min}, {self.speed_max}]")
        if not 0.0 <= self.pitch_semitones <= 12.0:
            raise ConfigError(f"augment pitch_semitones must be in [0, 12], got {self.pitch_semitones!r}")
        if self.gain_db_min > self.gain_db_max:
            raise ConfigError("augment gain_db_min must be <= gain_db_max")

    def to_dict(self) -> dict:
        # A field added later enters the dict (and so the feature cache keys) only when it is
        # set, so configs that leave it at its default keep their cached features.
        d = asdict(self)
        if not self.offset_anywhere:
            del d["offset_anywhere"]
        return d


def _grid_rate(rate_hz: float) -> int:
    return max(RATE_GRID_HZ, int(round(rate_hz / RATE_GRID_HZ)) * RATE_GRID_HZ)


@functools.lru_cache(maxsize=64)
def _resampler(orig_hz: int, new_hz: int):
    import torchaudio

    return torchaudio.transforms.Resample(orig_hz, new_hz)


def _resample(x: np.ndarray, orig_hz: int, new_hz: int) -> np.ndarray:
    import torch

    if orig_hz == new_hz:
        return x
    with torch.no_grad():
        return _resampler(orig_hz, new_hz)(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()


def speed_perturb(x: np.ndarray, factor: float, sample_rate_hz: int = 16000) -> np.ndarray:
    """Play x `factor` times faster (pitch rises with it), via resampling on a 50 Hz rate grid."""
    return _resample(x, _grid_rate(sample_rate_hz * factor), sample_rate_hz)


def pitch_shift(x: np.ndarray, semitones: float, sample_rate_hz: int = 16000, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Shift pitch by `semitones` keeping duration: phase-vocoder stretch, then resample back."""
    import torch
    import torchaudio.functional as F

    orig = _grid_rate(sample_rate_hz * 2.0 ** (semitones / 12.0))
    if orig == sample_rate_hz:
        return x.astype(np.float32, copy=True)
    factor = orig / sample_rate_hz
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        window = torch.hann_window(n_fft)
        spec = torch.stft(t, n_fft, hop, window=window, return_complex=True)
        phase_advance = torch.linspace(0, math.pi * hop, spec.shape[-2])[..., None]
        stretched = F.phase_vocoder(spec, 1.0 / factor, phase_advance)
        longer = torch.istft(stretched, n_fft, hop, window=window, length=int(round(x.shape[0] * factor)))
    return _resample(longer.numpy(), orig, sample_rate_hz)[: x.shape[0]]


def active_power(x: np.ndarray, frame: int = 160) -> float:
    """Mean power over the louder frames of `x` (the speech, not the pauses), for SNR mixing."""
    n = (x.shape[0] // frame) * frame
    if n == 0:
        return float(np.mean(x.astype(np.float64) ** 2))
    frames = (x[:n].astype(np.float64) ** 2).reshape(-1, frame).mean(axis=1)
    active = frames[frames > 1e-3 * frames.max()] if frames.max() > 0 else frames
    return float(active.mean())


def noise_scale(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> float:
    """The factor on `noise` that makes active-speech power / noise power = snr_db (0 if either is silent)."""
    p_speech = active_power(speech)
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_noise <= 0 or p_speech <= 0:
        return 0.0
    return math.sqrt(p_speech / (p_noise * 10.0 ** (snr_db / 10.0)))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + noise scaled so that active-speech power / noise power = snr_db."""
    scale = noise_scale(speech, noise, snr_db)
    if scale == 0.0:
        return speech.copy()
    return (speech + scale * noise).astype(np.float32)


def random_crop(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    if noise.shape[0] <= length:
        return np.resize(noise, length).astype(np.float32)  # tile short noise files
    start = int(rng.integers(0, noise.shape[0] - length + 1))
    return noise[start : start + length].astype(np.float32)


def augment_waveform(
    x: np.ndarray,
    cfg: AugmentConfig,
    rng: np.random.Generator,
    noise_pool: Sequence[np.ndarray] = (),
    sample_rate_hz: int = 16000,
) -> np.ndarray:
    """One random perturbation of a 1 s clip; the same rng state gives the same output."""
    return augment_waveform_warm(x, cfg, rng, noise_pool, sample_rate_hz, warm_samples=0)[1]


def augment_waveform_warm(
    x: np.ndarray,
    cfg: AugmentConfig,
    rng: np.random.Generator,
    noise_pool: Sequence[np.ndarray] = (),
    sample_rate_hz: int = 16000,
    *,
    warm_samples: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(preceding, clip): `augment_waveform`'s clip plus the `warm_samples` of background before it.

    The background is one stretch of the noise recording at one level: it runs on under the clip,
    as it does in a room, so a stateful frontend (the micro frontend's noise estimate and PCAN)
    can be run over `preceding` first, as on a device that listens continuously. Without noise
    the preceding audio is digital silence. With `warm_samples=0` the clip is `augment_waveform`'s.
    """
    if warm_samples < 0:
        raise ConfigError(f"warm_samples must be >= 0, got {warm_samples}")
    n = x.shape[0]
    y = x.astype(np.float32, copy=True)
    # Draw every random number up front, in a fixed order, so outputs depend only on rng's seed.
    do_speed, speed = rng.random() < cfg.speed_prob, rng.uniform(cfg.speed_min, cfg.speed_max)
    do_pitch, semis = rng.random() < cfg.pitch_prob, rng.uniform(-cfg.pitch_semitones, cfg.pitch_semitones)
    max_shift = int(round(cfg.time_shift_ms * sample_rate_hz / 1000))
    shift = int(rng.integers(-max_shift, max_shift + 1)) if max_shift else 0
    offset_u = rng.random() if cfg.offset_anywhere else 0.0
    gain_db = rng.uniform(cfg.gain_db_min, cfg.gain_db_max)
    do_noise, snr_db = rng.random() < cfg.noise_prob, rng.uniform(cfg.snr_db_min, cfg.snr_db_max)
    noise_idx = int(rng.integers(0, len(noise_pool))) if noise_pool else -1
    noise_seed = int(rng.integers(0, 2**63 - 1))

    if do_speed:
        y = speed_perturb(y, speed, sample_rate_hz)
    if do_pitch:
        y = pitch_shift(y, semis, sample_rate_hz)
    y = fit_clip(y, n, hop_samples=max(1, sample_rate_hz // 100))
    if cfg.offset_anywhere:
        shift = _anywhere_shift(y, offset_u, sample_rate_hz)
    if shift > 0:
        y = np.concatenate([np.zeros(shift, np.float32), y[:-shift]])
    elif shift < 0:
        y = np.concatenate([y[-shift:], np.zeros(-shift, np.float32)])
    y = y * np.float32(10.0 ** (gain_db / 20.0))
    preceding = np.zeros(warm_samples, np.float32)
    if do_noise and noise_idx >= 0:
        bed = random_crop(noise_pool[noise_idx], n + warm_samples, np.random.default_rng(noise_seed))
        scale = noise_scale(y, bed[warm_samples:], snr_db)
        if scale != 0.0:
            preceding = (scale * bed[:warm_samples]).astype(np.float32)
            y = (y + scale * bed[warm_samples:]).astype(np.float32)
    return np.clip(preceding, -1.0, 1.0).astype(np.float32), np.clip(y, -1.0, 1.0).astype(np.float32)


# The word's extent: its 10 ms frames within 30 dB of the loudest (streams and offsets share it).
ACTIVE_FRAME_MS = 10
ACTIVE_REL_POWER = 1e-3


def active_span(x: np.ndarray, sample_rate_hz: int = 16000) -> tuple[int, int] | None:
    """(first, end) sample of the active 10 ms frames of x, or None when x is all zeros."""
    frame = sample_rate_hz * ACTIVE_FRAME_MS // 1000
    n = x.shape[0] // frame
    if n == 0:
        return (0, x.shape[0]) if np.any(x) else None
    power = (x[: n * frame].astype(np.float64) ** 2).reshape(n, frame).mean(axis=1)
    peak = power.max()
    if peak <= 0:
        return None
    active = np.flatnonzero(power > ACTIVE_REL_POWER * peak)
    return int(active[0] * frame), int((active[-1] + 1) * frame)


def _anywhere_shift(y: np.ndarray, u: float, sample_rate_hz: int) -> int:
    """The shift that puts y's active span at fraction u of the room the window leaves it."""
    span = active_span(y, sample_rate_hz)
    if span is None:
        return 0
    a, b = span
    lo, hi = -a, y.shape[0] - b  # shifts that keep [a, b) inside the window
    return int(lo + round(u * (hi - lo))) if hi > lo else 0


PARTIAL_KINDS = ("head", "tail")


@dataclass(frozen=True)
class PartialConfig:
    """Partial keywords, a hard negative: only the first (``head``) or last (``tail``) part of a
    keyword, ``keep_min``-``keep_max`` of its active span, at a random place in the window. A
    head at the window's end is the word arriving; a tail at its start, the word leaving."""

    keep_min: float = 0.25
    keep_max: float = 0.6
    fade_ms: float = 10.0

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_min <= self.keep_max < 1.0:
            raise ConfigError(f"partial keep range must satisfy 0 < keep_min <= keep_max < 1, got [{self.keep_min}, {self.keep_max}]")
        if self.fade_ms < 0:
            raise ConfigError(f"partial fade_ms must be >= 0, got {self.fade_ms!r}")


def partial_keyword(x: np.ndarray, rng: np.random.Generator, cfg: PartialConfig = PartialConfig(),
                    sample_rate_hz: int = 16000) -> tuple[str, np.ndarray]:
    """(kind, clip): a part of the keyword in clip `x` (same length), the rest digital silence."""
    kind = PARTIAL_KINDS[int(rng.integers(0, len(PARTIAL_KINDS)))]
    keep = rng.uniform(cfg.keep_min, cfg.keep_max)
    u = rng.random()
    n = x.shape[0]
    span = active_span(x, sample_rate_hz)
    out = np.zeros(n, np.float32)
    if span is None:
        return kind, out
    a, b = span
    m = max(1, int(round(keep * (b - a))))
    piece = x[a : a + m] if kind == "head" else x[b - m : b]
    piece = piece.astype(np.float32, copy=True)
    f = min(int(round(cfg.fade_ms * sample_rate_hz / 1000)), m // 2)
    if f:
        ramp = np.linspace(0.0, 1.0, f, dtype=np.float32)
        piece[:f] *= ramp
        piece[-f:] *= ramp[::-1]
    start = int(round(u * (n - m)))
    out[start : start + m] = piece
    return kind, out


# ---------------------------------------------------------------------------------------------
# SpecAugment


@dataclass(frozen=True)
class SpecAugmentConfig:
    """Online SpecAugment (Park et al. 2019) on each training batch: the one schema used by the
    base recipe (`fit.spec_augment`), transfer (`TransferConfig.spec_augment`) and the pipeline."""

    time_masks: int = 2
    time_mask_frames: int = 6
    freq_masks: int = 1
    freq_mask_bins: int = 2
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("time_masks", "time_mask_frames", "freq_masks", "freq_mask_bins"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"SpecAugment {name} must be an int >= 0, got {v!r}")
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"SpecAugment enabled must be true or false, got {self.enabled!r}")

    @property
    def active(self) -> bool:
        """Whether any mask can change a batch."""
        time = self.time_masks > 0 and self.time_mask_frames > 0
        freq = self.freq_masks > 0 and self.freq_mask_bins > 0
        return self.enabled and (time or freq)


def spec_augment(batch, cfg: SpecAugmentConfig, generator):
    """Time/frequency masks on a (N, 1, T, F) feature batch, filled with each example's mean.

    Mask widths are uniform in [0, max] and positions uniform over the axis (Park et al. 2019).
    Everything is drawn from `generator` (on the batch's device), so a seeded generator gives
    identical masks. Returns a new tensor; the input is not modified.
    """
    import torch

    if batch.dim() != 4:
        raise ValueError(f"spec_augment expects (N, 1, T, F), got shape {tuple(batch.shape)}")
    n, _, t_len, f_len = batch.shape
    device = batch.device
    keep = torch.ones((n, 1, t_len, f_len), dtype=torch.bool, device=device)

    def masks(count: int, max_width: int, axis_len: int) -> "torch.Tensor":
        # (N, axis_len) bool: True where any of `count` masks covers the position.
        covered = torch.zeros((n, axis_len), dtype=torch.bool, device=device)
        if count == 0 or max_width == 0:
            return covered
        width = torch.randint(0, max_width + 1, (n, count), generator=generator, device=device)
        start = (torch.rand((n, count), generator=generator, device=device) * (axis_len - width + 1).clamp(min=1)).long()
        pos = torch.arange(axis_len, device=device).view(1, 1, -1)
        hit = (pos >= start.unsqueeze(-1)) & (pos < (start + width).unsqueeze(-1))
        return hit.any(dim=1)

    time_cover = masks(cfg.time_masks, min(cfg.time_mask_frames, t_len), t_len)
    freq_cover = masks(cfg.freq_masks, min(cfg.freq_mask_bins, f_len), f_len)
    keep &= ~time_cover.view(n, 1, t_len, 1)
    keep &= ~freq_cover.view(n, 1, 1, f_len)
    fill = batch.mean(dim=(1, 2, 3), keepdim=True).expand_as(batch)
    return torch.where(keep, batch, fill)
