"""Feature frontends as a frozen, versioned, hashable config.

The config is what travels with every artifact (feature caches, checkpoints, .tflite, blobs,
firmware headers), so two artifacts can be checked for compatibility by comparing hashes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from polykws.utils import ConfigError, stable_hash

FRONTEND_KINDS = ("mfcc", "micro")


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
        raw = 1 + (self.clip_samples - self.window_samples) // self.stride_samples
        return (raw + self.frame_decimation - 1) // self.frame_decimation

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.num_frames, self.num_features)

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


FRONTENDS = {"mfcc": mfcc_frontend, "micro": micro_frontend}


def frontend_by_name(name: str) -> FrontendConfig:
    try:
        return FRONTENDS[name]()
    except KeyError:
        raise ConfigError(f"unknown frontend {name!r}; known: {', '.join(sorted(FRONTENDS))}") from None
