"""SWR's per-site searches: supernet warm-up, option pricing, search under a budget, fine-tune.

The default search, "l0", is in l0.py; `run_swr` dispatches to it. The per-site searches, step
by step (docs/METHOD.md has the full description):
1. Probe the new head on the frozen base; build the supernet (every allowed option at every
   candidate site) and the per-site features (incl. target-language gradient statistics).
2. Warm-up: each step samples one option per site uniformly, so every option's delta learns
   something before the search compares them; the diff_prune sizes of a site share one L0
   search state, so any k drawn trains it. Then each diff_prune option keeps its top k, and on
   the int8 grid every option is priced by the exact bytes of the int8 changes its warmed-up delta makes.
3. Search (`SWRConfig.search`):
   - "policy": the policy's logits give a straight-through Gumbel-softmax sample per site;
     loss = CE + λ·(E[cost] − B)/B with dual ascent on λ; deltas, head and policy train jointly;
     then argmax per site, greedy removal of the lowest measured utility per unit of cost until
     cost ≤ B, and an optional refill;
   - "greedy": no policy; from nothing, repeatedly the site upgrade with the best first-order
     loss decrease per extra byte that still fits;
   - "measured": the same, but each site's best first-order upgrade is evaluated and the largest
     measured loss decrease per extra byte is taken;
   - "random" and "uniform": the ablations (a random allowed choice per site, projected to B;
     an equal share of B per site).
   Utilities are measured on a shuffled subset of the speaker-disjoint policy split.
4. Fine-tune the chosen deltas (warm-started from the supernet) in a fresh DeltaModel, with
   the int8 positions each option moved at selection as the only ones it may move; the policy
   and the supernet are dropped. If the values' entropy pushed the exact bytes over B, the
   changes nearest to rounding back are dropped until they fit.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from polykws.training.deltas import HEAD_SITE, DeltaModel
from polykws.training.deltas.blob_bytes import layer_body_bytes
from polykws.training.fit import StepHooks
from polykws.training.swr.config import SWRConfig
from polykws.training.swr.l0 import run_l0
from polykws.training.swr.policy import SWRPolicy, gumbel_straight_through
from polykws.training.swr.supernet import Supernet, build_supernet, site_features
from polykws.core import PolykwsError


@torch.no_grad()
def _loss_on(net: Supernet, choices: dict[str, int], x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    net.set_choices(choices)
    net.dm.eval()
    total = 0.0
    for i in range(0, x.shape[0], batch):
        total += float(F.cross_entropy(net.dm(x[i : i + batch]), y[i : i + batch], reduction="sum"))
    return total / x.shape[0]


def project_to_budget(
    net: Supernet,
    choices: dict[str, int],
    budget: int,
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    *,
    refill: bool,
    preference: torch.Tensor | None = None,
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Greedy removal by lowest utility per unit of cost until cost ≤ budget, then optional refill.

    The unit is the supernet's `cost_unit` (parameters, or estimated blob bytes with
    `SWRConfig.budget_bytes`); the log's `*_per_param` keys are in that unit.

    Utility of a selected option = loss increase on (x, y) when its site is switched to "none".
    `preference` (sites, choices), e.g. the policy's probabilities, picks refill candidates.
    """
    choices = dict(choices)
    log: list[dict[str, Any]] = []
    names = net.site_names
    while net.cost_of(choices) > budget:
        base_loss = _loss_on(net, choices, x, y, batch)
        worst = None
        for i, name in enumerate(names):
            c = choices.get(name, 0)
            if c == 0 or float(net.costs[i, c]) <= 0:  # a free option never needs removing
                continue
            loss_without = _loss_on(net, {**choices, name: 0}, x, y, batch)
            per_param = (loss_without - base_loss) / float(net.costs[i, c])
            if worst is None or per_param < worst[0]:
                worst = (per_param, name, c)
        assert worst is not None  # cost > budget >= 0 implies some option is selected
        choices[worst[1]] = 0
        log.append({"step": "remove", "site": worst[1], "option": net.options[worst[2] - 1].key, "utility_per_param": worst[0]})
    while refill:
        # Spend what is left on unadapted sites: per site, only the option the policy prefers
        # most among those that fit is measured (keeps this at <= sites evaluations a round).
        left = budget - net.cost_of(choices)
        base_loss = _loss_on(net, choices, x, y, batch)
        best = None
        for i, name in enumerate(names):
            if choices.get(name, 0) != 0:
                continue
            fits = [c for c in range(1, net.mask.shape[1]) if bool(net.mask[i, c]) and float(net.costs[i, c]) <= left]
            if not fits:
                continue
            c = max(fits, key=lambda c: (float(preference[i, c]) if preference is not None else 0.0, -c))
            gain = (base_loss - _loss_on(net, {**choices, name: c}, x, y, batch)) / max(float(net.costs[i, c]), 1.0)
            if gain > 0 and (best is None or gain > best[0]):
                best = (gain, name, c)
        if best is None:
            break
        choices[best[1]] = best[2]
        log.append({"step": "add", "site": best[1], "option": net.options[best[2] - 1].key, "gain_per_param": best[0]})
    return choices, log


