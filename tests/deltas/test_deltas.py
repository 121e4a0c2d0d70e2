"""Every registered delta family against the one contract (loops over the registry).

Tolerances: merged vs unmerged outputs agree to atol=1e-5 (float32 on a DS-CNN-S, logits of
magnitude ~1); unmerge restores base weights to atol=1e-6. A delta must also change the outputs
by more than 1e-3, so the agreement checks cannot pass trivially with a zero delta.
"""

from __future__ import annotations

import pytest
import torch

from polykws.training.checkpoint import state_sha256
from polykws.training.deltas import (
    BODY_TARGETS,
    HEAD_SITE,
    DeltaConfig,
    DeltaModel,
    DiffPruneConfig,
    LowRankConfig,
    RecastConfig,
    ScaleConfig,
    attach,
    get_delta,
    list_deltas,
    load_delta,
    read_delta_file,
)
from polykws.training.deltas.recast import fit_bank, get_bank, load_bank, save_bank
from polykws.training.models import ds_cnn_s
from polykws.training.profile import count_params_macs
from polykws.core import ConfigError, PolykwsError

ATOL_MERGE = 1e-5
ATOL_UNMERGE = 1e-6
MIN_EFFECT = 1e-3

FAMILIES = list_deltas()


def test_registry_has_every_family_of_the_spec():
    assert set(FAMILIES) >= {"scale", "bias", "lowrank", "dense", "diff_prune", "recast"}


def family_config(name: str, *, body_only: bool = False) -> DeltaConfig:
    cfg = get_delta(name).config_cls()
    if body_only:
        cfg = cfg.replace(targets=tuple(t for t in cfg.resolved_targets if t != HEAD_SITE))
    return cfg


