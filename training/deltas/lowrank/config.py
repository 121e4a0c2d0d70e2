"""`lowrank`: ΔW = up · down of rank r (LoRA, Hu et al. 2021), on the weight seen as a matrix
(out_channels × fan_in, conv kernels flattened per output channel)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from polykws.training.deltas.base import DeltaConfig
from polykws.core import ConfigError


@dataclass(frozen=True)
class LowRankConfig(DeltaConfig):
    """Cost per site = rank · (out_channels + fan_in).

    Defaults to the pointwise convs and the head, where a 64×64 matrix makes low rank pay off;
    it also supports depthwise/full convs (fan_in = kh·kw·in/groups) when targeted explicitly.
    """

    default_targets: ClassVar[tuple[str, ...]] = ("blocks.*.pw", "head")

    rank: int = 1

    def validate(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"LowRankConfig.rank must be an integer >= 1, got {self.rank!r}")
