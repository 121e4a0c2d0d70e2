"""The per-site ablation searches' run: supernet warm-up, option pricing, selection under the
budget, fine-tune (docs/METHOD.md has the full description).

1. Probe the new head on the frozen base; build the supernet (every allowed option at every
   candidate site) and the per-site features (incl. target-language gradient statistics).
2. Warm-up: each step samples one option per site uniformly, so every option's delta learns
   something before the search compares them; the diff_prune sizes of a site share one L0
   search state, so any k drawn trains it. Then each diff_prune option keeps its top k, and on
   the int8 grid every option is priced by the exact bytes of the int8 changes its warmed-up delta makes.
3. Search (`SWRConfig.search`, rules in select.py):
   - "policy": the policy's logits give a straight-through Gumbel-softmax sample per site;
     loss = CE + λ·(E[cost] − B)/B with dual ascent on λ; deltas, head and policy train jointly;
     then argmax per site, greedy removal of the lowest measured utility per unit of cost until
     cost ≤ B, and an optional refill;
   - "greedy": no policy; from nothing, repeatedly the site upgrade with the best first-order
     loss decrease per extra byte that still fits;
   - "measured": the same, but each site's best first-order upgrade is evaluated and the largest
     measured loss decrease per extra byte is taken;
   - "random" and "uniform": a random allowed choice per site, projected to B; an equal share
     of B per site.
   Utilities are measured on a shuffled subset of the speaker-disjoint validation split.
4. Fine-tune the chosen deltas (warm-started from the supernet) in a fresh DeltaModel, with
   the int8 positions each option moved at selection as the only ones it may move; the policy
   and the supernet are dropped. The default search's trim and cost check hold the budget.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from polykws.training.deltas import HEAD_SITE, DeltaModel
from polykws.training.deltas.blob_bytes import layer_body_bytes
from polykws.training.fit import StepHooks
from polykws.training.swr.ablations.config import PerSiteConfig, PolicyConfig
from polykws.training.swr.ablations.policy import SWRPolicy, gumbel_straight_through
from polykws.training.swr.ablations.select import greedy_select, project_to_budget, random_select, uniform_select
from polykws.training.swr.ablations.supernet import Supernet, build_supernet, site_features
from polykws.training.swr.config import SWRConfig
from polykws.training.swr.search import body_budget, checked_cost, new_head_params, trim_to_budget


def run_per_site(ctx, cfg: SWRConfig):
    """An ablation search's run: returns a MethodRun with the fine-tuned DeltaModel."""
    from polykws.training.adapt.registry import MethodRun  # the harness owns the run protocol

    search = _Search(ctx, cfg)
    search.warm_up()
    if cfg.search == "policy":
        search.search()
    chosen, projection_log = search.select()
    selection_cost = search.net.cost_of(chosen)
    final = search.finetune(chosen)
    trim_log = trim_to_budget(final, search.budget) if search.cost_unit == "blob_bytes" else []
    budget, cost_unit = search.budget, search.cost_unit
    cost, est_bytes = checked_cost(final, budget, cost_unit)
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


def measure_option_costs(net: Supernet, budget: int) -> None:
    """Price every option by the bytes its warmed-up delta moves (the exact v2 record of its
    int8 changes on the grid); options over the budget on their own leave the choice set."""
    for i, name in enumerate(net.site_names):
        for c, layer in net.sites[name].option_layers.items():
            cost = layer_body_bytes(layer)
            net.costs[i, int(c)] = cost
            net.mask[i, int(c)] = cost <= budget



def phase_epochs(epochs: int, search: str, settings: PerSiteConfig) -> dict[str, int]:
    """The run's epochs split over the phases; they sum to `epochs` (the budget every method gets;
    with fewer epochs than phases, each phase still runs one). A search without a policy gives the
    policy's epochs to the fine-tune."""
    total = settings.warmup_fraction + settings.search_fraction + settings.finetune_fraction
    warmup = max(1, round(epochs * settings.warmup_fraction / total))
    if search != "policy":
        return {"warmup": warmup, "finetune": max(1, epochs - warmup)}
    search_epochs = max(1, round(epochs * settings.search_fraction / total))
    return {"warmup": warmup, "search": search_epochs, "finetune": max(1, epochs - warmup - search_epochs)}


