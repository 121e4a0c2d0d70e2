"""TransferConfig: what every transfer method shares (budget of epochs, learning rates, data)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from polykws.core import ConfigError
from polykws.datasets.augment import SpecAugmentConfig


def _no_spec_augment() -> SpecAugmentConfig:
    return SpecAugmentConfig(enabled=False)


@dataclass(frozen=True)
class TransferConfig:
    """The training budget and recipe every method gets. Learning rates are per parameter role.

    `epochs` is the method's training budget: after the linear probe (`probe_epochs`, on cached
    embeddings), each method trains its parameters for `epochs` epochs of the training split
    (`method_steps()` optimizer steps). Two-phase families and SWR's l0 search spend
    `finalize_fraction` of them before finalize() (`finalize_split()`); SWR's per-site searches
    split them by their own fractions; scratch multiplies them.
    """

    epochs: int = 30
    batch_size: int = 64
    delta_lr: float = 1e-2  # delta parameters (scale, coefficients, low-rank factors, ...)
    head_lr: float = 1e-2  # the language head
    body_lr: float = 2e-3  # base weights in full fine-tune / BN-only / scratch
    weight_decay: float = 0.0
    head_weight_decay: float = 1e-3
    label_smoothing: float = 0.0
    # Linear probe on frozen embeddings before the method trains (its own epochs, cached, cheap).
    probe_epochs: int = 60
    # Two-phase families (diff_prune): fraction of `epochs` spent before finalize().
    finalize_fraction: float = 0.6
    warmup_steps: int = 10
    grad_clip_norm: float = 5.0
    # Online SpecAugment on every training batch of the method's own phases (not the linear
    # probe, which stays on cached embeddings). Off unless enabled.
    spec_augment: SpecAugmentConfig = field(default_factory=_no_spec_augment)
    seed: int = 0
    eval_batch_size: int = 1024
    # Where body deltas live: "int8" trains them on the base's frozen int8 grid (straight
    # through), so the exported model changes exactly the bytes the delta moves; "float" trains
    # them in float and leaves rounding to the exporter.
    weight_grid: str = "int8"
    # torch intra-op threads (None leaves torch's default). The benchmark pins 1 per worker.
    num_threads: int | None = None
    # Class weights (1 / class frequency) ** class_balance in the loss and in model selection
    # (the validation accuracy weighted alike): 0 leaves them equal, 1 weighs every class alike
    # (selection on mean per-class recall). A detector's _unknown_ class outnumbers each keyword
    # many times, and unweighted it swamps keyword recall.
    class_balance: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _check(self, name, isinstance(getattr(self, name), int) and getattr(self, name) >= 1, "an integer >= 1")
        for name in ("delta_lr", "head_lr", "body_lr"):
            _check(self, name, getattr(self, name) > 0, "> 0")
        for name in ("weight_decay", "head_weight_decay", "label_smoothing", "grad_clip_norm"):
            _check(self, name, getattr(self, name) >= 0, ">= 0")
        _check(self, "probe_epochs", isinstance(self.probe_epochs, int) and self.probe_epochs >= 0, "an integer >= 0")
        _check(self, "finalize_fraction", 0.0 < self.finalize_fraction < 1.0, "in (0, 1)")
        _check(self, "label_smoothing", self.label_smoothing < 1, "< 1")
        _check(self, "weight_grid", self.weight_grid in ("int8", "float"), "'int8' or 'float'")
        _check(self, "num_threads", self.num_threads is None or self.num_threads >= 1, ">= 1")
        _check(self, "class_balance", not isinstance(self.class_balance, bool) and 0.0 <= self.class_balance <= 1.0, "a number in [0, 1]")
        if not isinstance(self.spec_augment, SpecAugmentConfig):
            raise ConfigError(f"TransferConfig.spec_augment must be a SpecAugmentConfig, got {self.spec_augment!r}")

    def steps_per_epoch(self, train_rows: int) -> int:
        return max(1, math.ceil(train_rows / self.batch_size))

    def method_steps(self, train_rows: int) -> int:
        """Optimizer steps of the method's `epochs` on a training split of `train_rows` rows."""
        return self.epochs * self.steps_per_epoch(train_rows)

    def finalize_split(self, epochs: int | None = None) -> dict[str, int]:
        """A two-phase method's `epochs` (default `self.epochs`) split at finalize(): the search
        phase gets `finalize_fraction` of them, the fixed phase the rest, each at least one."""
        epochs = self.epochs if epochs is None else epochs
        search = max(1, int(round(epochs * self.finalize_fraction)))
        return {"search": search, "fixed": max(1, epochs - search)}

    def replace(self, **changes: Any) -> "TransferConfig":
        return dataclasses.replace(self, **changes)


def _check(cfg: TransferConfig, name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"TransferConfig.{name} must be {what}, got {getattr(cfg, name)!r}")
