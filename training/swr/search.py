"""SWR's default search, top to bottom: one L0 search over every site, pruned gradually to the
budget, the byte-exact global magnitude prefix, a fine-tune of the paid positions, a trim.

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
4. Fine-tune only the kept values and the head for the remaining epochs, with each site's paid
   mask the kept positions.
5. If the values' entropy pushes the exact bytes over the budget, `trim_to_budget` drops the
   changes nearest to rounding back until they fit; the final bytes are checked against it.

Where each site's bytes go is decided by one ranking instead of per-site options, so a site's
share is any size, not a rung of a ladder; diff_prune fits k to a shape estimate before it has
trained, this search fits the prefix to the coder's bytes after the search phase.

The ablation searches (per-site options: greedy, measured, policy, random, uniform) are in
training/swr/ablations/; `run_swr` hands a config that names one to it, and this module never
imports it. They share this module's budget, trim and cost check.
"""

from __future__ import annotations

from typing import Any

import torch

from polykws.core import PolykwsError
from polykws.training.deltas import HEAD_SITE, DeltaModel, get_delta
from polykws.training.deltas.blob_bytes import layer_body_bytes, sparse_weight_bytes, tensor_cost
from polykws.training.deltas.diff_prune.layer import top_n_masks
from polykws.training.fit import StepHooks
from polykws.training.swr.config import DEFAULT_SEARCH, SWRConfig, ablation_search

L0_FAMILY = "diff_prune"
# Gradual pruning's schedule, in fractions of the search phase's steps: dense until the start
# (ΔW starts at zero, so early magnitudes rank nothing), the budget's count from the end on.
PRUNE_START_FRACTION = 0.2
PRUNE_END_FRACTION = 0.8
PRUNE_POWER = 3


def run_swr(ctx, cfg: SWRConfig):
    """The registered `swr` method: steps 1-5 above; returns a MethodRun with the fine-tuned
    DeltaModel (plain diff_prune layers, fixed)."""
    from polykws.training.adapt.registry import MethodRun  # the harness owns the run protocol

    if cfg.search != DEFAULT_SEARCH:
        return ablation_search(cfg.search).run(ctx, cfg)
    budget, unit = body_budget(cfg, new_head_params(ctx))
    split = ctx.cfg.finalize_split()
    epochs = {"warmup": split["search"], "finetune": split["fixed"]}
    # 1-2. The L0 search over every site, pruned to the budget while it trains.
    dm, pruning = search_l0(ctx, cfg, budget, unit, epochs["warmup"])
    # 3. The byte-exact global prefix.
    chosen, selection_cost = select_prefix(dm, budget, unit)
    # 4. The fine-tune of the kept positions.
    final = finetune_prefix(ctx, dm, chosen, epochs["finetune"])
    # 5. The trim and the final check.
    trim_log = trim_to_budget(final, budget) if unit == "blob_bytes" else []
    cost, est_bytes = checked_cost(final, budget, unit)
    kept = sum(int(idx.numel()) for idx, _ in chosen.values())
    return MethodRun(final, final, cost, {
        "budget_body": budget, "budget_unit": unit, "body_params": cost.body, "estimated_body_blob_bytes": est_bytes,
        "search": cfg.search, "trim": trim_log,
        "selection": {name: f"diff_prune(k={int(idx.numel())})" for name, (idx, _) in chosen.items() if idx.numel()},
        "selection_cost": selection_cost,
        "kept_positions": kept,
        "l0_pruning": cfg.l0_pruning,
        "pruned_to": None if pruning is None else pruning.kept(),
        "epochs": epochs,
    })


# --- the budget ----------------------------------------------------------------------------------
def new_head_params(ctx) -> int:
    """The new language head's parameters, from the base head's shape, so the search need not
    attach a head for it (an attach draws the head's initialization from the global generator,
    which the L0 search's gates share)."""
    base_head = getattr(ctx.base_model, HEAD_SITE)
    return ctx.num_classes * (base_head.in_features + (1 if base_head.bias is not None else 0))


def body_budget(cfg: SWRConfig, head_params: int) -> tuple[int, str]:
    """The body's budget and its unit: ("blob_bytes") or ("params", less the head when it is paid for)."""
    if cfg.budget_bytes is not None:
        # One constraint: estimated body blob bytes; budget_params is not used for selection.
        return cfg.budget_bytes, "blob_bytes"
    budget = cfg.budget_params - (head_params if cfg.budget_includes_head else 0)
    if budget < 0:
        raise PolykwsError(f"budget of {cfg.budget_params} parameters cannot even hold the {head_params}-parameter head")
    return budget, "params"


