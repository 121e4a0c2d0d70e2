"""Feature frontends as a frozen, versioned, hashable config, and the code that computes them.

The config is what travels with every artifact (feature caches, checkpoints, .tflite, blobs,
firmware headers), so two artifacts can be checked for compatibility by comparing hashes.

- ``mfcc`` (Hello Edge / MLPerf Tiny): magnitude STFT with a 40 ms periodic Hann window and a
  20 ms stride (no centre padding), 40 HTK mel bands 20 Hz-4 kHz, ``log(mel + 1e-6)``, orthonormal
  DCT-II, first 10 coefficients -> 49x10. Computed with ``torchaudio.transforms.MFCC``. The FFT
  length equals the window (640 points) so that 1 s gives 49 frames as in the papers.
- ``micro``: the TFLM micro frontend through pymicro-features (30 ms window, 10 ms step, 40
  channels 125-7500 Hz, noise reduction, PCAN, log scale; its constants are compiled into the
  wheel, see ``MICRO_FRONTEND_PARAMS``). The frontend starts from a fresh state for every clip;
  every 2nd frame is kept -> 49x40. Values are the frontend's uint16 output times 0.0390625, so
  they equal what the device's TFLM frontend produces from the same int16 samples.

``value_range`` is the full range of ``compute_features``' output; features are clipped into it
so the int8 input quantization can be pinned to it (as microWakeWord pins the micro frontend's).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from polykws.core import ConfigError, stable_hash

FRONTEND_KINDS = ("mfcc", "micro")

# pymicro-features compiles these into its C++ extension (src/micro_features.cpp); they cannot
# be changed from Python, so FrontendConfig(kind="micro") must match them. Firmware headers are
# generated from this dict, never hand-copied.
MICRO_FRONTEND_PARAMS = {
    "window_size_ms": 30,
    "window_step_ms": 10,
    "num_channels": 40,
    "lower_band_limit_hz": 125.0,
    "upper_band_limit_hz": 7500.0,
    "noise_reduction_smoothing_bits": 10,
    "noise_reduction_even_smoothing": 0.025,
    "noise_reduction_odd_smoothing": 0.06,
    "noise_reduction_min_signal_remaining": 0.05,
    "pcan_enable": 1,
    "pcan_strength": 0.95,
    "pcan_offset": 80.0,
    "pcan_gain_bits": 21,
    "log_scale_enable": 1,
    "log_scale_shift": 6,
    "sample_rate_hz": 16000,
    # Float features are the uint16 frontend output times this (= 1/25.6).
    "output_scale": 0.0390625,
}

# micro: TFLM's micro_speech example maps frontend values 0..666 (x 0.0390625 = 0..26.0) onto
# int8 and clamps above; microWakeWord pins the same [0, 26] range. Real speech peaks near 25.5;
# only full-scale synthetic signals (square waves) exceed 26.0 (measured max 26.17).
MICRO_VALUE_RANGE = (0.0, 26.0)
# mfcc: the lower bound is exact: c0 of an all-zero frame is sqrt(40) * ln(1e-6) = -87.377, and
# no input goes lower (log-mel >= ln(1e-6)). The upper bound 32 leaves headroom over the measured
# maxima: 20.8 over the shared speech + noise, 21.2 full-scale white noise, 27.8 a full-scale chirp.
# Coefficients c1..c9 of real speech stay within [-24, 18].
MFCC_VALUE_RANGE = (-88.0, 32.0)


@dataclass(frozen=True)
class FrontendConfig:
    kind: str
    window_size_ms: float
    window_stride_ms: float
    num_features: int
    sample_rate_hz: int = 16000
    clip_duration_ms: int = 1000
    # MFCC only: mel filterbank feeding the DCT (Hello Edge / MLPerf Tiny use 40 bands, 20 Hz-4 kHz).
    num_mel_bins: int = 40
    lower_edge_hz: float = 20.0
    upper_edge_hz: float = 4000.0
    # micro only: pymicro-features runs at a fixed 10 ms step; the model keeps every k-th frame
    # so that 1 s gives 49 frames like MFCC. The device decimates the same way.
    frame_decimation: int = 1
    version: int = 1

    def __post_init__(self) -> None:
        if self.kind not in FRONTEND_KINDS:
            raise ConfigError(f"frontend kind must be one of {FRONTEND_KINDS}, got {self.kind!r}")
        for name in ("window_size_ms", "window_stride_ms", "num_features", "sample_rate_hz", "clip_duration_ms", "frame_decimation"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"frontend {name} must be > 0, got {getattr(self, name)!r}")
        if self.window_size_ms > self.clip_duration_ms:
            raise ConfigError("frontend window_size_ms exceeds clip_duration_ms")
        if self.kind == "mfcc" and self.num_features > self.num_mel_bins:
            raise ConfigError("mfcc num_features (coefficients) cannot exceed num_mel_bins")
        if self.kind == "micro":
            fixed = {
                "window_size_ms": MICRO_FRONTEND_PARAMS["window_size_ms"],
                "window_stride_ms": MICRO_FRONTEND_PARAMS["window_step_ms"],
                "num_features": MICRO_FRONTEND_PARAMS["num_channels"],
                "sample_rate_hz": MICRO_FRONTEND_PARAMS["sample_rate_hz"],
            }
            for name, want in fixed.items():
                if getattr(self, name) != want:
                    raise ConfigError(f"micro frontend {name} is fixed at {want} by pymicro-features, got {getattr(self, name)!r}")

    @property
    def clip_samples(self) -> int:
        return self.sample_rate_hz * self.clip_duration_ms // 1000

    @property
    def window_samples(self) -> int:
        return round(self.sample_rate_hz * self.window_size_ms / 1000)

    @property
    def stride_samples(self) -> int:
        return round(self.sample_rate_hz * self.window_stride_ms / 1000)

    @property
    def num_frames(self) -> int:
        """Frames the model sees for one clip (after decimation)."""
        return (self.raw_frames + self.frame_decimation - 1) // self.frame_decimation

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.num_frames, self.num_features)

    @property
    def raw_frames(self) -> int:
        """Frames the frontend produces for one clip, before decimation."""
        return 1 + (self.clip_samples - self.window_samples) // self.stride_samples

    @property
    def value_range(self) -> tuple[float, float]:
        """(lo, hi): every value compute_features returns lies in [lo, hi] (it clips)."""
        return MICRO_VALUE_RANGE if self.kind == "micro" else MFCC_VALUE_RANGE

    @property
    def micro_params(self) -> dict:
        """The TFLM micro frontend constants (micro only), for generated firmware headers."""
        if self.kind != "micro":
            raise ConfigError("micro_params exists only for the micro frontend")
        return dict(MICRO_FRONTEND_PARAMS)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FrontendConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown frontend fields: {sorted(unknown)}")
        return cls(**d)

    def config_hash(self) -> str:
        return stable_hash(self.to_dict())


def mfcc_frontend() -> FrontendConfig:
    """Hello Edge / MLPerf Tiny: 40 ms window, 20 ms stride, 10 MFCCs -> 49x10."""
    return FrontendConfig(kind="mfcc", window_size_ms=40.0, window_stride_ms=20.0, num_features=10)


def micro_frontend() -> FrontendConfig:
    """TFLM micro frontend (pymicro-features): 30 ms window, 10 ms step, 40 channels, every 2nd frame -> 49x40."""
    return FrontendConfig(kind="micro", window_size_ms=30.0, window_stride_ms=10.0, num_features=40, frame_decimation=2)


def micro_frontend_1500ms() -> FrontendConfig:
    """The micro frontend over 1.5 s -> 74x40. A base without time padding loses rows at each conv,
    so over 1 s its 12 pooled rows weigh the window's centre; over 1.5 s it pools 25 rows whose
    receptive fields cover the centred 1 s clip evenly, as the time-padded base's 25 rows do."""
    return replace(micro_frontend(), clip_duration_ms=1500)


