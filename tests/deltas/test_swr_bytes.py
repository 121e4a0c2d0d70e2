"""Byte budgets: each family's blob-byte estimate covers the int8 bytes its delta can move, and
SWR with `budget_bytes` selects options whose summed estimate stays within the budget."""

from __future__ import annotations

import pytest
import torch

from polykws.training.adapt import adapt
from polykws.training.deltas import attach, get_delta, list_deltas
from polykws.training.deltas.blob_bytes import CHANNEL_REQUANT_BYTES, INT8_WEIGHT_BYTES, INT32_BIAS_BYTES
from polykws.training.swr import SWRConfig
from polykws.core import ConfigError

from .test_swr import FAST, synthetic_splits

SITES = ("conv0", "blocks.0.dw", "blocks.0.pw")


def _family_names() -> list[str]:
    return [f if isinstance(f, str) else f.name for f in list_deltas()]


def _moved_bytes(w0: torch.Tensor, dw: torch.Tensor, db: torch.Tensor | None) -> int:
    """Blob bytes a delta necessarily moves, judged from the delta itself: an output channel whose
    ΔW is a multiple of its W0 row can be absorbed into the channel's scale (weight scale, bias
    scale and int32 bias change); any other channel moves one int8 byte per changed weight."""
    moved = 0
    for r in range(w0.shape[0]):
        row, d = w0[r].flatten(), dw[r].flatten()
        if not bool(d.ne(0).any()):
            continue
        c = float(d @ row) / float(row @ row)
        if torch.allclose(d, c * row, rtol=1e-4, atol=1e-7):
            moved += CHANNEL_REQUANT_BYTES
        else:
            moved += int(d.ne(0).sum()) * INT8_WEIGHT_BYTES
    if db is not None:
        moved += int(db.ne(0).sum()) * INT32_BIAS_BYTES
    return moved


@pytest.mark.parametrize("family", _family_names())
def test_blob_bytes_estimate_covers_the_bytes_a_delta_moves(family, base):
    spec = get_delta(family)
    g = torch.Generator().manual_seed(0)
    checked = 0
    for site in SITES:
        module = base.get_submodule(site)
        cfg = spec.config_cls(targets=(site,))
        if not spec.layer_cls.supports(module, cfg):
            continue
        est = spec.layer_cls.blob_bytes(module, cfg)
        assert isinstance(est, int) and est > 0
        dm = attach(base, cfg)
        layer = dm.delta_layers()[site]
        if layer.needs_finalize:
            layer.finalize()
        with torch.no_grad():  # a generic non-zero delta: every trainable tensor random
            for p in layer.parameters():
                if p.requires_grad:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            moved = _moved_bytes(layer.base_layer.weight, layer.delta_weight(), layer.delta_bias())
        assert moved > 0, f"{family} on {site}: the random delta moved nothing; the check would be vacuous"
        assert est >= moved, f"{family} on {site}: estimate {est} B < {moved} B the delta moves"
        checked += 1
    assert checked, f"{family}: no site of {SITES} supported"


def test_lowrank_on_a_pointwise_conv_costs_the_whole_tensor(base):
    module = base.get_submodule("blocks.0.pw")
    assert tuple(module.weight.shape[:2]) == (64, 64)
    spec = get_delta("lowrank")
    cfg = spec.config_cls(rank=1, targets=("blocks.0.pw",))
    assert spec.layer_cls.cost(module, cfg) == 128
    assert spec.layer_cls.blob_bytes(module, cfg) >= 4096


@pytest.mark.parametrize("budget_bytes", [800, 3000])
def test_swr_byte_budget_bounds_the_selection_estimate(budget_bytes, base):
    # budget_params=1 would forbid every option if it still constrained the selection.
    result = adapt(base, synthetic_splits(), SWRConfig(budget_params=1, budget_bytes=budget_bytes), FAST)
    details = result.details
    assert details["budget_unit"] == "blob_bytes" and details["budget_body"] == budget_bytes
    # The selection's estimate from the chosen configs on the base's own modules.
    estimate = 0
    for cfg, layers in result.delta_model.groups():
        layer_cls = get_delta(cfg.family).layer_cls
        for layer in layers:
            estimate += layer_cls.blob_bytes(base.get_submodule(layer.site), cfg)
    assert estimate <= budget_bytes
    assert estimate == details["estimated_body_blob_bytes"]
    assert details["body_params"] == result.cost.body
    assert set(details["selection"]) == {layer.site for _, ls in result.delta_model.groups() for layer in ls}
    if budget_bytes == 3000:
        # At least one default option (scale: 792 B on a 64-channel site) fits, and SWR spends.
        assert details["selection"] and estimate > 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: SWRConfig(budget_bytes=0),
        lambda: SWRConfig(budget_bytes=-5),
        lambda: SWRConfig(budget_bytes=1.5),
        lambda: SWRConfig(budget_bytes=1000, budget_includes_head=True),
    ],
)
def test_bad_byte_budget_raises(make):
    with pytest.raises(ConfigError):
        make()
