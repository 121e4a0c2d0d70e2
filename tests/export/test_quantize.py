"""The requantizer reproduces the TFLite converter's int8 arithmetic exactly, even on rounding ties.

Weights and biases are crafted to sit on (float32-rounded) .5 boundaries, where formulas that
are "almost" the converter's (numpy's round-half-even, double-precision division, a double
bias scale) give different bytes. Measured with these vectors: only float32 w * f32(1/scale)
with halves away from zero, and a float32 bias scale, match.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polykws.datasets.frontend import mfcc_frontend
from polykws.export.convert import float_tflite, int8_tflite, onnx_to_saved_model, to_onnx
from polykws.export.quantize import (
    activation_qparams,
    bias_scales,
    dequantize,
    quantize_activations,
    quantize_bias,
    quantize_weights,
    round_half_away,
    weight_scales,
)
from polykws.export.requant import head_op_index, verify_requantizer
from polykws.export.tflite_graph import TfliteGraph


@pytest.fixture(scope="module")
def tie_model_graphs(tmp_path_factory):
    from polykws.training.models import ds_cnn_s

    torch.manual_seed(0)
    model = ds_cnn_s(num_classes=10).eval()
    rng = np.random.default_rng(0)
    w = model.head.weight.detach().numpy().copy()
    for r in range(w.shape[0]):
        m = np.float32(rng.uniform(0.2, 0.5))
        w[r, 0] = m  # the row maximum fixes scale = m / 127
        w[r, 1:] = [np.float32((k + 0.5) * np.float64(m) / 127) for k in rng.integers(-126, 126, w.shape[1] - 1)]
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(w))
    frontend = mfcc_frontend()
    lo, hi = frontend.value_range
    cal = np.random.default_rng(1).uniform(lo, hi, size=(24, 49, 10)).astype(np.float32)
    tmp = tmp_path_factory.mktemp("ties")
    sm = onnx_to_saved_model(to_onnx(model, frontend, tmp / "m.onnx"), tmp / "sm")
    return TfliteGraph(int8_tflite(sm, cal, frontend.value_range)), TfliteGraph(float_tflite(sm)), model


def test_head_weights_on_ties_match_the_converter(tie_model_graphs):
    gq, gf, _ = tie_model_graphs
    i = head_op_index(gq)
    wq = gq.tensors[gq.ops[i].inputs[1]]
    wf = gf.array(gf.ops[i].inputs[1])
    s = weight_scales(wf, 0)
    assert np.array_equal(s, wq.scales)
    q, clamped = quantize_weights(wf, s, 0)
    assert np.array_equal(q, gq.array(wq)) and clamped.sum() == 0
    # The near misses disagree: the ties are real and the test can tell formulas apart.
    half_even = np.clip(np.round(wf.astype(np.float64) / s.astype(np.float64)[:, None]), -127, 127)
    assert np.sum(half_even != gq.array(wq)) > 50


def test_whole_graph_requantizes_to_the_converters_bytes(tie_model_graphs):
    gq, gf, _ = tie_model_graphs
    assert verify_requantizer(gq, gf) > 20000


def test_bias_scale_is_a_float32_product(tie_model_graphs):
    gq, gf, _ = tie_model_graphs
    for op in gq.weighted_ops():
        w, b = gq.tensors[op.inputs[1]], gq.tensors[op.inputs[2]]
        s_in = gq.tensors[op.inputs[0]].scales[0]
        assert np.array_equal(bias_scales(s_in, w.scales), b.scales)


def test_quantize_helpers():
    assert list(round_half_away(np.array([-2.5, -0.5, 0.5, 1.5, 2.4]))) == [-3, -1, 1, 2, 2]
    w = np.array([[0.0, 0.0], [1.0, -0.5]], np.float32)
    s = weight_scales(w, 0)
    assert s[0] == np.float32(np.float32(5e-7) / np.float32(127))  # all-zero channel, as the converter
    q, clamped = quantize_weights(w, s, 0)
    assert q.tolist() == [[0, 0], [127, -64]] and clamped.tolist() == [0, 0]
    q, clamped = quantize_weights(w * 2, s, 0)
    assert q[1, 0] == 127 and clamped.tolist() == [0, 1]
    assert quantize_bias(np.array([1.0], np.float32), 0.5, np.array([0.25], np.float32)).tolist() == [8]


@pytest.mark.parametrize("rmin, rmax", [(-88.0, 32.0), (0.0, 26.0), (-3.0, 9.5), (1.0, 2.0), (-5.0, -1.0)])
def test_activation_qparams_keep_zero_exact_and_cover_the_range(rmin, rmax):
    scale, zp = activation_qparams(rmin, rmax)
    assert -128 <= zp <= 127
    assert dequantize(np.array([zp]), scale, zp)[0] == 0.0
    lo, hi = min(rmin, 0.0), max(rmax, 0.0)
    assert dequantize(np.array([-128]), scale, zp)[0] <= lo + scale
    assert dequantize(np.array([127]), scale, zp)[0] >= hi - scale
    x = np.linspace(lo, hi, 101, dtype=np.float32)
    err = np.abs(dequantize(quantize_activations(x, scale, zp), scale, zp) - x)
    assert err.max() <= scale + 1e-6  # half a step of rounding plus at most half a step of zero-point nudging


def test_auto_scales_absorb_a_rescaled_channel_and_keep_a_sparse_edit():
    from polykws.export.requant import _choose_scales

    rng = np.random.default_rng(0)
    w0 = rng.normal(0, 0.1, (6, 3, 3, 16)).astype(np.float32)  # channels on axis 3, as a depthwise kernel
    s0 = weight_scales(w0, 3)
    q0, _ = quantize_weights(w0, s0, 3)
    w = w0.copy()
    w[..., 0] *= 0.8  # BatchNorm's gamma folded in: the whole channel rescaled
    w[0, 1, 1, 1] += float(s0[1])  # a sparse edit: one value one step up on the frozen grid
    w[..., 2] *= 1.3  # outgrew its scale: would clamp on the frozen grid
    w[..., 3] *= 1.0 + 1e-4  # rescaled too little to move a byte on the frozen grid
    tests = {"auto": (True, False, True, False), "frozen": (False, False, False, False)}
    for policy, want in tests.items():
        s, refit = _choose_scales(w, q0, s0, 3, policy)
        kept = s[:4] == s0[:4]
        assert list(~kept) == list(want), policy
        assert list(refit[:4]) == list(want), policy
        if policy == "auto":
            q, clamped = quantize_weights(w, s, 3)
            assert np.array_equal(q[..., 0], q0[..., 0]), "the rescaled channel keeps the base's int8 row"
            assert int(np.sum(q[..., 1] != q0[..., 1])) == 1, "the sparse edit changes the one byte it paid for"
            assert int(clamped.sum()) == 0
    assert np.array_equal(_choose_scales(w0, q0, s0, 3, "auto")[0], s0), "an untouched tensor keeps every base scale"
