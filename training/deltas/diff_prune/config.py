"""`diff_prune`: an L0-sparse ΔW (diff pruning, Guo, Rush & Kim, ACL 2021).

Search phase: ΔW = z ⊙ w with hard-concrete gates z (Louizos et al. 2018) parameterised by
log α, stretched to (l, r) = (−1.5, 1.5) and clipped to [0, 1]; the loss adds
`l0_weight · E[‖z‖₀]`. Then `finalize()` projects by magnitude to exactly `k` nonzeros
(global over this config's sites, as in the paper) and the fine-tune phase trains only those
k values with the mask fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

from polykws.training.deltas.base import DeltaConfig
from polykws.core import ConfigError


@dataclass(frozen=True)
class DiffPruneConfig(DeltaConfig):
    """Cost = k (the nonzeros a language stores), over all of this config's target sites."""

    k: int = 64
    l0_weight: float = 1e-4
    stretch_left: float = -1.5
    stretch_right: float = 1.5
    temperature: float = 2.0 / 3.0
    # sigmoid(1.0) ≈ 0.73: most gates start open so w receives gradient from the first step.
    init_log_alpha: float = 1.0

    def validate(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"DiffPruneConfig.k must be an integer >= 1, got {self.k!r}")
        if self.l0_weight < 0:
            raise ConfigError(f"DiffPruneConfig.l0_weight must be >= 0, got {self.l0_weight!r}")
        if not self.stretch_left < 0.0 or not self.stretch_right > 1.0:
            raise ConfigError(
                f"DiffPruneConfig stretch must satisfy left < 0 < 1 < right, got ({self.stretch_left}, {self.stretch_right})"
            )
        if not self.temperature > 0:
            raise ConfigError(f"DiffPruneConfig.temperature must be > 0, got {self.temperature!r}")
