"""SWR's `l0` search: one L0 search over every site, pruned gradually to the budget, then the
byte-exact global magnitude prefix.

1. Probe the new head; attach diff_prune's L0 search state (dense diff w, hard-concrete gates)
   on every target site and train it jointly with the head for `TransferConfig.finalize_fraction`
   of the epochs, the schedule, seeds and regularizer of diff_prune's own search phase.
2. With `l0_pruning="gradual"` (the default) the search prunes while it trains: after each
   step the positions outside the top-n |ΔW| (global over the sites) are zeroed for good, and n
   falls from every position to the budget's estimated count along Zhu & Gupta's (2017) cubic
   schedule. The surviving changes then learn to do the work of the pruned ones before the
   search ends; a one-shot projection (`"one_shot"`, diff_prune's rule) instead drops about 97 %
   of the trained changes at once at a 2 KB blob and leaves the recovery to the fine-tune.
3. Rank every position that moves an int8 byte under the deterministic delta w ⊙ E[z] by |ΔW|,
   globally over the sites (diff_prune's projection rule, Guo et al. 2021), and keep the longest
   prefix whose exact v2 record bytes (the blob coder's, per site) fit the budget. Off the int8
   grid the families' shape estimates price the prefix, and with `budget_params` its length is
   the budget.
4. Fine-tune only the kept values and the head for the remaining epochs; if the values' entropy
   pushes the exact bytes over the budget, `trim_to_budget` drops the changes nearest to
   rounding back until they fit.

Where each site's bytes go is decided by one ranking instead of per-site options, so a site's
share is any size, not a rung of a ladder; diff_prune fits k to a shape estimate before it has
trained, this search fits the prefix to the coder's bytes after the search phase.
"""

from __future__ import annotations

from typing import Any

import torch

from polykws.training.deltas import HEAD_SITE, DeltaModel, get_delta
from polykws.training.deltas.blob_bytes import sparse_weight_bytes, tensor_cost
from polykws.training.deltas.diff_prune.layer import top_n_masks
from polykws.training.fit import StepHooks

L0_FAMILY = "diff_prune"
# Gradual pruning's schedule, in fractions of the search phase's steps: dense until the start
# (ΔW starts at zero, so early magnitudes rank nothing), the budget's count from the end on.
PRUNE_START_FRACTION = 0.2
PRUNE_END_FRACTION = 0.8
PRUNE_POWER = 3


class GradualPruning:
    """An `on_step` hook: after each optimizer step, keep the `count(step)` largest |ΔW| of the
    search state over all its sites and zero the rest of w for good (a pruned position stays
    pruned, so the kept set only shrinks)."""

    def __init__(self, dm: DeltaModel, target: int, steps: int):
        self.layers = list(dm.delta_layers().values())
        self.masks = [torch.ones_like(layer.w, dtype=torch.bool) for layer in self.layers]
        self.total = sum(int(m.numel()) for m in self.masks)
        self.target = max(1, min(int(target), self.total))
        self.steps = max(1, int(steps))

    def count(self, step: int) -> int:
        """Positions kept after optimizer step `step` (0-based): every one before the start,
        then the cubic fall to `target`, reached at the end fraction."""
        start, end = PRUNE_START_FRACTION * self.steps, PRUNE_END_FRACTION * self.steps
        if step < start:
            return self.total
        left = 1.0 - min(1.0, (step + 1 - start) / max(1.0, end - start))
        return int(self.target + (self.total - self.target) * left ** PRUNE_POWER)

    @torch.no_grad()
    def __call__(self, step: int) -> None:
        n = self.count(step)
        if n >= self.total:
            return
        # The optimizer has moved pruned w since the last step: the mask keeps them out of the ranking.
        keep = top_n_masks([layer.deterministic_delta().abs() * m for layer, m in zip(self.layers, self.masks)], n)
        for layer, mask, top in zip(self.layers, self.masks, keep):
            mask &= top
            layer.w[~mask] = 0.0

    def kept(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks))


def target_positions(dm: DeltaModel, budget: int, unit: str) -> int:
    """The count gradual pruning ends at: the parameter budget, or the most diff_prune changes
    whose estimated bytes over the search's sites fit the byte budget (the exact prefix of step 3
    then prices what the search kept)."""
    if unit == "params":
        return int(budget)
    family = get_delta(L0_FAMILY)
    modules = [layer.base_layer for layer in dm.delta_layers().values()]
    return family.layer_cls.largest_k_within(modules, budget, lambda k: family.config_cls(k=int(k)))