def estimated_blob_bytes(dm: DeltaModel) -> int:
    """Body blob bytes of a DeltaModel's delta layers: exact int8 records on the grid, each
    family's `blob_bytes` estimate otherwise (training/deltas/blob_bytes.py: layer_body_bytes)."""
    return int(sum(layer_body_bytes(layer) for layer in dm.delta_layers().values()))


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


def measure_option_costs(net: Supernet, budget: int) -> None:
    """Price every option by the bytes its warmed-up delta moves (the exact v2 record of its
    int8 changes on the grid); options over the budget on their own leave the choice set."""
    for i, name in enumerate(net.site_names):
        for c, layer in net.sites[name].option_layers.items():
            cost = layer_body_bytes(layer)
            net.costs[i, int(c)] = cost
            net.mask[i, int(c)] = cost <= budget


def _site_grads(net: Supernet, choices: dict[str, int], x: torch.Tensor, y: torch.Tensor, batch: int):
    """∂L/∂W and ∂L/∂b of every site's effective weights under `choices` (mean over x)."""
    net.set_choices(choices)
    net.dm.eval()
    params = []
    for site in net.sites.values():
        params.append(site.base_layer.weight)
        params.append(site.base_layer.bias)
    for p in params:
        p.requires_grad_(True)
    grads = [torch.zeros_like(p) for p in params]
    try:
        for i in range(0, x.shape[0], batch):
            loss = F.cross_entropy(net.dm(x[i : i + batch]), y[i : i + batch], reduction="sum") / x.shape[0]
            for g, gi in zip(grads, torch.autograd.grad(loss, params)):
                g += gi
    finally:
        for p in params:
            p.requires_grad_(False)
    return {n: (grads[2 * k], grads[2 * k + 1]) for k, n in enumerate(net.site_names)}


@torch.no_grad()
def _applied(net: Supernet, name: str, choice: int) -> tuple[torch.Tensor, torch.Tensor]:
    site = net.sites[name]
    w, b = site.base_layer.weight, site.base_layer.bias
    if choice == 0:
        return torch.zeros_like(w), torch.zeros_like(b)
    layer = site.option_layers[str(choice)]
    db = layer.delta_bias()
    return layer.applied_delta_weight(), (torch.zeros_like(b) if db is None else db)


def _site_upgrades(net: Supernet, choices: dict[str, int], applied: dict, grads: dict, budget: int) -> dict[str, tuple[float, int, float]]:
    """Per site, its upgrade (a costlier option, or a first one) that still fits with the largest
    positive first-order gain -⟨∂L/∂W, ΔW_new - ΔW_old⟩ per extra unit of cost:
    {site: (gain per unit, choice, extra cost)}."""
    spent = net.cost_of(choices)
    best: dict[str, tuple[float, int, float]] = {}
    for i, n in enumerate(net.site_names):
        cur = choices[n]
        gw, gb = grads[n]
        w_cur, b_cur = applied[(n, cur)]
        for c in range(1, net.mask.shape[1]):
            if c == cur or not bool(net.mask[i, c]):
                continue
            extra = float(net.costs[i, c] - net.costs[i, cur])
            if extra <= 0 or spent + extra > budget:
                continue
            w_new, b_new = applied[(n, c)]
            with torch.no_grad():
                gain = -float((gw * (w_new - w_cur)).sum() + (gb * (b_new - b_cur)).sum())
            if gain > 0 and (n not in best or gain / extra > best[n][0]):
                best[n] = (gain / extra, c, extra)
    return best