FRONTENDS = {"mfcc": mfcc_frontend, "micro": micro_frontend, "micro_1500ms": micro_frontend_1500ms}


def frontend_by_name(name: str) -> FrontendConfig:
    try:
        return FRONTENDS[name]()
    except KeyError:
        raise ConfigError(f"unknown frontend {name!r}; known: {', '.join(sorted(FRONTENDS))}") from None


# ---------------------------------------------------------------------------------------------
# Computing features


@functools.lru_cache(maxsize=8)
def _mfcc_transform(cfg: FrontendConfig):
    import torch
    import torchaudio

    return torchaudio.transforms.MFCC(
        sample_rate=cfg.sample_rate_hz,
        n_mfcc=cfg.num_features,
        dct_type=2,
        norm="ortho",
        log_mels=True,  # log(mel + 1e-6), as tf.math.log(mel + 1e-6) in Hello Edge / MLPerf Tiny
        melkwargs={
            "n_fft": cfg.window_samples,
            "win_length": cfg.window_samples,
            "hop_length": cfg.stride_samples,
            "f_min": cfg.lower_edge_hz,
            "f_max": cfg.upper_edge_hz,
            "n_mels": cfg.num_mel_bins,
            "window_fn": torch.hann_window,
            "power": 1.0,  # magnitude spectrogram, as tf.abs(tf.signal.stft(...))
            "center": False,
            "mel_scale": "htk",
            "norm": None,
        },
    )