def perturb(dm: DeltaModel, seed: int = 3, std: float = 0.1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in dm.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def ready(dm: DeltaModel) -> DeltaModel:
    """Perturbed deltas in their deployable state (diff_prune finalized to k nonzeros)."""
    perturb(dm)
    if dm.needs_finalize:
        dm.finalize()
        perturb(dm, seed=4)
    return dm.eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_merged_and_unmerged_outputs_agree(family, base, inputs):
    dm = ready(attach(base, family_config(family)))
    with torch.no_grad():
        y_base = base(inputs)
        y_delta = dm(inputs)
        y_plain = dm.merge_and_unload()(inputs)
    assert (y_delta - y_base).abs().max() > MIN_EFFECT, "the delta did not change the outputs"
    torch.testing.assert_close(y_plain, y_delta, atol=ATOL_MERGE, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_merge_unmerge_in_place(family, base, inputs):
    dm = ready(attach(base, family_config(family)))
    before = {k: v.clone() for k, v in dm.model.state_dict().items()}
    with torch.no_grad():
        y = dm(inputs)
        deltas = {name: layer.delta_weight().clone() for name, layer in dm.delta_layers().items()}
        dm.merge()
        assert all(layer.merged for layer in dm.delta_layers().values())
        torch.testing.assert_close(dm(inputs), y, atol=ATOL_MERGE, rtol=0)
        for layer in dm.delta_layers().values():  # deltas are still computed against W0 while merged
            torch.testing.assert_close(layer.base_weight(), before[f"{layer.site}.base_layer.weight"], atol=ATOL_UNMERGE, rtol=0)
            torch.testing.assert_close(layer.delta_weight(), deltas[layer.site], atol=ATOL_UNMERGE, rtol=0)
        dm.merge()  # idempotent
        torch.testing.assert_close(dm(inputs), y, atol=ATOL_MERGE, rtol=0)
        dm.unmerge()
        torch.testing.assert_close(dm(inputs), y, atol=ATOL_MERGE, rtol=0)
    for key, value in dm.model.state_dict().items():
        torch.testing.assert_close(value, before[key], atol=ATOL_UNMERGE, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_merge_and_unload_is_a_plain_base_with_identical_shapes_and_macs(family, base):
    dm = ready(attach(base, family_config(family)))
    plain = dm.merge_and_unload()
    assert type(plain) is type(base)
    assert not any(type(m).__module__.startswith("polykws.training.deltas") for m in plain.modules())
    base_shapes = {k: tuple(v.shape) for k, v in base.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in plain.state_dict().items()} == base_shapes
    base_profile, plain_profile = count_params_macs(base), count_params_macs(plain)
    assert plain_profile.total_macs == base_profile.total_macs
    assert [(layer.name, layer.macs, layer.params) for layer in plain_profile.layers] == [
        (layer.name, layer.macs, layer.params) for layer in base_profile.layers
    ]
    # The DeltaModel itself is untouched by merge_and_unload.
    assert not any(layer.merged for layer in dm.delta_layers().values())


@pytest.mark.parametrize("family", FAMILIES)
def test_new_language_head_keeps_body_shapes_and_macs(family, base, inputs):
    dm = ready(attach(base, family_config(family, body_only=True), head="new", num_classes=10))
    plain = dm.merge_and_unload()
    reference = ds_cnn_s(num_classes=10)  # the base architecture with the language's class count
    assert {k: tuple(v.shape) for k, v in plain.state_dict().items()} == {
        k: tuple(v.shape) for k, v in reference.state_dict().items()
    }
    assert count_params_macs(plain).total_macs == count_params_macs(reference).total_macs
    with torch.no_grad():
        torch.testing.assert_close(plain(inputs), dm(inputs), atol=ATOL_MERGE, rtol=0)
    assert dm.cost().head == 64 * 10 + 10


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", ["frozen", "new"])
def test_reported_count_equals_trainable_count(family, head, base):
    cfg = family_config(family, body_only=head != "frozen")
    dm = attach(base, cfg, head=head, num_classes=10 if head == "new" else None)
    trainable = sum(p.numel() for p in dm.parameters() if p.requires_grad)
    state = dm.delta_state()
    assert state.num_params == trainable == sum(t.numel() for t in state.tensors.values())
    # Base weights are frozen and never part of the delta state.
    assert not any(".base_layer." in name for name in state.tensors)
    if dm.needs_finalize:
        dm.finalize()
        trainable = sum(p.numel() for p in dm.parameters() if p.requires_grad)
        assert dm.delta_state().num_params == trainable
    # In the deployable state the cost a language pays is exactly what it trains.
    assert dm.cost().total == trainable


# Hand-computed costs on DS-CNN-S (64 channels, conv0 10x4 on 1 input channel, 4 blocks, 12-way head).
# conv0 W: 64x1x10x4 (fan_in 40), dw W: 64x1x3x3 (fan_in 9), pw W: 64x64x1x1, head W: 12x64.
HAND_COSTS = {
    "scale": (ScaleConfig(), 9 * 64, 0),
    "bias": (get_delta("bias").config_cls(), 9 * 64, 0),
    "dense": (get_delta("dense").config_cls(), 64 * 40 + 4 * 64 * 9 + 4 * 64 * 64, 0),
    "lowrank": (LowRankConfig(rank=2), 4 * 2 * (64 + 64), 2 * (12 + 64)),
    "diff_prune": (DiffPruneConfig(k=300), 300, 0),
    # groups=8: block = (64/8)·fan_in >= 8 everywhere, so each of the 9 body sites costs 8·8.
    "recast": (RecastConfig(num_templates=8, groups=8), 9 * 64, 0),
}


def test_hand_costs_cover_every_family():
    assert set(HAND_COSTS) == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_cost_matches_hand_computation(family, base):
    cfg, body, head = HAND_COSTS[family]
    dm = attach(base, cfg)
    assert (dm.cost().body, dm.cost().head) == (body, head)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip(family, base, inputs, tmp_path):
    dm = ready(attach(base, family_config(family, body_only=True), head="new", num_classes=10))
    path = dm.save(tmp_path / f"{family}.delta.pt", labels=[str(i) for i in range(10)], meta={"lang": "uk"})
    payload = read_delta_file(path)
    assert payload["base_sha256"] == state_sha256(base)
    assert payload["format_version"] >= 1 and payload["configs"][0]["family"] == family
    assert payload["cost"]["total"] == dm.cost().total
    loaded = load_delta(path, base).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs), dm(inputs), atol=0, rtol=0)
        torch.testing.assert_close(loaded.merge_and_unload()(inputs), dm.merge_and_unload()(inputs), atol=0, rtol=0)
    a, b = dm.delta_state(), loaded.delta_state()
    assert a.num_params == b.num_params and set(a.tensors) == set(b.tensors)
    for key in a.tensors:
        assert torch.equal(a.tensors[key], b.tensors[key]), key
    assert loaded.cost() == dm.cost()


def test_load_refuses_another_base(base_factory, tmp_path):
    dm = ready(attach(base_factory(seed=0), ScaleConfig()))
    path = dm.save(tmp_path / "scale.delta.pt")
    with pytest.raises(PolykwsError, match="trained on base"):
        load_delta(path, base_factory(seed=1))


def test_load_refuses_corrupt_and_foreign_files(base, tmp_path):
    dm = ready(attach(base, ScaleConfig()))
    path = dm.save(tmp_path / "scale.delta.pt")
    payload = torch.load(path, weights_only=True)
    payload["sites"]["conv0"]["state"]["scale"][0] += 1.0
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(PolykwsError, match="SHA-256"):
        load_delta(tmp_path / "tampered.pt", base)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(PolykwsError, match="version 99"):
        load_delta(tmp_path / "future.pt", base)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(PolykwsError, match="junk.pt"):
        load_delta(tmp_path / "junk.pt", base)
    with pytest.raises(PolykwsError, match="not found"):
        load_delta(tmp_path / "missing.pt", base)


def test_attach_leaves_base_untouched_and_frozen(base, inputs):
    sha = state_sha256(base)
    dm = attach(base, ScaleConfig(), head="new", num_classes=10)
    dm.train()
    loss = dm(inputs).logsumexp(dim=1).mean()
    loss.backward()
    torch.optim.SGD(dm.trainable_parameters(), lr=0.1).step()
    assert state_sha256(base) == sha
    for name, p in dm.named_parameters():
        if ".base_layer." in name or name.startswith("model.bn") or ".bn_" in name:
            assert not p.requires_grad and p.grad is None, name


def test_bn_statistics_stay_frozen_in_train_mode(base, inputs):
    dm = attach(base, ScaleConfig(), head="new", num_classes=10).train()
    stats = {k: v.clone() for k, v in dm.model.state_dict().items() if "running" in k}
    dm(inputs * 3 + 1)
    for k, v in dm.model.state_dict().items():
        if "running" in k:
            assert torch.equal(v, stats[k]), k
    assert dm.model.dropout.training  # dropout still follows train()


@pytest.mark.parametrize(
    "make",
    [
        lambda: LowRankConfig(rank=0),
        lambda: DiffPruneConfig(k=0),
        lambda: DiffPruneConfig(stretch_left=0.5),
        lambda: RecastConfig(groups=0),
        lambda: RecastConfig(num_templates=-1),
        lambda: ScaleConfig(targets="conv0"),
        lambda: ScaleConfig(targets=("",)),
    ],
)
def test_bad_config_values_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()


def test_config_round_trips_through_dict_and_rejects_unknown():
    cfg = LowRankConfig(rank=3, targets=("blocks.*.pw",))
    assert DeltaConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown delta family"):
        DeltaConfig.from_dict({"family": "nope"})
    with pytest.raises(ConfigError, match="unknown fields"):
        DeltaConfig.from_dict({"family": "lowrank", "rnak": 2})


def test_targeting_errors_are_clear(base):
    with pytest.raises(ConfigError, match="matches no delta site"):
        attach(base, ScaleConfig(targets=("blocks.9.pw",)))
    with pytest.raises(ConfigError, match="one delta per site"):
        attach(base, [ScaleConfig(), LowRankConfig()])
    with pytest.raises(ConfigError, match="trained in full"):
        attach(base, LowRankConfig(), head="new", num_classes=10)
    with pytest.raises(ConfigError, match="does not support"):
        attach(base, LowRankConfig(rank=9, targets=("blocks.0.dw",)))  # rank >= fan_in 9


def test_mixed_families_per_site(base, inputs):
    dm = ready(
        attach(base, [ScaleConfig(targets=("conv0",)), LowRankConfig(rank=1, targets=("blocks.3.pw",)), DiffPruneConfig(k=10, targets=("blocks.1.dw",))])
    )
    assert dm.cost().body == 64 + (64 + 64) + 10
    with torch.no_grad():
        torch.testing.assert_close(dm.merge_and_unload()(inputs), dm(inputs), atol=ATOL_MERGE, rtol=0)


# ---- diff_prune specifics -------------------------------------------------------------------


def test_diff_prune_projects_globally_to_exactly_k_and_trains_only_those(base, inputs):
    dm = attach(base, DiffPruneConfig(k=123), head="frozen")
    perturb(dm)
    with torch.no_grad():
        for layer in dm.delta_layers().values():
            layer.log_alpha.fill_(3.0)  # gates open: the projection picks by |w|
    dm.finalize()
    layers = list(dm.delta_layers().values())
    assert sum(layer.values.numel() for layer in layers) == 123
    assert sum(int((layer.delta_weight() != 0).sum()) for layer in layers) == 123
    assert dm.cost().body == 123 == sum(p.numel() for p in dm.trainable_parameters())
    # Global projection: a site holding larger |w| gets more of the k than a uniform split would.
    assert len({layer.values.numel() for layer in layers}) > 1
    dm.train()
    dm(inputs).sum().backward()
    for layer in layers:
        assert layer.values.grad is not None


def test_diff_prune_expected_l0_matches_formula(base):
    cfg = DiffPruneConfig(k=10, targets=("blocks.0.dw",), init_log_alpha=0.3)
    layer = attach(base, cfg).delta_layers()["blocks.0.dw"]
    n = layer.log_alpha.numel()
    # l = -r makes the shift β·log(-l/r) zero, so E[L0] = n·sigmoid(log α).
    assert torch.isclose(layer.expected_l0(), torch.tensor(n * torch.sigmoid(torch.tensor(0.3)).item()))
    assert torch.isclose(layer.regularization(), cfg.l0_weight * layer.expected_l0())


def test_diff_prune_eval_gates_are_deterministic(base, inputs):
    dm = attach(base, DiffPruneConfig(k=50))
    perturb(dm)
    dm.eval()
    with torch.no_grad():
        assert torch.equal(dm(inputs), dm(inputs))


# ---- recast specifics ------------------------------------------------------------------------


def test_recast_bank_reproduces_base_weights_and_is_deterministic(base):
    sha = state_sha256(base)
    # 4 pointwise layers x 8 groups = 32 blocks <= 64 templates: mimicry is exact for the pw shape.
    bank = fit_bank(base, sha, groups=8, num_templates=64)
    assert bank.residual["64x64x1x1"] < 1e-5
    small = fit_bank(base, sha, groups=8, num_templates=4)
    assert 0.0 < small.residual["64x64x1x1"] < 1.0
    again = fit_bank(base, sha, groups=8, num_templates=4)
    assert again.sha256 == small.sha256
    t = small.templates["64x64x1x1"].double()
    gram = t @ t.T
    torch.testing.assert_close(gram / gram.diagonal().mean(), torch.eye(4, dtype=torch.float64), atol=1e-5, rtol=0)


def test_recast_bank_file_round_trip_and_refusals(base, tmp_path, monkeypatch):
    import polykws.training.deltas.recast.bank as bank_module

    monkeypatch.setattr(bank_module, "_MEMORY", {})  # an earlier test may hold this bank in memory: fit and save it here
    sha = state_sha256(base)
    bank = get_bank(base, sha, 4, 4, bank_dir=tmp_path)
    files = list(tmp_path.glob("recast-*.pt"))
    assert len(files) == 1
    assert load_bank(files[0]).sha256 == bank.sha256
    payload = torch.load(files[0], weights_only=True)
    payload["templates"]["64x64x1x1"][0, 0] += 1.0
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(PolykwsError, match="SHA-256"):
        load_bank(tmp_path / "bad.pt")
    save_bank(bank, tmp_path / "copy.pt")
    assert load_bank(tmp_path / "copy.pt").sha256 == bank.sha256


def test_recast_delta_file_refuses_another_bank(base, tmp_path):
    dm = ready(attach(base, RecastConfig(num_templates=4, groups=4)))
    path = dm.save(tmp_path / "r.delta.pt")
    payload = torch.load(path, weights_only=True)
    for record in payload["sites"].values():
        record["meta"]["bank_sha256"] = "0" * 64
    from polykws.training.deltas.model import _payload_sha

    payload["delta_sha256"] = _payload_sha(payload)
    torch.save(payload, tmp_path / "other-bank.pt")
    with pytest.raises(PolykwsError, match="template bank"):
        load_delta(tmp_path / "other-bank.pt", base)


def test_recast_delta_lies_in_the_template_span(base):
    dm = ready(attach(base, RecastConfig(num_templates=3, groups=2, targets=("blocks.2.pw",))))
    layer = dm.delta_layers()["blocks.2.pw"]
    dw = layer.delta_weight().detach().reshape(2, -1)
    t = layer.templates
    proj = dw @ torch.linalg.pinv(t) @ t
    torch.testing.assert_close(proj, dw, atol=1e-5, rtol=1e-4)
    assert layer.cost_params() == 2 * 3 == layer.coeff.numel()
