"""Byte budgets: the blob-byte estimates are held to the v2 patch coder itself (every delta family),
and SWR with `budget_bytes` selects options whose summed estimate stays within the budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polykws.training.adapt import adapt
from polykws.training.deltas import attach, get_delta, list_deltas
from polykws.training.deltas.blob_bytes import layer_body_bytes, estimate_from_arrays, exact_cost, scale_pair_cost, tensor_cost
from polykws.training.swr import SWRConfig
from polykws.core import ConfigError

from .test_swr import FAST, synthetic_splits

SITES = ("conv0", "blocks.0.dw", "blocks.0.pw")


def _family_names() -> list[str]:
    return [f if isinstance(f, str) else f.name for f in list_deltas()]


def _int8(w: torch.Tensor, scales: np.ndarray) -> np.ndarray:
    """Per-output-channel int8 on the base's scales, as the exporter's frozen policy stores it."""
    q = np.round(w.detach().numpy().reshape(w.shape[0], -1) / scales[:, None])
    return np.clip(q, -127, 127).astype(np.int8)


def _family_delta(family: str, base, site: str, seed: int, rms_fraction: float = 0.02):
    """A random delta of `family` on `site`, scaled to `rms_fraction` of W0's rms (a fine-tuning-sized change)."""
    spec = get_delta(family)
    module = base.get_submodule(site)
    cfg = spec.config_cls(targets=(site,))
    if not spec.layer_cls.supports(module, cfg):
        return None
    dm = attach(base, cfg)
    layer = dm.delta_layers()[site]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    if layer.needs_finalize:  # e.g. diff_prune keeps its k largest gates
        layer.finalize()
    with torch.no_grad():
        w0 = layer.base_layer.weight.detach().clone()
        dw = layer.delta_weight().detach()
        db = layer.delta_bias()
        if dw.abs().max() > 0:
            dw = dw * (rms_fraction * w0.pow(2).mean().sqrt() / dw.pow(2).mean().sqrt())
        db = None if db is None else db.detach()
    return spec, module, cfg, w0, dw, db


def _site_arrays(w0, dw, db, bias0):
    scales = (w0.abs().reshape(w0.shape[0], -1).max(dim=1).values / 127).numpy().astype(np.float64)
    s_in = 1 / 64
    q_b0 = np.round(bias0.detach().numpy() / (s_in * scales)).astype(np.int32)
    q_b1 = q_b0 if db is None else np.round((bias0 + db).detach().numpy() / (s_in * scales)).astype(np.int32)
    return _int8(w0, scales), _int8(w0 + dw, scales), q_b0, q_b1


@pytest.mark.parametrize("family", _family_names())
def test_statistics_estimate_is_within_5_percent_of_the_encoder(family, base):
    """estimate_from_arrays (what the family estimates are built on) against the real v2 coder,
    on each family's own kind of change to real sites of the base model."""
    checked = 0
    for i, site in enumerate(SITES):
        got = _family_delta(family, base, site, seed=i)
        if got is None:
            continue
        _, module, _, w0, dw, db = got
        q0, q1, b0, b1 = _site_arrays(w0, dw, db, module.bias)
        exact = tensor_cost(q0, q1) + tensor_cost(b0, b1)
        est = estimate_from_arrays(q0, q1) + estimate_from_arrays(b0, b1)
        assert exact > 16, f"{family} on {site}: the delta changed almost nothing; the check would be vacuous"
        assert abs(est - exact) <= 0.05 * exact, f"{family} on {site}: estimate {est:.0f} B vs encoder {exact} B"
        checked += 1
    assert checked, f"{family}: no site of {SITES} supported"


