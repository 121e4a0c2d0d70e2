"""`scale`: a per-output-channel multiplicative delta, W_eff = W0 · (1 + s)."""

from __future__ import annotations

from dataclasses import dataclass

from polykws.training.deltas.base import DeltaConfig


@dataclass(frozen=True)
class ScaleConfig(DeltaConfig):
    """No knobs beyond `targets`: one scale per output channel of every targeted site.

    Cost per site = out_channels. Only the weight is scaled (the base bias is kept); pair with
    `bias` for a full per-channel affine change.
    """
