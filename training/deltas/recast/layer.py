from __future__ import annotations

import torch
from torch import nn

from polykws.training.deltas.base import BODY_TARGETS, DeltaLayer
from polykws.training.deltas.budget import body_sites_deepest_first, fit_whole_sites, make_budget
from polykws.training.deltas.blob_bytes import tensor_rewrite_bytes
from polykws.training.deltas.recast.bank import get_bank, shape_key
from polykws.core import ConfigError, PolykwsError


class RecastLayer(DeltaLayer):
    """ΔW viewed as (groups, block): ΔW_g = Σₖ coeff[g, k] · T[k]; coeff starts at 0.

    The templates are a non-persistent buffer taken from the base's shared bank, so a delta
    file stores only `coeff` plus the bank's SHA-256.
    """

    def __init__(self, base_layer, cfg, *, site, context):
        super().__init__(base_layer, cfg, site=site, context=context)
        bank = get_bank(context.base_model, context.base_sha256, cfg.groups, cfg.num_templates, bank_dir=context.bank_dir)
        key = shape_key(base_layer.weight.shape)
        if key not in bank.templates:
            raise ConfigError(f"site {site!r} (recast): no base layer has weight shape {key}, so the bank has no templates for it")
        templates = bank.templates[key].to(base_layer.weight.device, base_layer.weight.dtype)
        self.register_buffer("templates", templates.clone(), persistent=False)
        self.bank_sha256 = bank.sha256
        self.coeff = nn.Parameter(base_layer.weight.new_zeros(cfg.groups, templates.shape[0]))

    @classmethod
    def supports(cls, module, cfg) -> bool:
        return module.weight.shape[0] % cfg.groups == 0

    @classmethod
    def cost(cls, module, cfg) -> int:
        block = module.weight.numel() // cfg.groups
        return int(cfg.groups * min(cfg.num_templates, block))

    @classmethod
    def blob_bytes(cls, module, cfg) -> int:
        # Template mixtures are dense on every group of the tensor.
        return tensor_rewrite_bytes(module)

    @classmethod
    def fit_to_budget(cls, base_model, budget_params=None, budget_bytes=None, **options):
        """Every body site with the most coefficient groups (a divisor of the channel count)
        that fits at `num_templates` templates, else fewer templates. Groups and templates do
        not change a site's blob bytes (the mixture is dense), so a byte budget keeps
        `options` and chooses whole sites, deepest first."""
        budget = make_budget(budget_params, budget_bytes)
        sites = body_sites_deepest_first(base_model)
        if budget.unit == "blob_bytes":
            return fit_whole_sites(cls, cls.config_cls(**options), sites, budget)
        k = options.get("num_templates", cls.config_cls().num_templates)
        channels = [int(m.weight.shape[0]) for _, m in sites]
        best = None
        for groups in sorted({g for g in range(1, min(channels) + 1) if all(c % g == 0 for c in channels)}):
            cfg = cls.config_cls(**{**options, "groups": groups, "num_templates": k}, targets=BODY_TARGETS)
            if budget.of_sites(cls, sites, cfg) <= budget.limit:
                best = cfg
        if best is None:  # fewer templates on every site
            for kk in range(k - 1, 0, -1):
                cfg = cls.config_cls(**{**options, "groups": 1, "num_templates": kk}, targets=BODY_TARGETS)
                if budget.of_sites(cls, sites, cfg) <= budget.limit:
                    return cfg
        return best

    def delta_weight(self) -> torch.Tensor:
        return (self.coeff @ self.templates).view_as(self.base_layer.weight)

    def file_meta(self) -> dict:
        return {"bank_sha256": self.bank_sha256}

    def check_file_meta(self, meta: dict, path: str) -> None:
        want = meta.get("bank_sha256")
        if want != self.bank_sha256:
            raise PolykwsError(
                f"{path}: site {self.site!r} was trained with recast template bank {str(want)[:12]}…, but this base gives "
                f"bank {self.bank_sha256[:12]}… (pass bank_dir holding the original bank file)"
            )