def audio_to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float [-1, 1) -> int16 exactly as soundfile's int16 -> float mapping reverses (x * 32768)."""
    return np.clip(np.round(np.asarray(audio, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def _micro_raw(pcm: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    from pymicro_features import MicroFrontend

    frontend = MicroFrontend()  # fresh state per clip: noise estimate and PCAN start from zero
    step = cfg.stride_samples
    data = pcm.astype("<i2", copy=False).tobytes()
    frames = []
    for start in range(0, pcm.shape[0] - step + 1, step):
        out = frontend.process_samples(data[2 * start : 2 * (start + step)])
        if out.features:
            frames.append(out.features)
    return np.asarray(frames, dtype=np.float32).reshape(-1, cfg.num_features)


def compute_frames(audio: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """Every complete raw frame of a 1-D signal of any length: float32 (frames, num_features), clipped.

    No decimation and no clip-length check: the frame grid starts at sample 0 with the frontend's
    own stride, as a streaming device sees it. ``micro`` starts from a fresh frontend state.
    """
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"compute_frames takes one 1-D signal, got shape {audio.shape}")
    lo, hi = cfg.value_range
    if audio.shape[0] < cfg.window_samples:
        return np.zeros((0, cfg.num_features), np.float32)
    if cfg.kind == "mfcc":
        import torch

        with torch.no_grad():
            out = _mfcc_transform(cfg)(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))).T.numpy()
    else:
        out = _micro_raw(audio_to_pcm16(audio), cfg)
    return np.clip(out, lo, hi).astype(np.float32, copy=False)


def _check_audio(audio: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.shape[-1] != cfg.clip_samples:
        raise ValueError(f"audio must have {cfg.clip_samples} samples in its last axis, got shape {audio.shape}")
    return audio


def compute_features(audio: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """Features of one clip: float32 (cfg.num_frames, cfg.num_features), clipped to cfg.value_range."""
    audio = _check_audio(audio, cfg)
    if audio.ndim != 1:
        raise ValueError(f"compute_features takes one clip (1-D); use compute_features_batch for shape {audio.shape}")
    return compute_features_batch(audio[None, :], cfg)[0]


def compute_features_batch(audio: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """Features of a batch of clips (N, clip_samples) -> float32 (N, num_frames, num_features)."""
    audio = _check_audio(audio, cfg)
    if audio.ndim != 2:
        raise ValueError(f"expected (N, {cfg.clip_samples}) audio, got shape {audio.shape}")
    lo, hi = cfg.value_range
    if cfg.kind == "mfcc":
        import torch

        with torch.no_grad():
            feats = _mfcc_transform(cfg)(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))
        out = feats.transpose(1, 2).numpy()  # (N, n_mfcc, frames) -> (N, frames, n_mfcc)
    else:
        out = np.stack([_micro_raw(audio_to_pcm16(a), cfg) for a in audio]) if len(audio) else np.zeros((0, cfg.raw_frames, cfg.num_features), np.float32)
    out = out[:, :: cfg.frame_decimation]
    if out.shape[1:] != cfg.input_shape:  # pragma: no cover - guards the frame arithmetic above
        raise AssertionError(f"{cfg.kind} produced {out.shape[1:]}, config says {cfg.input_shape}")
    return np.clip(out, lo, hi).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# Streaming: frame by frame, state kept


class StreamingFrontend:
    """int16 PCM in, the model's feature frames out, frame by frame as a device computes them.

    ``mfcc`` has no state across frames (no centring, no normalisation: each frame is a function of
    its own 40 ms of samples), so streaming frames equal the frames of a 1 s clip that starts on the
    frame grid. ``micro`` keeps one pymicro-features frontend for the whole stream, as the device
    does: its noise estimate and PCAN gain are warm, so its frames differ from the reset-per-clip
    frames the model was trained on (docs/BENCHMARKS.md, "Warm vs reset micro frontend").
    """

    def __init__(self, frontend: FrontendConfig):
        self.cfg = frontend
        self._raw_index = 0  # raw frames produced so far
        self._pending = np.zeros(0, np.int16)
        if frontend.kind == "micro":
            from pymicro_features import MicroFrontend

            self._micro = MicroFrontend()

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """Feed int16 samples; return the new model frames (decimated), float32 (k, num_features)."""
        pcm = np.asarray(pcm)
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"StreamingFrontend.push takes 1-D int16 PCM, got {pcm.dtype} {pcm.shape}")
        cfg = self.cfg
        buf = np.concatenate([self._pending, pcm]) if self._pending.size else pcm
        if cfg.kind == "micro":
            step = cfg.stride_samples
            n = buf.shape[0] // step
            raw = []
            data = buf[: n * step].astype("<i2", copy=False).tobytes()
            for i in range(n):
                out = self._micro.process_samples(data[2 * step * i : 2 * step * (i + 1)])
                if out.features:
                    raw.append(out.features)
            self._pending = buf[n * step :].copy()
            lo, hi = cfg.value_range
            frames = np.clip(np.asarray(raw, np.float32).reshape(-1, cfg.num_features), lo, hi)
        else:
            # buf starts at the next raw frame's first sample.
            n = 0 if buf.shape[0] < cfg.window_samples else 1 + (buf.shape[0] - cfg.window_samples) // cfg.stride_samples
            frames = compute_frames(buf[: (n - 1) * cfg.stride_samples + cfg.window_samples].astype(np.float32) / 32768.0, cfg) if n else np.zeros((0, cfg.num_features), np.float32)
            self._pending = buf[n * cfg.stride_samples :].copy()
        keep = (self._raw_index + np.arange(frames.shape[0])) % cfg.frame_decimation == 0
        self._raw_index += frames.shape[0]
        return frames[keep]


def stream_features(pcm: np.ndarray, frontend: FrontendConfig, chunk_samples: int = 16000) -> np.ndarray:
    """All model frames of an int16 stream, pushed through :class:`StreamingFrontend` in chunks."""
    fe = StreamingFrontend(frontend)
    parts = [fe.push(pcm[i : i + chunk_samples]) for i in range(0, pcm.shape[0], chunk_samples)]
    return np.concatenate(parts) if parts else np.zeros((0, frontend.num_features), np.float32)


def compute_features_warm(audio: np.ndarray, preceding: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """Features of one clip from a frontend that has first run over `preceding` (float audio).

    What a continuously running device computes for the clip; `compute_features` is the reset
    case (empty `preceding`). `preceding` is cut to a whole number of model frame hops from its
    start, so the clip's frames fall on the stream's frame grid and decimation phase.
    """
    audio = _check_audio(audio, cfg)
    hop = cfg.stride_samples * cfg.frame_decimation
    preceding = np.asarray(preceding)
    preceding = preceding[preceding.shape[0] % hop :]
    pcm = audio_to_pcm16(np.concatenate([preceding, audio]))
    k = preceding.shape[0] // hop
    return stream_features(pcm, cfg)[k : k + cfg.num_frames]
