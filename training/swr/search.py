"""SWR search: supernet warm-up, policy search under a budget, projection, fine-tune.

Spec (docs/METHOD.md has the full description):
1. Probe the new head on the frozen base; build the supernet (every allowed option at every
   candidate site) and the per-site features (incl. target-language gradient statistics).
2. Warm-up: each step samples one option per site uniformly, so every option's delta learns
   something before the policy has to compare them (otherwise all deltas are 0, every option
   looks like "none", and the cost term alone would collapse the policy to "none").
3. Search: the policy's logits give a straight-through Gumbel-softmax sample per site; loss =
   CE + λ·(E[cost] − B)/B, E[cost] under the policy's softmax; λ ← max(0, λ + η(E[cost] − B)/B)
   after every step (dual ascent); deltas, head and policy train jointly; τ anneals.
4. Selection: argmax per site, then greedy removal of the option with the lowest measured
   utility per parameter until cost ≤ B (utility = loss increase on held training samples when
   that site's delta is switched off). Optionally refill left-over budget greedily.
5. Fine-tune the chosen deltas (warm-started from the supernet) with a fresh DeltaModel; the
   policy and the supernet are dropped.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from polykws.training.deltas import HEAD_SITE, DeltaModel
from polykws.training.swr.config import SWRConfig
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
            if c == 0:
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
            gain = (base_loss - _loss_on(net, {**choices, name: c}, x, y, batch)) / float(net.costs[i, c])
            if gain > 0 and (best is None or gain > best[0]):
                best = (gain, name, c)
        if best is None:
            break
        choices[best[1]] = best[2]
        log.append({"step": "add", "site": best[1], "option": net.options[best[2] - 1].key, "gain_per_param": best[0]})
    return choices, log


def estimated_blob_bytes(dm: DeltaModel) -> int:
    """Estimated body blob bytes of a DeltaModel's delta layers (each family's `blob_bytes`)."""
    return int(sum(type(layer).blob_bytes(layer.base_layer, layer.cfg) for layer in dm.delta_layers().values()))


def run_swr(ctx, cfg: SWRConfig):
    """The registered `swr` method: returns a MethodRun with the fine-tuned DeltaModel."""
    from polykws.training.adapt import MethodRun  # the harness owns the run protocol

    tc = ctx.cfg
    probe = ctx.attach(())
    ctx.probe_head(probe)
    head_params = sum(p.numel() for p in getattr(probe.model, HEAD_SITE).parameters())
    if cfg.budget_bytes is not None:
        # One constraint: estimated body blob bytes; budget_params is not used for selection.
        budget, cost_unit = cfg.budget_bytes, "blob_bytes"
    else:
        budget, cost_unit = cfg.budget_params - (head_params if cfg.budget_includes_head else 0), "params"
    if budget < 0:
        raise PolykwsError(f"budget of {cfg.budget_params} parameters cannot even hold the {head_params}-parameter head")
    net = build_supernet(probe, ctx.base_model, cfg.options, cfg.targets, budget, cost_unit)
    train = ctx.data["train"]
    gen = torch.Generator().manual_seed(tc.seed * 7919 + 11)
    order = torch.randperm(len(train), generator=gen)
    feats = site_features(net, train.x[order], train.y[order], tc.batch_size, cfg.grad_stat_batches)
    policy = SWRPolicy(feats.shape[1], net.mask.shape[1], cfg.policy_hidden, cfg.logit_bound)

    warm_epochs = max(1, round(tc.epochs * cfg.warmup_fraction))
    search_epochs = max(1, round(tc.epochs * cfg.search_fraction))
    finetune_epochs = max(1, round(tc.epochs * cfg.finetune_fraction))
    head = list(getattr(net.dm.model, HEAD_SITE).parameters())
    groups = [(net.delta_parameters(), tc.delta_lr, tc.weight_decay), (head, tc.head_lr, tc.head_weight_decay)]
    trainer = ctx.trainer(net.dm, forward_model=net.dm.model)

    def argmax_choices() -> dict[str, int]:
        with torch.no_grad():
            logits = policy(feats, net.mask)
        return {n: int(logits[i].argmax()) for i, n in enumerate(net.site_names)}

    def eval_gates() -> None:
        net.set_choices(argmax_choices())

    # --- 2. warm-up: uniform option sampling ------------------------------------------------------
    allowed = [[c for c in range(1, net.mask.shape[1]) if net.mask[i, c]] for i in range(len(net.sites))]

    def warm_step(step: int) -> None:
        # "none" is drawn as often as any option, so each delta learns to help in contexts where
        # other sites are unadapted (as the final, budget-limited selection will be).
        choices = {}
        for i, name in enumerate(net.site_names):
            opts = [0] + allowed[i]
            choices[name] = opts[int(torch.randint(len(opts), (1,), generator=gen))]
        net.set_choices(choices)

    trainer.fit(
        groups,
        warm_epochs,
        phase="swr-warmup",
        seed_offset=2,
        before_step=warm_step,
        before_eval=eval_gates,
        extra_loss=lambda step: net.regularization(),
        select_best=False,
    )

    # Options that need a finalize (diff_prune) are projected to their k now: the warm-up was
    # their L0 search phase (Guo et al.), and from here on each option's delta is exactly as
    # sparse as its cost says, so the policy compares options at their true cost.
    net.finalize_options()
    groups = [(net.delta_parameters(), tc.delta_lr, tc.weight_decay), (head, tc.head_lr, tc.head_weight_decay)]

    # --- 3. search: Gumbel straight-through + dual ascent on λ ------------------------------------
    # First-order bilevel (DARTS, Liu et al. 2019): each step the deltas and head take a step on
    # a training batch under an option sample from the policy, then the policy takes a step on
    # a batch of the policy split (validation by default) through straight-through Gumbel
    # gates, with the cost term. Judging options on held-out data keeps the policy from
    # preferring whatever fits the training batches fastest.
    policy_split = ctx.data[cfg.policy_data]
    policy_opt = torch.optim.Adam(policy.parameters(), lr=cfg.policy_lr)
    policy_params = list(policy.parameters())
    state: dict[str, Any] = {"lam": 0.0, "trace": []}
    steps_total = max(1, search_epochs * math.ceil(len(train) / tc.batch_size))

    def tau_at(step: int) -> float:
        return cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** min(1.0, step / steps_total)

    def sample_for_deltas(step: int) -> None:
        with torch.no_grad():
            z, _ = gumbel_straight_through(policy(feats, net.mask), tau_at(step), gen)
        net.set_gates(z)  # hard one-hot without gradient: only the sampled deltas compute

    def policy_step(step: int) -> None:
        idx = torch.randint(len(policy_split), (min(tc.batch_size, len(policy_split)),), generator=gen)
        logits = policy(feats, net.mask)
        z, _ = gumbel_straight_through(logits, tau_at(step), gen)
        net.set_gates(z)
        was = net.dm.training
        net.dm.eval()  # no dropout, deterministic diff_prune gates: the policy sees the deltas as deployed
        task = F.cross_entropy(net.dm(policy_split.x[idx]), policy_split.y[idx])
        net.dm.train(was)
        exp_cost = (torch.softmax(logits, dim=-1) * net.costs).sum()
        loss = task + state["lam"] * (exp_cost - budget) / max(budget, 1)
        grads = torch.autograd.grad(loss, policy_params)
        for p, g in zip(policy_params, grads):
            p.grad = g
        policy_opt.step()
        gap = (float(exp_cost.detach()) - budget) / max(budget, 1)
        lam = state["lam"] + cfg.dual_lr * gap
        state["lam"] = lam if cfg.spend_budget else max(0.0, lam)
        if step % 10 == 0:
            with torch.no_grad():
                p_none = float(torch.softmax(policy(feats, net.mask), dim=-1)[:, 0].mean())
            state["trace"].append((step, round(float(exp_cost.detach()), 1), round(state["lam"], 4), round(p_none, 3)))

    trainer.fit(
        groups,
        search_epochs,
        phase="swr-search",
        seed_offset=3,
        before_step=sample_for_deltas,
        before_eval=eval_gates,
        on_step=policy_step,
        select_best=False,
    )

    # --- 4. selection: argmax, projected to the budget ------------------------------------------
    argmax = argmax_choices()
    with torch.no_grad():
        preference = torch.softmax(policy(feats, net.mask), dim=-1)
    ux, uy = policy_split.x[: cfg.utility_samples], policy_split.y[: cfg.utility_samples]
    chosen, projection_log = project_to_budget(
        net, argmax, budget, ux, uy, tc.eval_batch_size, refill=cfg.refill, preference=preference
    )
    selection = {n: net.options[c - 1].key for n, c in chosen.items() if c}

    # --- 5. fine-tune the chosen deltas in a fresh DeltaModel (no policy, no supernet) ------------
    configs = [net.options[c - 1].config(n) for n, c in chosen.items() if c]
    final: DeltaModel = ctx.attach(configs)
    final_layers = final.delta_layers()
    for name, c in chosen.items():
        if c:
            final_layers[name].set_delta_state(net.sites[name].option_layers[str(c)].get_delta_state())
    getattr(final.model, HEAD_SITE).load_state_dict(getattr(net.dm.model, HEAD_SITE).state_dict())
    if final.needs_finalize:  # only when an option was not finalized in the supernet
        final.finalize()
    if configs:
        ctx.trainer(final, forward_model=final.model).fit(ctx.delta_groups(final), finetune_epochs, phase="swr-finetune", seed_offset=4)
    else:  # nothing fits the budget: the head alone keeps training
        ctx.trainer(final, forward_model=final.model).fit(
            [(list(getattr(final.model, HEAD_SITE).parameters()), tc.head_lr, tc.head_weight_decay)],
            finetune_epochs,
            phase="swr-finetune",
            seed_offset=4,
        )
    cost = final.cost()
    # The selection's estimate, recomputed from the final layers (not from the supernet's matrix).
    est_bytes = estimated_blob_bytes(final)
    # The projection guarantees the bound in the budget's unit; a violation is a bug, never a result.
    if cost_unit == "blob_bytes" and est_bytes > budget:
        raise AssertionError(f"SWR selection is estimated at {est_bytes} body blob bytes, over the budget {budget}")
    if cost_unit == "params" and cost.body > budget:
        raise AssertionError(f"SWR selection costs {cost.body} body parameters, over the budget {budget}")
    details = {
        "budget_body": budget,
        "budget_unit": cost_unit,
        "body_params": cost.body,
        "estimated_body_blob_bytes": est_bytes,
        "selection": selection,
        "argmax_selection": {n: net.options[c - 1].key for n, c in argmax.items() if c},
        "argmax_cost": net.cost_of(argmax),
        "projection": projection_log,
        "lambda_final": state["lam"],
        "expected_cost_trace": state["trace"],
        "epochs": {"warmup": warm_epochs, "search": search_epochs, "finetune": finetune_epochs},
    }
    return MethodRun(final, final, cost, details)