@torch.no_grad()
def _candidates(dm: DeltaModel) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per site: (name, flat deterministic delta, flat indices of the positions that move an
    int8 byte, or are nonzero off the grid, and their |ΔW| scores)."""
    out = []
    for name, layer in dm.delta_layers().items():
        d = layer.deterministic_delta()
        moves = layer.grid.changed(layer.base_weight(), d) if layer.grid is not None else d != 0
        idx = torch.nonzero(moves.reshape(-1)).reshape(-1)
        out.append((name, d.reshape(-1), idx, d.reshape(-1)[idx].abs()))
    return out


@torch.no_grad()
def _prefix_bytes(dm: DeltaModel, picked: dict[str, torch.Tensor], deltas: dict[str, torch.Tensor]) -> int:
    """Body bytes of keeping `picked[site]` positions of each site's delta: the exact v2 record
    of its int8 changes on the grid, the family's sparse estimate off it."""
    total = 0
    for name, layer in dm.delta_layers().items():
        idx = picked[name]
        if idx.numel() == 0:
            continue
        if layer.grid is None:
            total += sparse_weight_bytes(int(idx.numel()), int(layer.base_layer.weight.numel()))
            continue
        flat = torch.zeros_like(deltas[name])
        flat[idx] = deltas[name][idx]
        q0, q1 = layer.grid.int8_pair(layer.base_weight(), flat.view_as(layer.base_layer.weight))
        total += tensor_cost(q0, q1)
    return int(total)


def select_prefix(dm: DeltaModel, budget: int, unit: str) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], int]:
    """The longest global |ΔW| prefix within `budget` (`unit` "blob_bytes" or "params"):
    {site: (sorted flat indices, their values)} and the prefix's cost in the unit."""
    cands = _candidates(dm)
    deltas = {name: d for name, d, _, _ in cands}
    site_of = torch.cat([torch.full((idx.numel(),), i, dtype=torch.long) for i, (_, _, idx, _) in enumerate(cands)])
    flat_idx = torch.cat([idx for _, _, idx, _ in cands])
    scores = torch.cat([s for _, _, _, s in cands])
    # Stable: equal scores keep site order, then position order, so a seed fixes the selection.
    order = torch.sort(-scores.double(), stable=True).indices

    def picked(n: int) -> dict[str, torch.Tensor]:
        top = order[:n]
        return {name: torch.sort(flat_idx[top][site_of[top] == i]).values for i, (name, _, _, _) in enumerate(cands)}

    if unit == "params":
        n = min(int(budget), int(order.numel()))
        cost = n
    else:
        # Bytes grow with the prefix (every extra position is one more coded change), so the
        # longest prefix that fits is found by bisection on the coder's exact bytes.
        lo, hi = 0, int(order.numel())
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if _prefix_bytes(dm, picked(mid), deltas) <= budget else (lo, mid - 1)
        n, cost = lo, _prefix_bytes(dm, picked(lo), deltas)
    chosen = {name: (idx, deltas[name][idx].clone()) for name, idx in picked(n).items()}
    return chosen, cost


def run_l0(ctx, cfg, budget: int, unit: str) -> tuple[DeltaModel, dict[str, Any]]:
    """Steps 1-4 above; returns the fine-tuned DeltaModel (plain diff_prune layers, fixed) and
    the run's details."""
    tc = ctx.cfg
    family = get_delta(L0_FAMILY)
    # k does not act during the search phase (only the gates and the L0 penalty do); the final
    # model's k is the prefix's length.
    search_cfg = family.config_cls(k=1, targets=cfg.targets)
    dm = ctx.attach(search_cfg)
    ctx.probe_head(dm)
    split = tc.finalize_split()
    epochs = {"warmup": split["search"], "finetune": split["fixed"]}
    pruning = None
    if cfg.l0_pruning == "gradual":
        steps = epochs["warmup"] * tc.steps_per_epoch(len(ctx.data["train"]))
        pruning = GradualPruning(dm, target_positions(dm, budget, unit), steps)
    reg = StepHooks(extra_loss=lambda step: dm.regularization(), on_step=pruning)
    ctx.train(dm, ctx.delta_groups(dm), epochs["warmup"], phase="swr-l0", seed_offset=2, hooks=reg, select_best=False)
    chosen, selection_cost = select_prefix(dm, budget, unit)
    kept = sum(int(idx.numel()) for idx, _ in chosen.values())
    sites = tuple(name for name, (idx, _) in chosen.items() if idx.numel())
    # The final model's fresh head draws from the global generator; restoring it leaves the
    # fine-tune's dropout draws those of diff_prune's fixed phase, so at equal positions the two
    # methods are one run.
    rng = torch.get_rng_state()
    final = ctx.attach(family.config_cls(k=max(1, kept), targets=sites) if sites else ())
    torch.set_rng_state(rng)
    for name, layer in final.delta_layers().items():
        idx, values = chosen[name]
        layer.set_delta_state({"indices": idx, "values": values})
        if layer.grid is not None:
            paid = torch.zeros(layer.base_layer.weight.numel(), dtype=torch.bool)
            paid[idx] = True
            layer.grid.set_paid(paid.view_as(layer.base_layer.weight))
    getattr(final.model, HEAD_SITE).load_state_dict(getattr(dm.model, HEAD_SITE).state_dict())
    # diff_prune's fixed phase: the same seed offset, so the two differ only in which positions they keep.
    ctx.train(final, ctx.delta_groups(final), epochs["finetune"], phase="swr-finetune", seed_offset=3)
    details = {
        "selection": {name: f"diff_prune(k={int(idx.numel())})" for name, (idx, _) in chosen.items() if idx.numel()},
        "selection_cost": selection_cost,
        "kept_positions": kept,
        "l0_pruning": cfg.l0_pruning,
        "pruned_to": None if pruning is None else pruning.kept(),
        "epochs": epochs,
    }
    return final, details
