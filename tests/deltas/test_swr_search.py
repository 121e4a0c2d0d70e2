"""Every SWR search (the default l0, and the ablations greedy, measured, policy, random and
uniform) on the int8 grid: the selection's exact bytes fit the byte budget, the fine-tune moves
no byte the selection did not pay for, and the epochs add up to the same budget as every other
method. Also the config: the default's fields, the ablations' own, and the pointer between them."""

from __future__ import annotations

import pytest

from polykws.training.adapt import adapt
from polykws.training.deltas.blob_bytes import layer_body_bytes
from polykws.training.swr import SWRConfig
from polykws.training.swr.ablations import SEARCHES as ABLATIONS
from polykws.training.swr.config import DEFAULT_SEARCH

from .test_swr import FAST, synthetic_splits

SEARCHES = (DEFAULT_SEARCH, *ABLATIONS)
# The default run covers the default search and two ablations; the rest run under `make test-all`.
FAST_SEARCHES = (DEFAULT_SEARCH, "greedy", "policy")
VARIANTS = [{"search": s} if s in FAST_SEARCHES else pytest.param({"search": s}, marks=pytest.mark.slow) for s in SEARCHES] + [
    {"search": "l0", "l0_pruning": "one_shot"},
    {"search": "greedy", "ablation": {"warmup_none": False}},
    {"search": "greedy", "ablation": {"finetune_positions": "support"}},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()))
def test_each_search_holds_the_byte_budget_and_the_paid_positions(variant, base):
    budget = 1200
    result = adapt(base, synthetic_splits(), SWRConfig(budget_bytes=budget, **variant), FAST)
    search = variant["search"]
    d = result.details
    assert d["search"] == search and d["budget_unit"] == "blob_bytes"
    layers = result.delta_model.delta_layers()
    exact = sum(layer_body_bytes(layer) for layer in layers.values())
    # No tolerance: the trim holds every search's exact bytes to the budget.
    assert exact == d["estimated_body_blob_bytes"] and 0 < exact <= budget, f"{search}: {exact} B for a {budget} B budget"
    for site, layer in layers.items():
        assert layer.grid is not None and layer.grid.paid is not None
        assert not bool((layer.changed_weights() & ~layer.grid.paid).any()), f"{search}: {site} moved an unpaid byte"
    # The selection itself fits (the trim only absorbs the fine-tune's drift in value entropy).
    assert d["selection_cost"] <= budget, f"{search}: selected {d['selection_cost']} B for a {budget} B budget"
    # Compute-matched: the phases' epochs sum to TransferConfig.epochs.
    assert sum(d["epochs"].values()) == FAST.epochs


@pytest.mark.parametrize("warmup_none", [True, False])
def test_the_warm_up_draws_none_only_when_asked(warmup_none, base, monkeypatch):
    from polykws.training.swr.ablations import persite as search
    from polykws.training.swr.ablations.supernet import Supernet

    drawn: list[dict[str, int]] = []
    state = {"warm": True, "eval": False}
    set_choices, eval_gates, finalize = Supernet.set_choices, search._Search.eval_gates, Supernet.finalize_options

    def record(self, choices):
        if state["warm"] and not state["eval"]:
            drawn.append(dict(choices))
        set_choices(self, choices)

    def evaluating(self):
        state["eval"] = True
        eval_gates(self)
        state["eval"] = False

    def warm_up_ends(self):
        state["warm"] = False
        finalize(self)

    monkeypatch.setattr(Supernet, "set_choices", record)
    monkeypatch.setattr(search._Search, "eval_gates", evaluating)
    monkeypatch.setattr(Supernet, "finalize_options", warm_up_ends)
    cfg = SWRConfig(budget_bytes=1200, search="uniform", ablation={"warmup_none": warmup_none})
    adapt(base, synthetic_splits(n_train=256), cfg, FAST)
    nones = sum(v == 0 for c in drawn for v in c.values())
    assert len(drawn) >= 8 and all(len(c) == 9 for c in drawn)
    assert (nones > 0) == warmup_none, f"{nones} 'none' draws in {len(drawn)} warm-up steps with warmup_none={warmup_none}"