# --- steps 1-2: the L0 search, pruned gradually -------------------------------------------------
def search_l0(ctx, cfg: SWRConfig, budget: int, unit: str, epochs: int) -> tuple[DeltaModel, "GradualPruning | None"]:
    """Diff_prune's search phase on every target site, with gradual pruning unless one-shot."""
    family = get_delta(L0_FAMILY)
    # k does not act during the search phase (only the gates and the L0 penalty do); the final
    # model's k is the prefix's length.
    dm = ctx.attach(family.config_cls(k=1, targets=cfg.targets))
    ctx.probe_head(dm)
    pruning = None
    if cfg.l0_pruning == "gradual":
        steps = epochs * ctx.cfg.steps_per_epoch(len(ctx.data["train"]))
        pruning = GradualPruning(dm, target_positions(dm, budget, unit), steps)
    reg = StepHooks(extra_loss=lambda step: dm.regularization(), on_step=pruning)
    ctx.train(dm, ctx.delta_groups(dm), epochs, phase="swr-l0", seed_offset=2, hooks=reg, select_best=False)
    return dm, pruning


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


# --- step 3: the byte-exact prefix ---------------------------------------------------------------
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


# --- step 4: the fine-tune of the paid positions -------------------------------------------------
def finetune_prefix(ctx, dm: DeltaModel, chosen: dict[str, tuple[torch.Tensor, torch.Tensor]], epochs: int) -> DeltaModel:
    """The kept values in a fresh DeltaModel of plain diff_prune layers, each site's paid mask
    its kept positions, trained with the search's head for `epochs`."""
    family = get_delta(L0_FAMILY)
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
    ctx.train(final, ctx.delta_groups(final), epochs, phase="swr-finetune", seed_offset=3)
    return final


# --- step 5: the trim and the check --------------------------------------------------------------
@torch.no_grad()
def trim_to_budget(dm: DeltaModel, budget: int) -> list[dict[str, Any]]:
    """Hold the byte budget after fine-tuning on the grid: the paid positions are fixed, but the
    values' entropy can drift. While over budget, the costliest site drops the tenth of its
    changes that sit nearest to rounding back to the base byte."""
    log: list[dict[str, Any]] = []
    layers = dm.delta_layers()
    # Per-site bytes, re-coded only for the site a step trims (every other site stays as it was).
    cost = {n: layer_body_bytes(layer) for n, layer in layers.items()}
    while sum(cost.values()) > budget:
        movers = [n for n, layer in layers.items() if layer.grid is not None and bool(layer.changed_weights().any())]
        if not movers:
            break
        name = max(movers, key=cost.__getitem__)
        layer = layers[name]
        w0, dw = layer.base_weight(), layer.delta_weight()
        changed = layer.grid.changed(w0, dw)
        margin = ((w0 + dw).double() / layer.grid.step - layer.grid.q0).abs()
        margin = torch.where(changed, margin, torch.full_like(margin, float("inf")))
        drop = max(1, int(changed.sum()) // 10)
        keep = changed.clone().reshape(-1)
        keep[torch.topk(margin.reshape(-1), drop, largest=False).indices] = False
        layer.grid.set_paid(keep.reshape(changed.shape))
        if int(layer.changed_weights().sum()) >= int(changed.sum()):
            raise AssertionError(f"trim_to_budget: dropping paid positions at {name} did not reduce its changes")
        cost[name] = layer_body_bytes(layer)
        log.append({"site": name, "dropped_int8_changes": drop, "body_bytes": sum(cost.values())})
    return log


def estimated_blob_bytes(dm: DeltaModel) -> int:
    """Body blob bytes of a DeltaModel's delta layers: exact int8 records on the grid, each
    family's `blob_bytes` estimate otherwise (training/deltas/blob_bytes.py: layer_body_bytes)."""
    return int(sum(layer_body_bytes(layer) for layer in dm.delta_layers().values()))


def checked_cost(final: DeltaModel, budget: int, unit: str):
    """The final model's cost and body bytes (its layers' exact int8 records on the grid, not the
    search's estimates). Every search guarantees the bound in the budget's unit; a violation is a
    bug, never a result."""
    cost, est_bytes = final.cost(), estimated_blob_bytes(final)
    if unit == "blob_bytes" and est_bytes > budget:
        raise AssertionError(f"SWR selection is estimated at {est_bytes} body blob bytes, over the budget {budget}")
    if unit == "params" and cost.body > budget:
        raise AssertionError(f"SWR selection costs {cost.body} body parameters, over the budget {budget}")
    return cost, est_bytes
