from __future__ import annotations

import torch
from torch import nn

from polykws.training.deltas.base import DeltaLayer
from polykws.training.deltas.blob_bytes import channel_requant_bytes, out_channels


class ScaleLayer(DeltaLayer):
    """ΔW = W0 · s (per output channel), s initialised to 0 so training starts at the base."""

    def __init__(self, base_layer, cfg, *, site, context):
        super().__init__(base_layer, cfg, site=site, context=context)
        out_channels = base_layer.weight.shape[0]
        self.scale = nn.Parameter(base_layer.weight.new_zeros(out_channels))

    @classmethod
    def cost(cls, module, cfg) -> int:
        return int(module.weight.shape[0])

    @classmethod
    def blob_bytes(cls, module, cfg) -> int:
        # The exporter absorbs the factor into the channel's weight scale: int8 weights stay, the
        # weight scale, bias scale and int32 bias of every channel change.
        return channel_requant_bytes(out_channels(module))

    def delta_weight(self) -> torch.Tensor:
        w0 = self.base_weight()
        return w0 * self.scale.view(-1, *([1] * (w0.dim() - 1)))
