"""SWR: the final selection never exceeds the budget, the policy never reaches the merged model,
the search is deterministic under a seed, and its pieces (projection, features, sampling) work."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from polykws.training.adapt import AdaptContext, TransferConfig, adapt, prepare_splits
from polykws.training.checkpoint import state_sha256
from polykws.training.deltas import BODY_TARGETS, DeltaLayer, read_delta_file
from polykws.training.swr import SWRConfig
from polykws.training.swr.ablations import DEFAULT_OPTIONS, SEARCHES as ABLATIONS, SWROption
from polykws.training.swr.ablations.policy import SWRPolicy, gumbel_straight_through
from polykws.training.swr.ablations.select import project_to_budget
from polykws.training.swr.ablations.supernet import SWRSite, build_supernet, site_features
from polykws.training.swr.config import DEFAULT_SEARCH
from polykws.core import ConfigError

# The default and every ablation search. The default run covers the default and two ablations
# (greedy: the per-site run; policy: its own config class); the rest run under `make test-all`.
FAST_SEARCHES = (DEFAULT_SEARCH, "greedy", "policy")
SEARCHES = tuple(s if s in FAST_SEARCHES else pytest.param(s, marks=pytest.mark.slow) for s in (DEFAULT_SEARCH, *ABLATIONS))
# Tiny and fast: the budget guarantee and the policy's removal do not depend on accuracy.
FAST = TransferConfig(epochs=3, probe_epochs=2, batch_size=32, seed=0, num_threads=1)


def synthetic_splits(num_classes: int = 10, n_train: int = 96, seed: int = 0) -> dict:
    """Class-dependent patterns plus noise, shaped like 49x10 MFCC features."""
    protos = np.random.default_rng(123).normal(size=(num_classes, 49, 10)).astype(np.float32)
    labels = tuple(f"w{i}" for i in range(num_classes))

    def make(n: int, s: int) -> SimpleNamespace:
        g = np.random.default_rng(seed * 10 + s)
        y = g.integers(0, num_classes, n)
        x = protos[y] * 2.0 + g.normal(size=(n, 49, 10)).astype(np.float32)
        return SimpleNamespace(x=x, y=y, labels=labels)

    return {"train": make(n_train, 1), "val": make(48, 2), "test": make(48, 3)}


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("budget", [100, 500, 2000])
def test_swr_final_cost_is_within_budget(budget, search, base):
    result = adapt(base, synthetic_splits(), SWRConfig(budget_params=budget, search=search), FAST)
    assert result.cost.body <= budget  # no tolerance: every search holds a parameter budget exactly
    assert result.delta_model.cost().body == result.cost.body
    # The cost reported is what a language stores: the deltas' trainable parameters + head.
    assert result.delta_model.delta_state().num_params == result.cost.total
    details = result.details
    if search == "policy" and details["argmax_cost"] > budget:
        assert any(step["step"] == "remove" for step in details["projection"])
    assert set(details["selection"]) <= {name for name, _ in base.named_modules()}


def test_swr_budget_can_include_the_head(base):
    result = adapt(base, synthetic_splits(), SWRConfig(budget_params=1000, budget_includes_head=True), FAST)
    assert result.cost.head == 64 * 10 + 10
    assert result.cost.total <= 1000


def test_policy_is_discarded(base, tmp_path):
    result = adapt(base, synthetic_splits(), SWRConfig(budget_params=2000, search="policy"), FAST)
    merged, dm = result.model, result.delta_model
    assert type(merged) is type(base)
    assert set(merged.state_dict()) == set(base.state_dict())
    for module in (*merged.modules(), *dm.modules()):
        assert not isinstance(module, (SWRPolicy, SWRSite))
    assert not any(isinstance(m, DeltaLayer) for m in merged.modules())
    assert not any("policy" in name or "option_layers" in name for name in dm.state_dict())
    payload = read_delta_file(dm.save(tmp_path / "uk.delta.pt"))
    flat = repr(payload["configs"]) + repr(list(payload["sites"]))
    assert "policy" not in flat and "option_layers" not in flat
    # Every site in the delta file is one of the selection's, with that option's family.
    assert {n: r["family"] for n, r in payload["sites"].items()} == {
        n: key.split("(")[0] for n, key in result.details["selection"].items()
    }


@pytest.mark.parametrize("search", SEARCHES)
def test_swr_is_deterministic_under_a_seed(search, base):
    a = adapt(base, synthetic_splits(), SWRConfig(budget_params=500, search=search), FAST)
    b = adapt(base, synthetic_splits(), SWRConfig(budget_params=500, search=search), FAST)
    assert a.details["selection"] == b.details["selection"]
    assert state_sha256(a.model) == state_sha256(b.model)


def _context(base) -> AdaptContext:
    data, labels = prepare_splits(synthetic_splits(), base)
    return AdaptContext(base, data, labels, FAST, [])


def test_projection_removes_until_within_budget(base):
    ctx = _context(base)
    dm = ctx.attach(())
    net = build_supernet(dm, base, DEFAULT_OPTIONS, BODY_TARGETS, budget=5000)
    # Force the most expensive allowed option everywhere: far over a 300-parameter budget.
    costly = {}
    for i, name in enumerate(net.site_names):
        allowed = [c for c in range(1, net.mask.shape[1]) if net.mask[i, c]]
        costly[name] = max(allowed, key=lambda c: float(net.costs[i, c]))
    assert net.cost_of(costly) > 300
    x, y = ctx.data["train"].x[:64], ctx.data["train"].y[:64]
    chosen, log = project_to_budget(net, costly, 300, x, y, 64, refill=False)
    assert net.cost_of(chosen) <= 300
    assert [s["step"] for s in log] == ["remove"] * len(log) and log
    # Refill removes the same options, then adds back only what fits.
    refilled, log2 = project_to_budget(net, costly, 300, x, y, 64, refill=True)
    assert net.cost_of(refilled) <= 300
    assert log2[: len(log)] == log
    assert {k: v for k, v in refilled.items() if chosen.get(k, 0)} == {k: v for k, v in chosen.items() if v}
    # Freshly built deltas are zero (no option changes the loss, so refill rightly adds nothing);
    # with trained-like deltas, refill from nothing must spend the budget on options that help.
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for site in net.sites.values():
            for p in site.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn(p.shape, generator=g))
    empty = {name: 0 for name in net.site_names}
    grown, log3 = project_to_budget(net, empty, 300, x, y, 64, refill=True)
    assert log3 and all(s["step"] == "add" and s["gain_per_param"] > 0 for s in log3)
    assert 0 < net.cost_of(grown) <= 300
    assert sum(1 for v in grown.values() if v) == len(log3)


def test_options_over_the_budget_are_masked(base):
    dm = _context(base).attach(())
    net = build_supernet(dm, base, DEFAULT_OPTIONS, BODY_TARGETS, budget=100)
    assert bool(net.mask[:, 0].all())  # "none" is always allowed
    assert bool((net.costs[net.mask] <= 100).all())


def test_site_features_are_finite_and_per_site(base):
    ctx = _context(base)
    dm = ctx.attach(())
    net = build_supernet(dm, base, DEFAULT_OPTIONS, BODY_TARGETS, budget=1000)
    feats = site_features(net, ctx.data["train"].x, ctx.data["train"].y, 32, 2)
    assert feats.shape[0] == len(net.site_names) == 9
    assert torch.isfinite(feats).all()
    # The base is unchanged by the gradient statistics pass (weights re-frozen, gates cleared).
    assert all(site.gate is None for site in net.sites.values())
    assert not any(p.requires_grad for site in net.sites.values() for p in site.base_layer.parameters())


def test_gumbel_straight_through_is_one_hot_forward_and_differentiable():
    logits = torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.0, float("-inf")]], requires_grad=True)
    z, soft = gumbel_straight_through(logits, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(z.detach().sum(dim=1), torch.ones(2))
    assert set(z.detach().flatten().tolist()) <= {0.0, 1.0}
    assert float(z[1, 2].detach()) == 0.0  # a masked option is never drawn
    (z * torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad[:, :2]).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda: SWRConfig(budget_params=0),
        lambda: SWRConfig(search="greedy", ablation={"options": ()}),
        lambda: SWRConfig(search="greedy", ablation={"options": ("scale", "scale")}),
        lambda: SWRConfig(search="greedy", ablation={"options": ("nope",)}),
        lambda: SWRConfig(search="policy", ablation={"tau_start": 0.1, "tau_end": 0.5}),
        lambda: SWRConfig(search="uniform", ablation={"warmup_fraction": 0.0}),
        lambda: SWRConfig(search="l0", ablation={"options": ("bias", "scale")}),  # the l0 search has no per-site options
        lambda: SWROption.parse("lowrank:rank"),
        lambda: SWROption.parse("lowrank:rank=0"),
        lambda: SWROption("scale", (("targets", ("conv0",)),)),
    ],
)
def test_bad_swr_config_raises(make):
    with pytest.raises(ConfigError):
        make()


def test_swr_option_parsing():
    assert SWROption.parse("lowrank:rank=4") == SWROption("lowrank", (("rank", 4),))
    assert SWROption.parse({"family": "recast", "groups": 4}).key == "recast(groups=4)"
    assert SWRConfig(search="greedy", ablation={"options": ("scale", "diff_prune:k=32")}).ablation.options[1].config("conv0").k == 32


def test_diff_prune_size_ladder_is_nested(base):
    """Every k of a site trains one shared search state, and each k projects it: a smaller k's
    positions are a subset of a larger k's, with the same values there."""
    dm = _context(base).attach(())
    net = build_supernet(dm, base, DEFAULT_OPTIONS, BODY_TARGETS, budget=10**6)
    g = torch.Generator().manual_seed(0)
    for site in net.sites.values():
        ladder = sorted((l for l in site.option_layers.values() if l.family == "diff_prune"), key=lambda l: l.cfg.k)
        assert len(ladder) >= 2, site.site
        assert all(l.w is ladder[0].w and l.log_alpha is ladder[0].log_alpha for l in ladder)
        with torch.no_grad():
            ladder[0].w.add_(torch.randn(ladder[0].w.shape, generator=g))
            ladder[0].log_alpha.add_(torch.randn(ladder[0].log_alpha.shape, generator=g))
    params = net.delta_parameters()  # what the optimizer gets: each shared tensor once
    assert len(params) == len({id(p) for p in params})
    net.finalize_options()
    for site in net.sites.values():
        ladder = sorted((l for l in site.option_layers.values() if l.family == "diff_prune"), key=lambda l: l.cfg.k)
        for small, large in zip(ladder, ladder[1:]):
            ds, dl = small.delta_weight().flatten(), large.delta_weight().flatten()
            assert small.indices.numel() == min(small.cfg.k, ds.numel())
            assert set(small.indices.tolist()) <= set(large.indices.tolist()), (site.site, small.cfg.k, large.cfg.k)
            assert torch.equal(ds[small.indices], dl[small.indices])
