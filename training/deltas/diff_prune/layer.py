from __future__ import annotations

import math

import torch
from torch import nn

from polykws.training.deltas.base import BODY_TARGETS, DeltaLayer
from polykws.training.deltas.budget import body_sites_deepest_first, make_budget
from polykws.training.deltas.blob_bytes import sparse_weight_bytes
from polykws.core import ConfigError


def top_n_masks(scores: list[torch.Tensor], n: int) -> list[torch.Tensor]:
    """Per tensor of `scores`, the mask of its entries among the `n` largest of all of them
    together. Ties go to the earlier tensor, then the lower flat index, so the choice is
    deterministic."""
    flat = torch.cat([s.reshape(-1) for s in scores])
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.sort(-flat.double(), stable=True).indices[:n]] = True
    return [k.view_as(s) for k, s in zip(keep.split([s.numel() for s in scores]), scores)]


class DiffPruneLayer(DeltaLayer):
    """Two phases.

    - search: parameters `w` (dense diff) and `log_alpha` (gate logits); ΔW = w ⊙ z with a
      sampled hard-concrete z in training and its deterministic median in eval.
    - fixed (after `finalize`): buffer `indices` (flat, sorted) and parameter `values`;
      ΔW is `values` scattered at `indices`. Only these k values are stored and trained.
    """

    needs_finalize = True
    shared_search_state = ("w", "log_alpha")

    def __init__(self, base_layer, cfg, *, site, context):
        super().__init__(base_layer, cfg, site=site, context=context)
        w = base_layer.weight
        self.w = nn.Parameter(torch.zeros_like(w))
        self.log_alpha = nn.Parameter(torch.full_like(w, cfg.init_log_alpha))
        self.fixed = False

    @classmethod
    def cost(cls, module, cfg) -> int:
        # As the only target of its config, a site stores min(k, numel) values.
        return int(min(cfg.k, module.weight.numel()))

    @classmethod
    def blob_bytes(cls, module, cfg) -> int:
        # k changed int8 weights scattered over the tensor: gap-coded positions plus their values.
        return sparse_weight_bytes(int(min(cfg.k, module.weight.numel())), int(module.weight.numel()))

    @classmethod
    def group_blob_bytes(cls, modules: list[nn.Module], cfg) -> int:
        """Estimated bytes of one config's k nonzeros spread over `modules` (k is shared). The
        global magnitude projection spreads them over every site, so each site is priced at its
        share of k in proportion to its size (sparser records cost more per change)."""
        sizes = [int(m.weight.numel()) for m in modules]
        k = min(cfg.k, sum(sizes))
        total, left = 0, k
        for i, (module, size) in enumerate(zip(modules, sizes)):
            share = left if i == len(modules) - 1 else min(left, round(k * size / sum(sizes)))
            if share > 0:
                total += cls.blob_bytes(module, cfg.replace(k=share))
            left -= share
        return total

    @classmethod
    def fit_to_budget(cls, base_model, budget_params=None, budget_bytes=None, **options):
        """k over every body site (global magnitude projection, as in Guo et al.): k = the
        parameter budget, or the largest k whose estimated blob bytes fit the byte budget."""
        budget = make_budget(budget_params, budget_bytes)

        def config(k: int):
            return cls.config_cls(**{**options, "k": int(k)}, targets=BODY_TARGETS)

        if budget.unit == "params":
            return config(budget.limit) if budget.limit >= 1 else None
        k = cls.largest_k_within([m for _, m in body_sites_deepest_first(base_model)], budget.limit, config)
        return config(k) if k >= 1 else None

    @classmethod
    def largest_k_within(cls, modules: list[nn.Module], budget_bytes: int, config) -> int:
        """The largest k whose estimated bytes over `modules` (group_blob_bytes of `config(k)`)
        fit `budget_bytes`; 0 when not even one change fits."""
        lo, hi = 0, sum(int(m.weight.numel()) for m in modules)
        while lo < hi:  # bytes grow with k: the largest k that fits
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if cls.group_blob_bytes(modules, config(mid)) <= budget_bytes else (lo, mid - 1)
        return lo

    def cost_params(self) -> int:
        return int(self.values.numel()) if self.fixed else type(self).cost(self.base_layer, self.cfg)

    @classmethod
    def group_cost(cls, layers: list["DiffPruneLayer"], cfg) -> int:
        if all(layer.fixed for layer in layers):
            return sum(int(layer.values.numel()) for layer in layers)
        return int(min(cfg.k, sum(layer.base_layer.weight.numel() for layer in layers)))

    # ---- gates -------------------------------------------------------------------------------
    def _stretch(self, s: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        return (s * (cfg.stretch_right - cfg.stretch_left) + cfg.stretch_left).clamp(0.0, 1.0)

    def gates(self) -> torch.Tensor:
        if self.training:
            u = torch.rand_like(self.log_alpha).clamp(1e-6, 1.0 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.cfg.temperature)
        else:
            s = torch.sigmoid(self.log_alpha)
        return self._stretch(s)

    def expected_l0(self) -> torch.Tensor:
        cfg = self.cfg
        shift = cfg.temperature * math.log(-cfg.stretch_left / cfg.stretch_right)
        return torch.sigmoid(self.log_alpha - shift).sum()

    def regularization(self) -> torch.Tensor:
        if self.fixed:
            return super().regularization()
        return self.cfg.l0_weight * self.expected_l0()

    def delta_weight(self) -> torch.Tensor:
        if self.fixed:
            flat = self.base_layer.weight.new_zeros(self.base_layer.weight.numel())
            return flat.scatter(0, self.indices, self.values).view_as(self.base_layer.weight)
        return self.w * self.gates()

    # ---- projection to exactly k nonzeros ----------------------------------------------------------
    @torch.no_grad()
    def deterministic_delta(self) -> torch.Tensor:
        """The search-phase ΔW with the gates at their eval-time median: what a projection ranks."""
        return self.w * self._stretch(torch.sigmoid(self.log_alpha))

    def _to_fixed(self, indices: torch.Tensor, values: torch.Tensor) -> None:
        for name in ("w", "log_alpha", "values", "indices"):
            if hasattr(self, name):
                delattr(self, name)
        self.register_buffer("indices", indices.to(torch.long).clone())
        self.values = nn.Parameter(values.detach().clone().to(self.base_layer.weight.dtype))
        self.fixed = True

    @classmethod
    @torch.no_grad()
    def finalize_group(cls, layers: list["DiffPruneLayer"], cfg) -> None:
        """Global magnitude projection: keep the k largest |w ⊙ E[z]| over all sites of the config."""
        if all(layer.fixed for layer in layers):
            return
        if any(layer.fixed for layer in layers):
            raise RuntimeError("diff_prune: some sites of one config are finalized and some are not")
        if any(layer.merged for layer in layers):
            raise RuntimeError("diff_prune: unmerge before finalize()")
        deltas = [layer.deterministic_delta().flatten() for layer in layers]
        for layer, delta, keep in zip(layers, deltas, top_n_masks([d.abs() for d in deltas], cfg.k)):
            mine = torch.nonzero(keep).reshape(-1)
            layer._to_fixed(mine, delta[mine])

    def finalize(self) -> None:
        type(self).finalize_group([self], self.cfg)

    # ---- delta files -------------------------------------------------------------------------
    def set_delta_state(self, state):
        if "indices" in state and (not self.fixed or self.indices.numel() != state["indices"].numel()):
            n = int(state["indices"].numel())
            w = self.base_layer.weight
            self._to_fixed(torch.zeros(n, dtype=torch.long), w.new_zeros(n))
        if "indices" in state:
            idx = state["indices"]
            numel = self.base_layer.weight.numel()
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= numel or not bool((idx[1:] > idx[:-1]).all())):
                raise ConfigError(f"site {self.site!r} (diff_prune): indices must be sorted, unique and within 0..{numel - 1}")
        super().set_delta_state(state)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", fixed" if self.fixed else ", search")
