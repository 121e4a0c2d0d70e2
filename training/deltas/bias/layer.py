from __future__ import annotations

import torch
from torch import nn

from polykws.training.deltas.base import DeltaLayer
from polykws.training.deltas.blob_bytes import bias_bytes


class BiasLayer(DeltaLayer):
    """Δb per output channel, initialised to 0. ΔW is identically zero."""

    def __init__(self, base_layer, cfg, *, site, context):
        super().__init__(base_layer, cfg, site=site, context=context)
        self.bias_delta = nn.Parameter(base_layer.bias.new_zeros(base_layer.bias.shape))

    @classmethod
    def supports(cls, module, cfg) -> bool:
        # Adding a bias where the base has none would change the deployed graph's shapes.
        return getattr(module, "bias", None) is not None

    @classmethod
    def cost(cls, module, cfg) -> int:
        return int(module.bias.numel())

    @classmethod
    def blob_bytes(cls, module, cfg) -> int:
        return bias_bytes(module)

    def delta_weight(self) -> torch.Tensor:
        return torch.zeros_like(self.base_layer.weight)

    def delta_bias(self) -> torch.Tensor:
        return self.bias_delta