class _Search:
    """One SWR run's state across its phases. Every random draw of the search comes from one
    generator (`gen`), in phase order, so a seed fixes the whole run."""

    def __init__(self, ctx, cfg: SWRConfig):
        self.ctx, self.cfg, tc = ctx, cfg, ctx.cfg
        self.settings: PerSiteConfig = cfg.ablation
        # A search without a policy still builds the default one: its initialization draws from
        # the global generator, which the warm-up's dropout shares, so each search's runs stay
        # those of docs/BENCHMARKS.md. Untrained, its argmax is "none" at every site, which is
        # what such a search's warm-up evaluates.
        self.policy_cfg = cfg.ablation if isinstance(cfg.ablation, PolicyConfig) else PolicyConfig()
        probe = ctx.attach(())
        ctx.probe_head(probe)
        self.budget, self.cost_unit = body_budget(cfg, new_head_params(ctx))
        self.net = build_supernet(probe, ctx.base_model, self.settings.options, cfg.targets, self.budget, self.cost_unit)
        train = ctx.data["train"]
        self.gen = torch.Generator().manual_seed(tc.seed * 7919 + 11)
        self.order = order = torch.randperm(len(train), generator=self.gen)
        self.feats = site_features(self.net, train.x[order], train.y[order], tc.batch_size, self.policy_cfg.grad_stat_batches)
        self.policy = SWRPolicy(self.feats.shape[1], self.net.mask.shape[1], self.policy_cfg.policy_hidden, self.policy_cfg.logit_bound)
        self.epochs = phase_epochs(tc.epochs, cfg.search, self.settings)
        # The policy learns, and the selection measures utilities, on the validation split
        # (speaker-disjoint from training): options are judged on data they did not fit.
        self.policy_split = ctx.data["val"]
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
                opts = ([0] if self.settings.warmup_none or not allowed[i] else []) + allowed[i]
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
        if self.policy_cfg.warmup_features:
            train = self.ctx.data["train"]
            self.feats = site_features(net, train.x[self.order], train.y[self.order], self.ctx.cfg.batch_size, self.policy_cfg.grad_stat_batches)

    def tau_at(self, step: int) -> float:
        cfg, tc = self.policy_cfg, self.ctx.cfg
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
        policy_opt = torch.optim.Adam(policy.parameters(), lr=self.policy_cfg.policy_lr)

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
        # λ may go negative: the budget is a target the policy is rewarded for spending up to;
        # the projection enforces cost <= budget exactly either way.
        self.lam = self.lam + self.policy_cfg.dual_lr * (float(exp_cost.detach()) - budget) / max(budget, 1)
        if step % 10 == 0:
            with torch.no_grad():
                p_none = float(torch.softmax(policy(self.feats, net.mask), dim=-1)[:, 0].mean())
            self.trace.append((step, round(float(exp_cost.detach()), 1), round(self.lam, 4), round(p_none, 3)))

    def select(self) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """The search's choice per site, within the budget."""
        # Utilities are measured on a random subset of the (speaker-disjoint) policy split: the
        # split is stored sorted by class, so its head would be a few classes only.
        split = self.policy_split
        pick = torch.randperm(len(split), generator=self.gen)[: self.settings.utility_samples]
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
            self.net, self.argmax, self.budget, ux, uy, self.ctx.cfg.eval_batch_size, refill=self.policy_cfg.refill, preference=preference
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
                    if self.settings.finetune_positions == "support":
                        with torch.no_grad():
                            paid = paid | (option.delta_weight() != 0)
                    final_layers[name].grid.set_paid(paid)
        getattr(final.model, HEAD_SITE).load_state_dict(getattr(net.dm.model, HEAD_SITE).state_dict())
        if final.needs_finalize:  # only when an option was not finalized in the supernet
            final.finalize()
        # With nothing fitting the budget, the delta group is empty and the head alone trains on.
        self.ctx.train(final, self.ctx.delta_groups(final), self.epochs["finetune"], phase="swr-finetune", seed_offset=4)
        return final