@pytest.mark.parametrize("positions", ["moved", "support"])
def test_the_fine_tune_may_move_exactly_the_positions_it_is_given(positions, base, monkeypatch):
    from polykws.training.swr.ablations import persite as search

    seen: dict[str, tuple] = {}
    finetune = search._Search.finetune

    def checked(self, chosen):
        options = {n: self.net.sites[n].option_layers[str(c)] for n, c in chosen.items() if c}
        masks = {n: (o.changed_weights().clone(), (o.delta_weight() != 0).detach().clone()) for n, o in options.items()}
        final = finetune(self, chosen)  # the paid masks are set here; only the trim changes them later
        for n, layer in final.delta_layers().items():
            if layer.grid is not None:
                seen[n] = (*masks[n], layer.grid.paid.clone())
        return final

    monkeypatch.setattr(search._Search, "finetune", checked)
    adapt(base, synthetic_splits(), SWRConfig(budget_bytes=3000, search="greedy", ablation={"finetune_positions": positions}), FAST)
    assert seen
    for site, (moved, nonzero, paid) in seen.items():
        want = moved | nonzero if positions == "support" else moved
        assert bool((paid == want).all()), f"{positions}: {site} may move {int(paid.sum())} positions, expected {int(want.sum())}"
    # The two settings differ: some selected delta is nonzero where it has not moved a byte yet.
    assert any(bool((nonzero & ~moved).any()) for moved, nonzero, _ in seen.values())


@pytest.mark.parametrize("search", ["l0", "greedy"])
def test_a_search_spends_more_of_a_larger_budget(search, base):
    small = adapt(base, synthetic_splits(), SWRConfig(budget_bytes=300, search=search), FAST).details["estimated_body_blob_bytes"]
    large = adapt(base, synthetic_splits(), SWRConfig(budget_bytes=3000, search=search), FAST).details["estimated_body_blob_bytes"]
    assert small <= 300 < large <= 3000


@pytest.mark.parametrize("epochs", [3, 7, 30, 31])
@pytest.mark.parametrize("search", ABLATIONS)
def test_phase_epochs_sum_to_the_method_epochs(epochs, search):
    from polykws.training.swr.ablations.persite import phase_epochs

    cfg = SWRConfig(search=search)
    assert sum(phase_epochs(epochs, search, cfg.ablation).values()) == epochs


def test_budgets_in_params_and_bytes_are_exclusive():
    from polykws.core import ConfigError

    assert SWRConfig().budget_bytes is not None and SWRConfig().budget_params is None  # bytes by default
    with pytest.raises(ConfigError, match="not both"):
        SWRConfig(budget_params=100, budget_bytes=100)


def test_the_default_config_holds_the_default_search_and_a_pointer_to_the_ablations():
    from dataclasses import fields

    assert {f.name for f in fields(SWRConfig)} == {
        "budget_params", "budget_includes_head", "budget_bytes", "targets", "l0_pruning", "search", "ablation"}
    assert SWRConfig().search == "l0" and SWRConfig().ablation is None
    assert SWRConfig(ablation={}) == SWRConfig()  # an empty mapping is no settings


@pytest.mark.parametrize("search", ABLATIONS)
def test_an_ablation_reads_its_settings_as_its_own_config(search):
    from polykws.training.swr.ablations import PerSiteConfig, PolicyConfig, get_search

    want = PolicyConfig if search == "policy" else PerSiteConfig
    assert get_search(search).config_cls is want
    cfg = SWRConfig(search=search, ablation={"warmup_none": False})
    assert type(cfg.ablation) is want and cfg.ablation.warmup_none is False
    assert SWRConfig(search=search).ablation == want()
    assert SWRConfig(search=search, ablation=want(warmup_none=False)) == cfg


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SWRConfig(search="annealing"), "search must be one of"),
        (lambda: SWRConfig(ablation={"warmup_none": False}), "takes none"),  # the default has no ablation settings
        (lambda: SWRConfig(search="greedy", ablation={"finetune_positions": "all"}), "finetune_positions"),
        (lambda: SWRConfig(search="greedy", ablation={"tau_start": 0.5}), "unknown PerSiteConfig fields"),  # a policy setting
        (lambda: SWRConfig(search="greedy", ablation=["warmup_none"]), "mapping"),
        (lambda: SWRConfig(search="policy", ablation={"grad_stat_batches": 0}), "grad_stat_batches"),
        (lambda: SWRConfig.with_families(["scale"], search="l0"), "per-site options"),
        # Ablation settings go under `ablation`; spend_budget and policy_data are no settings of either config.
        (lambda: _method_config(search="greedy", warmup_none=False), "unknown options"),
        (lambda: _method_config(spend_budget=False), "unknown options"),
        (lambda: _method_config(search="policy", ablation={"policy_data": "train"}), "unknown PolicyConfig fields"),
    ],
)
def test_bad_search_settings_raise(make, match):
    from polykws.core import ConfigError

    with pytest.raises(ConfigError, match=match):
        make()


