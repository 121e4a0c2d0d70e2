"""`bias`: a per-output-channel additive bias delta (BitFit-style), b_eff = b0 + Δb."""

from __future__ import annotations

from dataclasses import dataclass

from polykws.training.deltas.base import DeltaConfig


@dataclass(frozen=True)
class BiasConfig(DeltaConfig):
    """No knobs beyond `targets`. Cost per site = out_channels. Needs a layer with a bias
    (every DS-CNN conv and the head have one), so the merged model keeps the base's shapes."""
