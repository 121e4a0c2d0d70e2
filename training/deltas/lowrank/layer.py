from __future__ import annotations

import math

import torch
from torch import nn

from polykws.training.deltas.base import DeltaLayer, weight_matrix_shape
from polykws.training.deltas.blob_bytes import tensor_rewrite_bytes


class LowRankLayer(DeltaLayer):
    """ΔW = (up @ down).view(W.shape). `up` starts at 0 (so ΔW = 0) and `down` with LoRA's
    Kaiming-uniform init, so the first gradient step already moves `up`."""

    def __init__(self, base_layer, cfg, *, site, context):
        super().__init__(base_layer, cfg, site=site, context=context)
        out_channels, fan_in = weight_matrix_shape(base_layer)
        w = base_layer.weight
        self.down = nn.Parameter(w.new_empty(cfg.rank, fan_in))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))
        self.up = nn.Parameter(w.new_zeros(out_channels, cfg.rank))

    @classmethod
    def supports(cls, module, cfg) -> bool:
        out_channels, fan_in = weight_matrix_shape(module)
        # A rank at or above min(out, fan_in) is just a (more expensive) dense delta.
        return cfg.rank < min(out_channels, fan_in)

    @classmethod
    def cost(cls, module, cfg) -> int:
        out_channels, fan_in = weight_matrix_shape(module)
        return int(cfg.rank * (out_channels + fan_in))

    @classmethod
    def blob_bytes(cls, module, cfg) -> int:
        # up @ down is dense on the tensor: rank 1 on a 64x64 pointwise rewrites all 4,096 bytes.
        return tensor_rewrite_bytes(module)

    def delta_weight(self) -> torch.Tensor:
        return (self.up @ self.down).view_as(self.base_layer.weight)
