"""`recast`: ΔW = Σₖ αₖ Tₖ over a small bank of frozen templates (RECAST, Tasnim & Plummer,
ICLR 2025). Only the coefficients α are per language.

The weight of a site is cut into `groups` row blocks (consecutive output channels); every block
of every base layer with the same weight shape is reconstructed from one shared bank of
`num_templates` templates ("neural mimicry", fitted once per base: see bank.py). A language
learns one coefficient vector per block: ΔW_g = Σₖ α_{g,k} Tₖ.
"""

from __future__ import annotations

from dataclasses import dataclass

from polykws.training.deltas.base import DeltaConfig
from polykws.core import ConfigError


@dataclass(frozen=True)
class RecastConfig(DeltaConfig):
    """Cost per site = groups · min(num_templates, block size). The templates cost a language
    nothing: they are base-level, shared by every language (docs/METHOD.md)."""

    num_templates: int = 8
    groups: int = 8

    def validate(self) -> None:
        if not isinstance(self.num_templates, int) or self.num_templates < 1:
            raise ConfigError(f"RecastConfig.num_templates must be an integer >= 1, got {self.num_templates!r}")
        if not isinstance(self.groups, int) or self.groups < 1:
            raise ConfigError(f"RecastConfig.groups must be an integer >= 1, got {self.groups!r}")
