from __future__ import annotations

import math

import torch
from torch import nn

from polykws.training.deltas.base import DeltaLayer, weight_matrix_shape
from polykws.training.deltas.budget import body_sites_deepest_first, fit_whole_sites, make_budget
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

    @classmethod
    def fit_to_budget(cls, base_model, budget_params=None, budget_bytes=None, **options):
        """The pointwise convs at the largest rank that fits, else the rank on as many
        pointwise convs as fit (deepest first), else on any sites that fit. A rank does not
        change a site's blob bytes (the product is dense), so a byte budget keeps `options`'
        rank and only chooses sites."""
        budget = make_budget(budget_params, budget_bytes)
        sites = body_sites_deepest_first(base_model)
        pw = [(n, m) for n, m in sites if n.endswith(".pw")]
        if budget.unit == "params":
            for rank in range(64, 0, -1):
                cfg = cls.config_cls(**{**options, "rank": rank})
                if all(cls.supports(m, cfg) for _, m in pw) and budget.of_sites(cls, pw, cfg) <= budget.limit:
                    return cfg.replace(targets=tuple(n for n, _ in reversed(pw)))
            options = {**options, "rank": 1}
        cfg = cls.config_cls(**options)
        return fit_whole_sites(cls, cfg, pw, budget) or fit_whole_sites(cls, cfg, sites, budget)

    def delta_weight(self) -> torch.Tensor:
        return (self.up @ self.down).view_as(self.base_layer.weight)
