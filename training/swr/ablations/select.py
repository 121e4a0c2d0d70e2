"""The ablation searches' selection rules: per site, which option (or none) within the budget.

Each takes the warmed-up, priced supernet and returns {site: choice} and a log; costs are in
the supernet's `cost_unit`. Utilities are measured on a shuffled subset of the policy split.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from polykws.training.swr.ablations.supernet import Supernet


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
