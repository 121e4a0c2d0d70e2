"""`dense`: a full ΔW with the weight's shape (the upper bound of what a weight delta can do)."""

from __future__ import annotations

from dataclasses import dataclass

from polykws.training.deltas.base import DeltaConfig


@dataclass(frozen=True)
class DenseConfig(DeltaConfig):
    """No knobs beyond `targets`. Cost per site = weight.numel() (the bias is left alone;
    add `bias` for that)."""
