"""The adaptation harness: every registered method runs through it and returns a plain model of
the base's class with an honest cost; budget fitting never exceeds the budget; caching is exact."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from polykws.training.adapt import (
    TransferConfig,
    adapt,
    fit_family_to_budget,
    get_method,
    list_methods,
    method_config,
)
from polykws.training.checkpoint import state_sha256
from polykws.training.deltas import HEAD_SITE, attach, get_delta, list_deltas
from polykws.training.profile import count_params_macs
from polykws.core import ConfigError, PolykwsError

FAST = TransferConfig(epochs=2, probe_epochs=2, batch_size=32, seed=0, num_threads=1)


def splits(num_classes: int = 10, seed: int = 0) -> dict:
    protos = np.random.default_rng(5).normal(size=(num_classes, 49, 10)).astype(np.float32)
    labels = tuple(f"k{i}" for i in range(num_classes))

    def make(n: int, s: int) -> SimpleNamespace:
        g = np.random.default_rng(seed * 10 + s)
        y = g.integers(0, num_classes, n)
        return SimpleNamespace(x=protos[y] * 2 + g.normal(size=(n, 49, 10)).astype(np.float32), y=y, labels=labels)

    return {"train": make(80, 1), "val": make(40, 2), "test": make(40, 3)}


def test_every_family_and_baseline_is_a_method():
    methods = set(list_methods())
    assert set(list_deltas()) <= methods
    assert {"swr", "full_ft", "head_only", "bn_only", "bias_only", "lora", "scratch"} <= methods


@pytest.mark.parametrize("name", [m for m in list_methods() if m != "swr"])  # swr: tests/deltas/test_swr.py
def test_method_runs_and_reports_an_honest_cost(name, base):
    spec = get_method(name)
    cfg = method_config(name, budget_params=3000 if spec.budgeted else None)
    result = adapt(base, splits(), cfg, FAST)
    model = result.model
    assert type(model) is type(base)
    assert not any(p.requires_grad is False for p in model.parameters())
    assert count_params_macs(model).total_macs == count_params_macs(type(base)(base.spec, 10)).total_macs
    assert result.history
    # The reported accuracy is the returned model's on the test split, recomputed here.
    test = splits()["test"]
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(test.x)[:, None]).argmax(1).numpy()
    assert result.test_acc == pytest.approx(float(np.mean(pred == test.y)), abs=1e-6)  # a float32 mean
    assert result.cost.head == 64 * 10 + 10
    if spec.budgeted:
        assert 0 < result.cost.body <= 3000
    if result.delta_model is not None:
        dm = result.delta_model
        assert dm.cost() == result.cost
        assert dm.delta_state().num_params == result.cost.total
        with torch.no_grad():
            x = torch.as_tensor(splits()["test"].x[:8]).unsqueeze(1)
            torch.testing.assert_close(model(x), dm.eval()(x), atol=1e-5, rtol=0)
    # What changed relative to the base is exactly what the cost says may change.
    changed = sum(
        int((a != b).sum())
        for (k, a), b in zip(model.state_dict().items(), base.state_dict().values())
        if not k.startswith(HEAD_SITE + ".") and "running" not in k and "num_batches" not in k
    )
    if name not in ("full_ft", "scratch"):
        assert changed <= result.cost.body * 64  # scale/recast change whole rows per parameter
    if name == "head_only":
        assert changed == 0


@pytest.mark.parametrize("family", list_deltas())
@pytest.mark.parametrize("budget", [100, 300, 1000, 3000])
def test_family_fitted_to_budget_stays_within_it(family, budget, base):
    cfg = fit_family_to_budget(family, base, budget)
    if cfg is None:  # nothing of this family fits (e.g. dense below one depthwise kernel)
        layer_cls = get_delta(family).layer_cls
        cheapest = min(
            layer_cls.cost(m, get_delta(family).config_cls())
            for n, m in base.named_modules()
            if n and n != HEAD_SITE and isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
            and layer_cls.supports(m, get_delta(family).config_cls())
        )
        assert cheapest > budget
        return
    dm = attach(base, cfg, head="new", num_classes=10)
    assert 0 < dm.cost().body <= budget
    if dm.needs_finalize:
        dm.finalize()
        assert dm.cost().body <= budget


def test_budget_fitting_spends_most_of_a_large_budget(base):
    for family in ("scale", "lowrank", "diff_prune", "recast"):
        dm = attach(base, fit_family_to_budget(family, base, 1000), head="new", num_classes=10)
        assert dm.cost().body >= 500, family


def test_embedding_cache_is_exact_and_only_for_a_frozen_body(base):
    from polykws.training.adapt.train import _body_is_frozen

    dm = attach(base, (), head="new", num_classes=10).eval()
    net = dm.model
    x = torch.randn(5, 1, 49, 10)
    with torch.no_grad():
        embedding = net.forward_head(net.forward_features(x), pre_logits=True)
        torch.testing.assert_close(net.forward_head(embedding), dm(x), atol=0, rtol=0)
    assert _body_is_frozen(dm, net)  # BN stays frozen in train mode: the embedding is cacheable
    late = attach(base, get_delta("scale").config_cls(targets=("blocks.3.pw",)), head="new", num_classes=10)
    assert not _body_is_frozen(late, late.model)
    live_bn = attach(base, (), head="new", num_classes=10, freeze_bn_stats=False)
    assert not _body_is_frozen(live_bn, live_bn.model)


@pytest.mark.parametrize("family", list_deltas())
@pytest.mark.parametrize("budget_bytes", [200, 2000, 20000])
def test_family_fitted_to_a_byte_budget_stays_within_its_estimate(family, budget_bytes, base):
    from polykws.training.swr.search import estimated_blob_bytes

    cfg = fit_family_to_budget(family, base, budget_bytes=budget_bytes)
    if cfg is None:
        return
    dm = attach(base, cfg, head="new", num_classes=10)
    if dm.needs_finalize:
        layers = [layer for _, group in dm.groups() for layer in group]
        assert type(layers[0]).group_blob_bytes([layer.base_layer for layer in layers], cfg) <= budget_bytes
        return
    assert 0 < estimated_blob_bytes(dm) <= budget_bytes


def test_byte_budget_is_spent_by_every_family(base):
    for family in list_deltas():
        assert fit_family_to_budget(family, base, budget_bytes=20000) is not None, family
    with pytest.raises(ConfigError, match="exactly one"):
        fit_family_to_budget("scale", base, 100, budget_bytes=100)


def test_adapt_is_deterministic(base):
    a = adapt(base, splits(), method_config("recast", budget_params=300), FAST)
    b = adapt(base, splits(), method_config("recast", budget_params=300), FAST)
    assert state_sha256(a.model) == state_sha256(b.model) and a.test_acc == b.test_acc


def test_bad_inputs_are_clear_errors(base):
    s = splits()
    with pytest.raises(PolykwsError, match="missing"):
        adapt(base, {"train": s["train"]}, method_config("head_only"), FAST)
    bad = dict(s, val=SimpleNamespace(x=s["val"].x[:, :, :5], y=s["val"].y, labels=s["val"].labels))
    with pytest.raises(PolykwsError, match="base expects"):
        adapt(base, bad, method_config("head_only"), FAST)
    with pytest.raises(ConfigError, match="takes no budget"):
        method_config("full_ft", budget_params=100)
    with pytest.raises(ConfigError, match="unknown method"):
        method_config("nope")
    with pytest.raises(ConfigError):
        TransferConfig(epochs=0)


def test_class_balance_weighs_every_class_alike():
    """With a class 20x the others (a detector's _unknown_), class balance lifts the minority
    recall that plain cross-entropy gives away, and selects on mean per-class recall."""
    import torch
    from torch import nn

    from polykws.training.adapt.config import TransferConfig
    from polykws.training.adapt.data import Split, class_weights, weighted_accuracy
    from polykws.training.adapt.train import train_phase

    y = torch.tensor([0] * 200 + [1] * 10 + [2] * 10)
    np.testing.assert_allclose(class_weights(y, 4).numpy(), [220 / 600, 22 / 3, 22 / 3, 0.0], rtol=1e-6)
    np.testing.assert_allclose(class_weights(y, 4, 0.5).numpy(), np.sqrt([220 / 600, 22 / 3, 22 / 3, 0.0]), rtol=1e-6)
    assert torch.equal(class_weights(y, 4, 0.0)[:3], torch.ones(3))
    # With inverse-frequency weights, the weighted accuracy is the mean per-class recall.
    logits = torch.eye(3)[torch.tensor([0, 0, 0, 1, 0])]
    yy = torch.tensor([0, 0, 0, 1, 1])
    assert abs(weighted_accuracy(logits, yy, class_weights(yy, 3)) - 0.75) < 1e-6

    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])

    def split(n_major: int, n_minor: int) -> Split:
        yy = torch.tensor([0] * n_major + [1] * n_minor + [2] * n_minor)
        return Split(centers[yy] + 0.6 * torch.randn(len(yy), 2, generator=g), yy)

    data = {"train": split(400, 20), "val": split(400, 20)}
    test = split(400, 400)
    recalls = {}
    for balance in (0.0, 1.0):
        torch.manual_seed(0)
        net = nn.Linear(2, 3)
        cfg = TransferConfig(epochs=20, batch_size=32, warmup_steps=1, class_balance=balance)
        train_phase(net, data, cfg, [(list(net.parameters()), 0.05, 0.0)], 20, phase="fit")
        with torch.no_grad():
            pred = net(test.x).argmax(1)
        recalls[balance] = float((pred[test.y > 0] == test.y[test.y > 0]).float().mean())
    assert recalls[1.0] > recalls[0.0] + 0.1, recalls
