from __future__ import annotations

import torch
from torch import nn

from polykws.training.deltas.base import DeltaLayer
from polykws.training.deltas.blob_bytes import tensor_rewrite_bytes


class DenseLayer(DeltaLayer):
    """ΔW is a free tensor of the weight's shape, initialised to 0."""

    def __init__(self, base_layer, cfg, *, site, context):
        super().__init__(base_layer, cfg, site=site, context=context)
        self.delta = nn.Parameter(torch.zeros_like(base_layer.weight))

    @classmethod
    def cost(cls, module, cfg) -> int:
        return int(module.weight.numel())

    @classmethod
    def blob_bytes(cls, module, cfg) -> int:
        return tensor_rewrite_bytes(module)

    def delta_weight(self) -> torch.Tensor:
        return self.delta
