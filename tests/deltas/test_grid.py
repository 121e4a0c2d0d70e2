"""Deltas on the base's frozen int8 grid: the merged model, quantized as the exporter quantizes it
(BatchNorm folded, the base's per-channel scales), changes exactly the int8 bytes the delta
layer reports, to exactly the values it reports, and no other byte. Every registered family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polykws.export.quantize import quantize_weights, weight_scales
from polykws.training.deltas import attach, get_delta, list_deltas, load_delta
from polykws.training.deltas.grid import Int8Grid

SITES = ("conv0", "blocks.1.dw", "blocks.2.pw")


def _families() -> list[str]:
    return [f if isinstance(f, str) else f.name for f in list_deltas()]


def _folded_int8(model, site: str, scales: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    conv, bn = model.get_submodule(site), model.batchnorm_of(site)
    g = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    w = conv.weight.detach().numpy() * g.reshape(-1, 1, 1, 1)
    scales = weight_scales(w, 0) if scales is None else scales
    return quantize_weights(w, scales, 0)[0], scales


def _randomized(base, family: str, seed: int):
    spec = get_delta(family)
    cfg = spec.config_cls(targets=SITES)
    sites = [s for s in SITES if spec.layer_cls.supports(base.get_submodule(s), cfg)]
    if not sites:
        return None
    dm = attach(base, cfg.replace(targets=tuple(sites)), weight_grid="int8")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in dm.delta_layers().values():
            for p in layer.parameters():
                if p.requires_grad:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    if dm.needs_finalize:
        dm.finalize()
    return dm


@pytest.mark.parametrize("family", _families())
def test_merged_int8_changes_exactly_the_reported_bytes(family, base):
    dm = _randomized(base, family, seed=3)
    if dm is None:
        pytest.skip(f"{family} supports none of {SITES}")
    merged = dm.merge_and_unload()
    moved = 0
    for site, layer in dm.delta_layers().items():
        q0, scales = _folded_int8(base, site)
        q1, _ = _folded_int8(merged, site, scales)
        reported = layer.changed_weights().numpy()
        _, expected = layer.grid.int8_pair(layer.base_weight(), layer.delta_weight().detach())
        assert np.array_equal(q0 != q1, reported), f"{family} on {site}: int8 bytes moved outside the reported positions"
        assert np.array_equal(q1.reshape(-1), expected), f"{family} on {site}: int8 values differ from the grid's"
        moved += int(reported.sum())
    # Families that only move biases move no weight byte; every other one must move some here.
    if any(layer.delta_weight().abs().sum() > 0 for layer in dm.delta_layers().values()):
        assert moved > 0, f"{family}: a random delta of 5 % moved no int8 byte; the check would be vacuous"


@pytest.mark.parametrize("family", _families())
def test_a_zero_delta_leaves_every_weight_bit_identical(family, base):
    spec = get_delta(family)
    cfg = spec.config_cls(targets=SITES)
    sites = tuple(s for s in SITES if spec.layer_cls.supports(base.get_submodule(s), cfg))
    if not sites:
        pytest.skip(f"{family} supports none of {SITES}")
    dm = attach(base, cfg.replace(targets=sites), weight_grid="int8")
    if dm.needs_finalize:
        dm.finalize()
    merged = dm.merge_and_unload()
    for site in sites:
        assert torch.equal(merged.get_submodule(site).weight, base.get_submodule(site).weight), f"{family} on {site}"


def test_a_whole_step_moves_one_byte_and_nothing_else(base):
    w0 = base.get_submodule("blocks.2.pw").weight.detach()
    grid = Int8Grid(w0, None)
    assert not grid.changed(w0, torch.zeros_like(w0)).any()
    one = torch.zeros_like(w0)
    one[3, 5] = grid.step[3, 5]
    assert int(grid.changed(w0, one).sum()) == 1
    applied = grid.project(w0, one)
    assert torch.allclose(applied[3, 5], grid.step[3, 5].float()) and int((applied != 0).sum()) == 1


def test_paid_mask_bounds_the_change_and_the_gradient_passes_straight_through(base):
    w0 = base.get_submodule("blocks.2.pw").weight.detach()
    grid = Int8Grid(w0, None)
    paid = torch.zeros_like(w0, dtype=torch.bool)
    paid[0] = True
    grid.set_paid(paid)
    dw = (torch.ones_like(w0) * 3 * grid.step).requires_grad_(True)
    applied = grid.project(w0, dw)
    assert bool((applied[1:] == 0).all()) and bool((applied[0] != 0).any())
    applied.sum().backward()
    assert torch.equal(dw.grad, paid.to(dw.dtype))  # identity on paid positions, zero elsewhere


def test_delta_file_keeps_the_grid_and_the_paid_positions(tmp_path, base):
    dm = _randomized(base, "lowrank", seed=5)
    layer = dm.delta_layers()["blocks.2.pw"]
    layer.grid.set_paid(layer.changed_weights() & (torch.rand(layer.base_weight().shape, generator=torch.Generator().manual_seed(1)) < 0.5))
    path = dm.save(tmp_path / "x.delta.pt")
    again = load_delta(path, base)
    assert again.weight_grid == "int8"
    assert torch.equal(again.delta_layers()["blocks.2.pw"].grid.paid, layer.grid.paid)
    for a, b in zip(dm.merge_and_unload().parameters(), again.merge_and_unload().parameters()):
        assert torch.equal(a, b)
