"""Training configuration: validated dataclasses loaded from YAML with `yaml.safe_load`.

Every dataclass checks its own values in `__post_init__` and raises `ConfigError` naming the
field. `from_dict` rejects unknown keys (a typo must not silently fall back to a default) and
prefixes errors with the dotted path, and `load_train_config` adds the file name, so a bad
config reads e.g. `configs/base.yaml: fit.optim.lr: must be > 0, got -1`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polykws.core import ConfigError, from_yaml_file, resolve_path, stable_hash, to_plain
from polykws.datasets.augment import AugmentConfig, SpecAugmentConfig
from polykws.datasets.task import TaskOptions

SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a per-step learning-rate schedule (linear warmup, then cosine/step/constant)."""

    lr: float = 3e-3
    weight_decay: float = 1e-2
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    # cosine: the LR decays to lr * min_lr_ratio at the last step.
    min_lr_ratio: float = 0.01
    # step: multiply the LR by step_gamma every step_epochs epochs.
    step_epochs: int = 10
    step_gamma: float = 0.3
    # Clip the global gradient norm (0 disables); guards the first epochs on raw MFCC scales.
    grad_clip_norm: float = 5.0

    def __post_init__(self) -> None:
        _positive(self, "lr")
        _non_negative(self, "weight_decay", "warmup_epochs", "grad_clip_norm")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.step_epochs < 1:
            raise ConfigError(f"step_epochs must be >= 1, got {self.step_epochs!r}")
        if not 0.0 < self.step_gamma <= 1.0:
            raise ConfigError(f"step_gamma must be in (0, 1], got {self.step_gamma!r}")


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 30
    batch_size: int = 128
    seed: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)
    label_smoothing: float = 0.0
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    # The checkpoint with the best value of this validation metric becomes best.pt.
    select_metric: str = "val_acc"
    progress: bool = True
    # Torch intra-op threads (0 = leave torch's default). Pinning it keeps runs bit-identical
    # across machines with different core counts.
    num_threads: int = 0
    # Train in channels_last memory format: oneDNN's convolutions are ~35 % faster that way on
    # this CPU (measured on DS-CNN-S, batch 128). Weights are returned in the default layout.
    channels_last: bool = True

    def __post_init__(self) -> None:
        _positive(self, "epochs", "batch_size")
        _non_negative(self, "num_threads")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.select_metric not in ("val_acc", "val_loss"):
            raise ConfigError(f"select_metric must be val_acc or val_loss, got {self.select_metric!r}")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "ds_cnn_s"
    frontend: str = "mfcc"

    def __post_init__(self) -> None:
        from polykws.datasets.frontend import FRONTENDS
        from polykws.training.models import list_models

        if self.name not in list_models():
            raise ConfigError(f"unknown model {self.name!r}; registered: {', '.join(list_models())}")
        if self.frontend not in FRONTENDS:
            raise ConfigError(f"unknown frontend {self.frontend!r}; known: {', '.join(sorted(FRONTENDS))}")


@dataclass(frozen=True)
class SynthSettings:
    """How to (re)create a synthesized corpus root that is missing (polykws data synth)."""

    languages: tuple[str, ...] = ("en", "de", "fr", "es", "it", "nl", "pt", "pl")
    speakers: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.languages:
            raise ConfigError("synth languages must not be empty")
        _positive(self, "speakers")


@dataclass(frozen=True)
class CorpusConfig:
    """One pretraining corpus root (folder layout `<lang>/<source>/<keyword>/<clip>`).

    `root` may start with `shared:` (resolved against polykws.core.shared_dir()) or be a path
    relative to the repository. `languages` / `sources` restrict it (empty = all).
    `splits` names which of the corpus' speaker-disjoint splits feed the base: a corpus in a
    transfer target's language must use only `[train]`, so the base never hears a validation or
    test speaker of a target language. `synth` recreates a missing synthesized root.
    """

    root: str
    languages: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("train", "val", "test")
    synth: SynthSettings | None = None

    def __post_init__(self) -> None:
        if not self.root:
            raise ConfigError("corpus root must be set")
        bad = [s for s in self.splits if s not in ("train", "val", "test")]
        if bad or not self.splits:
            raise ConfigError(f"corpus splits must be a non-empty subset of train/val/test, got {list(self.splits)}")

    def resolved_root(self) -> Path:
        return resolve_path(self.root)


@dataclass(frozen=True)
class DataConfig(TaskOptions):
    """The base's pretraining data and label set.

    Classes are language-qualified words (`en:yes`, `de:ja`), so homographs in different
    languages stay distinct and one label list can pool languages. `keywords` lists them
    explicitly; empty means every word found in the selected corpora except `unknown_words`
    and words with fewer than `min_train_clips` training clips. `unknown_words` (plain labels)
    feed `_unknown_`; `_silence_` is built from `noise_dir` plus any synthesized noise.

    The task's class options (`silence`, `unknown`, `unknown_words`, `silence_fraction`,
    `unknown_fraction`, `partial_keyword_fraction`, ...) are the ones every task takes
    (`polykws.datasets.task.TaskOptions`): a base for streams gets the same strong `_unknown_`
    and `_silence_` classes a detector's transfer task gets.
    """

    corpora: tuple[CorpusConfig, ...] = ()
    keywords: tuple[str, ...] = ()
    min_train_clips: int = 1
    max_per_keyword: int = 0
    noise_dir: str = "shared:data/noise/lt_background_noise"
    # Speaker-disjoint split shares (percent), as polykws.datasets.SplitConfig.
    val_pct: float = 10.0
    test_pct: float = 10.0
    # Offline augmented copies of each training clip (speed, pitch, shift, gain, noise), made as
    # `augment` says.
    augment_copies: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # micro frontend: augmented copies and _silence_ crops come from a frontend warmed on this much
    # of their background first, as on a device (datasets.load_task_features). 0 = a fresh frontend.
    frontend_warm_ms: float = 0.0
    cache_dir: str = ".cache/features"
    manifest_dir: str = ".cache/manifests"

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative(self, "augment_copies", "max_per_keyword", "min_train_clips", "frontend_warm_ms")
        for name in ("val_pct", "test_pct"):
            v = getattr(self, name)
            if not 0.0 < v < 50.0:
                raise ConfigError(f"{name} must be in (0, 50), got {v!r}")
        bad = [k for k in self.keywords if ":" not in k]
        if bad:
            raise ConfigError(f"keywords must be language-qualified like 'en:yes', got {bad}")
        if self.unknown and not self.unknown_words and self.corpora and not self.keywords:
            raise ConfigError("unknown=true needs unknown_words (or explicit keywords leaving other words over)")


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    run_dir: str = "runs/base"

    def __post_init__(self) -> None:
        if not self.run_dir:
            raise ConfigError("run_dir must be set")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def config_hash(self) -> str:
        return stable_hash(self.to_dict())


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) suitable for YAML/JSON."""
    return to_plain(cfg)


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    return from_yaml_file(TrainConfig, path, overrides)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, sort_keys=False)


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, bool) or not v > 0:
            raise ConfigError(f"{name} must be > 0, got {v!r}")


def _non_negative(obj: Any, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, bool) or not v >= 0:
            raise ConfigError(f"{name} must be >= 0, got {v!r}")