def greedy_select(
    net: Supernet, budget: int, x: torch.Tensor, y: torch.Tensor, batch: int, *, measured: bool = False
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Greedy, no policy network: from nothing, repeatedly take the site upgrade (a site's option
    replaced by a costlier one, or added) with the largest loss decrease per extra unit of cost
    that still fits. The decrease is first-order, -⟨∂L/∂W, ΔW_new - ΔW_old⟩, or with `measured`
    the loss on (x, y) measured with each site's best first-order upgrade applied: the linear
    model then only ranks upgrades within a site, and the measurement compares sites (a linear
    model misjudges deltas many int8 steps large)."""
    names = net.site_names
    choices = {n: 0 for n in names}
    log: list[dict[str, Any]] = []
    applied = {(n, c): _applied(net, n, c) for i, n in enumerate(names) for c in range(net.mask.shape[1]) if bool(net.mask[i, c])}
    loss = _loss_on(net, choices, x, y, batch) if measured else None
    for _ in range(len(names) * net.mask.shape[1]):
        upgrades = _site_upgrades(net, choices, applied, _site_grads(net, choices, x, y, batch), budget)
        best = None
        for n, (rate, c, extra) in upgrades.items():
            new_loss = None
            if measured:
                new_loss = _loss_on(net, {**choices, n: c}, x, y, batch)
                if not new_loss < loss:
                    continue
                rate = (loss - new_loss) / extra
            if best is None or rate > best[0]:
                best = (rate, n, c, new_loss)
        if best is None:
            break
        choices[best[1]] = best[2]
        step = {"step": "add", "site": best[1], "option": net.options[best[2] - 1].key, "gain_per_unit": best[0]}
        if measured:
            loss = step["loss"] = best[3]
        log.append(step)
    return choices, log


def random_select(net: Supernet, budget: int, gen: torch.Generator) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Ablation: a uniformly random allowed option per site, then random sites dropped until the
    selection fits and random options added while any still fits."""
    names = net.site_names
    allowed = [[c for c in range(1, net.mask.shape[1]) if bool(net.mask[i, c])] for i in range(len(names))]
    choices = {n: (opts[int(torch.randint(len(opts), (1,), generator=gen))] if opts else 0) for n, opts in zip(names, allowed)}
    log: list[dict[str, Any]] = []
    while net.cost_of(choices) > budget:
        on = [n for n in names if choices[n]]
        n = on[int(torch.randint(len(on), (1,), generator=gen))]
        log.append({"step": "remove", "site": n, "option": net.options[choices[n] - 1].key})
        choices[n] = 0
    while True:
        left = budget - net.cost_of(choices)
        fits = [(n, c) for i, n in enumerate(names) if not choices[n] for c in allowed[i] if float(net.costs[i, c]) <= left]
        if not fits:
            break
        n, c = fits[int(torch.randint(len(fits), (1,), generator=gen))]
        choices[n] = c
        log.append({"step": "add", "site": n, "option": net.options[c - 1].key})
    return choices, log


def uniform_select(net: Supernet, budget: int) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Ablation: every site gets an equal share of the budget and the costliest option within it."""
    names = net.site_names
    share = budget / max(1, len(names))
    choices: dict[str, int] = {}
    for i, n in enumerate(names):
        fits = [c for c in range(1, net.mask.shape[1]) if bool(net.mask[i, c]) and float(net.costs[i, c]) <= share]
        choices[n] = max(fits, key=lambda c: (float(net.costs[i, c]), -c)) if fits else 0
    return choices, [{"step": "uniform", "share": share}]


def run_swr(ctx, cfg: SWRConfig):
    """The registered `swr` method: returns a MethodRun with the fine-tuned DeltaModel."""
    from polykws.training.adapt import MethodRun  # the harness owns the run protocol

    if cfg.search == "l0":
        return _run_l0(ctx, cfg, MethodRun)
    search = _Search(ctx, cfg)
    search.warm_up()
    if cfg.search == "policy":
        search.search()
    chosen, projection_log = search.select()
    selection_cost = search.net.cost_of(chosen)
    final = search.finetune(chosen)
    trim_log = trim_to_budget(final, search.budget) if search.cost_unit == "blob_bytes" else []
    budget, cost_unit = search.budget, search.cost_unit
    cost, est_bytes = _checked_cost(final, budget, cost_unit)
    net, argmax = search.net, search.argmax
    details = {
        "budget_body": budget,
        "budget_unit": cost_unit,
        "selection_cost": selection_cost,
        "body_params": cost.body,
        "estimated_body_blob_bytes": est_bytes,
        "selection": {n: net.options[c - 1].key for n, c in chosen.items() if c},
        "argmax_selection": {n: net.options[c - 1].key for n, c in argmax.items() if c},
        "argmax_cost": net.cost_of(argmax),
        "search": cfg.search,
        "projection": projection_log,
        "trim": trim_log,
        "lambda_final": search.lam,
        "expected_cost_trace": search.trace,
        "epochs": dict(search.epochs),
    }
    return MethodRun(final, final, cost, details)


def _checked_cost(final: DeltaModel, budget: int, cost_unit: str):
    """The final model's cost and body bytes (its layers' exact int8 records on the grid, not the
    search's estimates). Every search guarantees the bound in the budget's unit; a violation is a
    bug, never a result."""
    cost, est_bytes = final.cost(), estimated_blob_bytes(final)
    if cost_unit == "blob_bytes" and est_bytes > budget:
        raise AssertionError(f"SWR selection is estimated at {est_bytes} body blob bytes, over the budget {budget}")
    if cost_unit == "params" and cost.body > budget:
        raise AssertionError(f"SWR selection costs {cost.body} body parameters, over the budget {budget}")
    return cost, est_bytes


def _run_l0(ctx, cfg: SWRConfig, method_run):
    """The `l0` search (training/swr/l0.py), held to the same budget checks as the others."""
    budget, cost_unit = _body_budget(cfg, _new_head_params(ctx))
    final, details = run_l0(ctx, cfg, budget, cost_unit)
    trim_log = trim_to_budget(final, budget) if cost_unit == "blob_bytes" else []
    cost, est_bytes = _checked_cost(final, budget, cost_unit)
    return method_run(final, final, cost, {
        "budget_body": budget, "budget_unit": cost_unit, "body_params": cost.body, "estimated_body_blob_bytes": est_bytes,
        "search": cfg.search, "trim": trim_log, **details})


def phase_epochs(epochs: int, cfg: SWRConfig) -> dict[str, int]:
    """The run's epochs split over the phases; they sum to `epochs` (the budget every method gets;
    with fewer epochs than phases, each phase still runs one). A search without a policy gives the
    policy's epochs to the fine-tune."""
    total = cfg.warmup_fraction + cfg.search_fraction + cfg.finetune_fraction
    warmup = max(1, round(epochs * cfg.warmup_fraction / total))
    if cfg.search != "policy":
        return {"warmup": warmup, "finetune": max(1, epochs - warmup)}
    search = max(1, round(epochs * cfg.search_fraction / total))
    return {"warmup": warmup, "search": search, "finetune": max(1, epochs - warmup - search)}