def _method_config(**options):
    from polykws.training.adapt import method_config

    return method_config("swr", **options)


def test_with_families_restricts_a_per_site_search_to_them():
    cfg = SWRConfig.with_families(["scale", "diff_prune"])
    assert cfg.search == "greedy" and {o.family for o in cfg.options} == {"scale", "diff_prune"}
    assert cfg.ablation.options == cfg.options and SWRConfig().options == ()
    assert SWRConfig.with_families(["bias"], search="uniform").search == "uniform"


def test_the_default_search_modules_never_import_the_ablations():
    """The default path (config.py, search.py) names no ablation module: the ablations import it
    and register themselves, so the dependency runs one way."""
    import ast

    from polykws.core import repo_root

    swr = repo_root() / "training" / "swr"
    for path in (swr / "config.py", swr / "search.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            assert not any("ablations" in n for n in names), f"{path.name}:{node.lineno} imports the ablations"


def test_the_measured_search_takes_only_upgrades_that_lower_the_measured_loss(base):
    measured = adapt(base, synthetic_splits(), SWRConfig(budget_bytes=2500, search="measured"), FAST).details["projection"]
    losses = [step["loss"] for step in measured]
    assert len(losses) >= 3 and all(b < a for a, b in zip(losses, losses[1:])), losses
    greedy = adapt(base, synthetic_splits(), SWRConfig(budget_bytes=2500, search="greedy"), FAST).details["projection"]
    assert greedy and all("loss" not in step for step in greedy)


def test_the_one_shot_l0_search_keeping_k_positions_is_diff_prune_at_k(base):
    """Off the grid and pruned in one shot, a parameter budget of k keeps the k largest |ΔW| of
    the one L0 search, as diff_prune(k) does: the two runs share the search, the seeds and the
    fine-tune, so the merged models are the same tensors."""
    import torch

    from polykws.training.adapt import method_config

    tc = FAST.replace(weight_grid="float")
    swr = adapt(base, synthetic_splits(), SWRConfig(budget_params=300, search="l0", l0_pruning="one_shot"), tc)
    dp = adapt(base, synthetic_splits(), method_config("diff_prune", budget_params=300), tc)
    assert swr.details["kept_positions"] == 300 == swr.cost.body == dp.cost.body
    a, b = swr.model.state_dict(), dp.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert swr.test_acc == dp.test_acc


@pytest.mark.parametrize("budget", [150, 600, 2400])
def test_the_l0_prefix_is_the_longest_global_magnitude_prefix_that_fits(budget, base):
    import torch

    from polykws.training.deltas import attach, get_delta
    from polykws.training.swr.search import _candidates, _prefix_bytes, select_prefix

    dm = attach(base, get_delta("diff_prune").config_cls(k=1), head="new", num_classes=10, weight_grid="int8")
    g = torch.Generator().manual_seed(budget)
    with torch.no_grad():
        for layer in dm.delta_layers().values():
            layer.w.copy_(torch.randn(layer.w.shape, generator=g) * layer.grid.step.clamp(max=1.0) * 2)
            layer.log_alpha.copy_(torch.randn(layer.log_alpha.shape, generator=g) * 2)
    chosen, cost = select_prefix(dm, budget, "blob_bytes")
    deltas = {name: d for name, d, _, _ in _candidates(dm)}
    picked = {name: idx for name, (idx, _) in chosen.items()}
    assert cost == _prefix_bytes(dm, picked, deltas) <= budget
    kept = torch.cat([deltas[n][idx].abs() for n, idx in picked.items()])
    moving = {name: idx for name, _, idx, _ in _candidates(dm)}
    dropped = torch.cat([deltas[n][idx[~torch.isin(idx, picked[n])]].abs() for n, idx in moving.items()])
    assert kept.numel() > 0 and dropped.numel() > 0
    assert float(kept.min()) >= float(dropped.max())  # one global ranking by |ΔW|
    # The next position in the ranking would not fit.
    nxt = max(((n, idx[~torch.isin(idx, picked[n])]) for n, idx in moving.items()),
              key=lambda t: float(deltas[t[0]][t[1]].abs().max()) if t[1].numel() else -1.0)
    site, rest = nxt
    top = rest[deltas[site][rest].abs().argmax()]
    grown = {**picked, site: torch.sort(torch.cat([picked[site], top.reshape(1)])).values}
    assert _prefix_bytes(dm, grown, deltas) > budget


def test_gradual_pruning_keeps_the_top_positions_on_schedule_and_never_revives_one(base):
    """Each step keeps exactly the schedule's count of the largest |ΔW| among the positions still
    alive, zeroes the rest of w, and a pruned position stays zero however the optimizer moves it."""
    import torch

    from polykws.training.deltas import attach, get_delta
    from polykws.training.swr.search import GradualPruning

    dm = attach(base, get_delta("diff_prune").config_cls(k=1), head="new", num_classes=10, weight_grid="int8")
    layers = list(dm.delta_layers().values())
    steps, target = 20, 40
    hook = GradualPruning(dm, target, steps)
    counts = [hook.count(s) for s in range(steps)]
    assert counts[0] == hook.total and counts[-1] == target
    assert all(b <= a for a, b in zip(counts, counts[1:])) and len(set(counts)) > 3
    g = torch.Generator().manual_seed(0)
    alive = torch.ones(hook.total, dtype=torch.bool)
    for step in range(steps):
        with torch.no_grad():  # an optimizer step moves every w, pruned or not
            for layer in layers:
                layer.w.add_(torch.randn(layer.w.shape, generator=g) * 0.01)
            before = torch.cat([layer.deterministic_delta().abs().reshape(-1) for layer in layers])
        hook(step)
        after = torch.cat([layer.w.reshape(-1) for layer in layers]) != 0
        mask = torch.cat([m.reshape(-1) for m in hook.masks])
        assert int(mask.sum()) == counts[step] == hook.kept()
        assert not bool((mask & ~alive).any()), f"step {step}: a pruned position came back"
        assert not bool((after & ~mask).any()), f"step {step}: a pruned position is nonzero"
        dropped = alive & ~mask
        if dropped.any():
            assert float(before[mask].min()) >= float(before[dropped].max())
        alive = mask


def test_the_gradual_l0_search_ends_at_the_budgets_count(base):
    from polykws.training.deltas import attach, get_delta
    from polykws.training.swr.search import target_positions

    result = adapt(base, synthetic_splits(), SWRConfig(budget_bytes=900), FAST)
    d = result.details
    assert d["l0_pruning"] == "gradual"
    search_state = attach(base, get_delta("diff_prune").config_cls(k=1), head="new", num_classes=10, weight_grid="int8")
    target = target_positions(search_state, 900, "blob_bytes")
    assert 0 < d["kept_positions"] <= d["pruned_to"] == target
    one_shot = adapt(base, synthetic_splits(), SWRConfig(budget_bytes=900, l0_pruning="one_shot"), FAST).details
    assert one_shot["pruned_to"] is None and one_shot["l0_pruning"] == "one_shot"


def test_l0_pruning_is_validated():
    from polykws.core import ConfigError

    with pytest.raises(ConfigError, match="l0_pruning"):
        SWRConfig(l0_pruning="gradually")