@pytest.mark.parametrize("family", _family_names())
def test_family_estimate_tracks_the_encoder(family, base):
    """The shape-only estimate SWR budgets with (typical statistics) stays within 2x of the coder's
    exact bytes for a typical delta of the family: the budget is in the encoder's currency."""
    for i, site in enumerate(SITES):
        # 6 % of W0's rms: int8 changes of a few steps, what exported transfers show (INT8_DELTA_BITS)
        got = _family_delta(family, base, site, seed=10 + i, rms_fraction=0.06)
        if got is None:
            continue
        spec, module, cfg, w0, dw, db = got
        est = spec.layer_cls.blob_bytes(module, cfg)
        assert isinstance(est, int) and est > 0
        if family == "scale":
            # The exporter absorbs a per-channel factor into the scales: the weight scale, the bias
            # scale and the int32 bias of every channel change, the int8 weights do not.
            factor = (1 + dw.reshape(dw.shape[0], -1).norm(dim=1) / w0.reshape(w0.shape[0], -1).norm(dim=1)).numpy()
            s0 = (w0.abs().reshape(w0.shape[0], -1).max(dim=1).values / 127).numpy().astype(np.float32)
            s1 = (s0 * factor).astype(np.float32)
            b0 = np.round(module.bias.detach().numpy() / (s0 / 64)).astype(np.int32)
            b1 = np.round(module.bias.detach().numpy() / (s1 / 64)).astype(np.int32)
            exact = scale_pair_cost(s0, s1, 1 / 64) + tensor_cost(b0, b1)
        else:
            q0, q1, b0, b1 = _site_arrays(w0, dw, db, module.bias)
            exact = tensor_cost(q0, q1) + tensor_cost(b0, b1)
            if family in ("dense", "lowrank", "recast"):  # dense rewrites re-fit their channels' scales
                s0 = (w0.abs().reshape(w0.shape[0], -1).max(dim=1).values / 127).numpy().astype(np.float32)
                s1 = ((w0 + dw).abs().reshape(w0.shape[0], -1).max(dim=1).values / 127).numpy().astype(np.float32)
                exact += scale_pair_cost(s0, s1, 1 / 64)
        assert 0.5 * exact <= est <= 2.0 * exact, f"{family} on {site}: estimate {est} B vs encoder {exact} B"


def test_exact_cost_is_the_blob_stream(tmp_path):
    """exact_cost of two models is the patch stream encode_blob ships (same coder, same regions)."""
    from polykws.export.blob import decode_blob, encode_blob

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, 6000, dtype=np.uint8).tobytes()
    t = bytearray(base)
    for p in rng.choice(6000, 500, replace=False):
        t[p] = (t[p] + int(rng.integers(1, 5))) & 0xFF
    assert exact_cost(base, bytes(t)) == len(decode_blob(encode_blob(base, bytes(t), "lt", ["a"])).stream)


def test_lowrank_on_a_pointwise_conv_costs_the_whole_tensor(base):
    module = base.get_submodule("blocks.0.pw")
    assert tuple(module.weight.shape[:2]) == (64, 64)
    spec = get_delta("lowrank")
    cfg = spec.config_cls(rank=1, targets=("blocks.0.pw",))
    assert spec.layer_cls.cost(module, cfg) == 128
    # 4,096 int8 weights at typical fine-tuning statistics: far more than the 128 parameters suggest
    assert spec.layer_cls.blob_bytes(module, cfg) >= 2000


@pytest.mark.parametrize("budget_bytes", [800, 3000])
def test_swr_byte_budget_bounds_the_selection_estimate(budget_bytes, base):
    result = adapt(base, synthetic_splits(), SWRConfig(budget_bytes=budget_bytes), FAST)
    details = result.details
    assert details["budget_unit"] == "blob_bytes" and details["budget_body"] == budget_bytes
    # The selection's bytes, recomputed from the final layers: exact int8 records on the grid.
    estimate = sum(layer_body_bytes(layer) for _, layers in result.delta_model.groups() for layer in layers)
    assert estimate <= budget_bytes
    assert estimate == details["estimated_body_blob_bytes"]
    assert details["body_params"] == result.cost.body
    assert set(details["selection"]) == {layer.site for _, ls in result.delta_model.groups() for layer in ls}
    if budget_bytes == 3000:
        # Options as small as a few diff_prune bytes fit, and SWR spends.
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