def _new_head_params(ctx) -> int:
    """The new language head's parameters, from the base head's shape, so the l0 search need not
    attach a head for it (an attach draws the head's initialization from the global generator,
    which the L0 search's gates share)."""
    base_head = getattr(ctx.base_model, HEAD_SITE)
    return ctx.num_classes * (base_head.in_features + (1 if base_head.bias is not None else 0))


def _body_budget(cfg: SWRConfig, head_params: int) -> tuple[int, str]:
    if cfg.budget_bytes is not None:
        # One constraint: estimated body blob bytes; budget_params is not used for selection.
        return cfg.budget_bytes, "blob_bytes"
    budget = cfg.budget_params - (head_params if cfg.budget_includes_head else 0)
    if budget < 0:
        raise PolykwsError(f"budget of {cfg.budget_params} parameters cannot even hold the {head_params}-parameter head")
    return budget, "params"


class _Search:
    """One SWR run's state across its phases. Every random draw of the search comes from one
    generator (`gen`), in phase order, so a seed fixes the whole run."""

    def __init__(self, ctx, cfg: SWRConfig):
        self.ctx, self.cfg, tc = ctx, cfg, ctx.cfg
        probe = ctx.attach(())
        ctx.probe_head(probe)
        self.budget, self.cost_unit = _body_budget(cfg, _new_head_params(ctx))
        self.net = build_supernet(probe, ctx.base_model, cfg.options, cfg.targets, self.budget, self.cost_unit)
        train = ctx.data["train"]
        self.gen = torch.Generator().manual_seed(tc.seed * 7919 + 11)
        self.order = order = torch.randperm(len(train), generator=self.gen)
        self.feats = site_features(self.net, train.x[order], train.y[order], tc.batch_size, cfg.grad_stat_batches)
        self.policy = SWRPolicy(self.feats.shape[1], self.net.mask.shape[1], cfg.policy_hidden, cfg.logit_bound)
        self.epochs = phase_epochs(tc.epochs, cfg)
        self.policy_split = ctx.data[cfg.policy_data]
        self.lam, self.trace = 0.0, []
        self.argmax: dict[str, int] = {}

    def groups(self):
        tc, head = self.ctx.cfg, list(getattr(self.net.dm.model, HEAD_SITE).parameters())
        return [(self.net.delta_parameters(), tc.delta_lr, tc.weight_decay), (head, tc.head_lr, tc.head_weight_decay)]

    def argmax_choices(self) -> dict[str, int]:
        with torch.no_grad():
            logits = self.policy(self.feats, self.net.mask)
        return {n: int(logits[i].argmax()) for i, n in enumerate(self.net.site_names)}

    def eval_gates(self) -> None:
        self.net.set_choices(self.argmax_choices())

    def warm_up(self) -> None:
        """Uniform option sampling, so every option's delta learns before the policy compares them."""
        net = self.net
        allowed = [[c for c in range(1, net.mask.shape[1]) if net.mask[i, c]] for i in range(len(net.sites))]

        def warm_step(step: int) -> None:
            # By default "none" is drawn as often as any option, so each delta learns to help in
            # contexts where other sites are unadapted (as the final, budget-limited selection
            # will be); without it every site trains every step, as in diff_prune's search.
            choices = {}
            for i, name in enumerate(net.site_names):
                opts = ([0] if self.cfg.warmup_none or not allowed[i] else []) + allowed[i]
                choices[name] = opts[int(torch.randint(len(opts), (1,), generator=self.gen))]
            net.set_choices(choices)

        hooks = StepHooks(before_step=warm_step, before_eval=self.eval_gates, extra_loss=lambda step: net.regularization())
        self.ctx.train(net.dm, self.groups(), self.epochs["warmup"], phase="swr-warmup", seed_offset=2, hooks=hooks, select_best=False)
        # Options that need a finalize (diff_prune) are projected to their k now: the warm-up was
        # their L0 search phase (Guo et al.), and from here on each option's delta is exactly as
        # sparse as its cost says, so the policy compares options at their true cost.
        net.finalize_options()
        if self.cost_unit == "blob_bytes" and self.ctx.cfg.weight_grid == "int8":
            measure_option_costs(net, self.budget)
        if self.cfg.warmup_features:
            train = self.ctx.data["train"]
            self.feats = site_features(net, train.x[self.order], train.y[self.order], self.ctx.cfg.batch_size, self.cfg.grad_stat_batches)

    def tau_at(self, step: int) -> float:
        cfg, tc = self.cfg, self.ctx.cfg
        steps_total = max(1, self.epochs["search"] * math.ceil(len(self.ctx.data["train"]) / tc.batch_size))
        return cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** min(1.0, step / steps_total)

    def search(self) -> None:
        """Gumbel straight-through + dual ascent on λ.

        First-order bilevel (DARTS, Liu et al. 2019): each step the deltas and head take a step on
        a training batch under an option sample from the policy, then the policy takes a step on
        a batch of the policy split (validation by default) through straight-through Gumbel
        gates, with the cost term. Judging options on held-out data keeps the policy from
        preferring whatever fits the training batches fastest.
        """
        net, policy = self.net, self.policy
        policy_opt = torch.optim.Adam(policy.parameters(), lr=self.cfg.policy_lr)

        def sample_for_deltas(step: int) -> None:
            with torch.no_grad():
                z, _ = gumbel_straight_through(policy(self.feats, net.mask), self.tau_at(step), self.gen)
            net.set_gates(z)  # hard one-hot without gradient: only the sampled deltas compute

        hooks = StepHooks(before_step=sample_for_deltas, before_eval=self.eval_gates, on_step=lambda step: self.policy_step(step, policy_opt))
        self.ctx.train(net.dm, self.groups(), self.epochs["search"], phase="swr-search", seed_offset=3, hooks=hooks, select_best=False)

    def policy_step(self, step: int, policy_opt: torch.optim.Optimizer) -> None:
        net, policy, split, budget = self.net, self.policy, self.policy_split, self.budget
        idx = torch.randint(len(split), (min(self.ctx.cfg.batch_size, len(split)),), generator=self.gen)
        logits = policy(self.feats, net.mask)
        z, _ = gumbel_straight_through(logits, self.tau_at(step), self.gen)
        net.set_gates(z)
        was = net.dm.training
        net.dm.eval()  # no dropout, deterministic diff_prune gates: the policy sees the deltas as deployed
        task = F.cross_entropy(net.dm(split.x[idx]), split.y[idx])
        net.dm.train(was)
        exp_cost = (torch.softmax(logits, dim=-1) * net.costs).sum()
        loss = task + self.lam * (exp_cost - budget) / max(budget, 1)
        params = list(policy.parameters())
        for p, g in zip(params, torch.autograd.grad(loss, params)):
            p.grad = g
        policy_opt.step()
        lam = self.lam + self.cfg.dual_lr * (float(exp_cost.detach()) - budget) / max(budget, 1)
        self.lam = lam if self.cfg.spend_budget else max(0.0, lam)
        if step % 10 == 0:
            with torch.no_grad():
                p_none = float(torch.softmax(policy(self.feats, net.mask), dim=-1)[:, 0].mean())
            self.trace.append((step, round(float(exp_cost.detach()), 1), round(self.lam, 4), round(p_none, 3)))

    def select(self) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """The search's choice per site, within the budget."""
        # Utilities are measured on a random subset of the (speaker-disjoint) policy split: the
        # split is stored sorted by class, so its head would be a few classes only.
        split = self.policy_split
        pick = torch.randperm(len(split), generator=self.gen)[: self.cfg.utility_samples]
        ux, uy = split.x[pick], split.y[pick]
        if self.cfg.search in ("greedy", "measured"):
            measured = self.cfg.search == "measured"
            self.argmax, log = greedy_select(self.net, self.budget, ux, uy, self.ctx.cfg.eval_batch_size, measured=measured)
            return self.argmax, log
        if self.cfg.search == "random":
            self.argmax, log = random_select(self.net, self.budget, self.gen)
            return self.argmax, log
        if self.cfg.search == "uniform":
            self.argmax, log = uniform_select(self.net, self.budget)
            return self.argmax, log
        self.argmax = self.argmax_choices()
        with torch.no_grad():
            preference = torch.softmax(self.policy(self.feats, self.net.mask), dim=-1)
        return project_to_budget(
            self.net, self.argmax, self.budget, ux, uy, self.ctx.cfg.eval_batch_size, refill=self.cfg.refill, preference=preference
        )

    def finetune(self, chosen: dict[str, int]) -> DeltaModel:
        """The chosen deltas in a fresh DeltaModel (no policy, no supernet), warm-started."""
        net = self.net
        configs = [net.options[c - 1].config(n) for n, c in chosen.items() if c]
        final: DeltaModel = self.ctx.attach(configs)
        final_layers = final.delta_layers()
        for name, c in chosen.items():
            if c:
                option = net.sites[name].option_layers[str(c)]
                final_layers[name].set_delta_state(option.get_delta_state())
                if final_layers[name].grid is not None:
                    # The fine-tune may change the values but never the positions that were paid for.
                    paid = option.changed_weights()
                    if self.cfg.finetune_positions == "support":
                        with torch.no_grad():
                            paid = paid | (option.delta_weight() != 0)
                    final_layers[name].grid.set_paid(paid)
        getattr(final.model, HEAD_SITE).load_state_dict(getattr(net.dm.model, HEAD_SITE).state_dict())
        if final.needs_finalize:  # only when an option was not finalized in the supernet
            final.finalize()
        # With nothing fitting the budget, the delta group is empty and the head alone trains on.
        self.ctx.train(final, self.ctx.delta_groups(final), self.epochs["finetune"], phase="swr-finetune", seed_offset=4)
        return final
