"""Posteriors: TFLM's int8 softmax computed on the host bit for bit, the head's temperature folded
into its scales without moving a logit, and the logit margin."""

from __future__ import annotations

import numpy as np
import pytest

from polykws.core import ConfigError
from polykws.export.convert import ExportError
from polykws.export.evaluate import find_arena_bytes, run_tflm
from polykws.export.posterior import (MAX_LOG2_TEMPERATURE, head_temperature, keyword_vs_rest_int8, logit_margin_int8, logits_model,
                                      softmax_int8)
from polykws.export.streaming import Posterior
from polykws.export.tflite_graph import TfliteGraph


@pytest.fixture(scope="module")
def shipped():
    from polykws.core.assets import shipped_base

    return shipped_base().tflite.read_bytes()


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    # Uniform noise and speech-like spreads: logits from flat to very peaked.
    flat = rng.integers(-128, 128, (60, 49, 40, 1)).astype(np.int8)
    peaked = np.clip(rng.normal(0, 50, (60, 49, 40, 1)), -128, 127).astype(np.int8)
    return np.concatenate([flat, peaked])


def test_host_softmax_is_tflms_bit_for_bit_at_every_temperature(shipped, inputs):
    logit_model, scale = logits_model(shipped)
    logits = run_tflm(logit_model, inputs, find_arena_bytes(logit_model))
    assert logits.dtype == np.int8 and len(np.unique(logits)) > 50
    arena = find_arena_bytes(shipped)
    for k in range(MAX_LOG2_TEMPERATURE + 1):
        tempered = head_temperature(shipped, k)
        device = run_tflm(tempered, inputs, arena)
        host = softmax_int8(logits, scale / 2**k)
        np.testing.assert_array_equal(host, device, err_msg=f"T=2**{k}")
        # The temperature lives in the head's scales: the int8 logits are the untempered model's.
        lt, _ = logits_model(tempered)
        np.testing.assert_array_equal(run_tflm(lt, inputs, find_arena_bytes(lt)), logits)
        if k:
            # A higher temperature spreads the top of the scale: fewer saturated posteriors.
            assert np.sum(device == 127) <= np.sum(softmax_int8(logits, scale) == 127)
    assert len(logit_model) == len(shipped) and TfliteGraph(logit_model).outputs != TfliteGraph(shipped).outputs


def test_temperature_changes_only_head_scale_bytes(shipped):
    from polykws.export.requant import head_op_index

    g = TfliteGraph(shipped)
    head = g.ops[head_op_index(g)]
    spans = [g.tensors[t].scale_span for t in (head.inputs[1], head.inputs[2], head.outputs[0])]
    a, b = np.frombuffer(shipped, np.uint8), np.frombuffer(head_temperature(shipped, 3), np.uint8)
    changed = np.flatnonzero(a != b)
    assert changed.size and all(any(lo <= i < hi for lo, hi in spans) for i in changed)
    assert head_temperature(shipped, 0) == shipped
    for bad in (-1, MAX_LOG2_TEMPERATURE + 1):
        with pytest.raises(ExportError):
            head_temperature(shipped, bad)


def test_logit_margin_and_posterior_config():
    q = np.array([[10, 4, -3], [5, 5, 0], [-128, 127, -128]], np.int8)
    p = logit_margin_int8(q).astype(np.int32) + 128
    np.testing.assert_array_equal(p, [[6, 0, 0], [0, 0, 0], [0, 255, 0]])
    assert Posterior().name == "softmax T=1" and Posterior("softmax", 3).name == "softmax T=8" and not Posterior("margin").shippable
    for bad in (dict(kind="sigmoid"), dict(log2_temperature=MAX_LOG2_TEMPERATURE + 1), dict(kind="margin", log2_temperature=1)):
        with pytest.raises(ConfigError):
            Posterior(**bad)
    with pytest.raises(ExportError, match="int8 logits"):
        softmax_int8(q.astype(np.int32), 0.1)


def test_keyword_vs_rest_credits_the_keywords_mass_to_the_likeliest_one():
    # Classes: two keywords, _silence_, _unknown_ (p = q + 128).
    p = np.array([[100, 90, 10, 55], [0, 3, 250, 2], [200, 100, 0, 0]])
    out = keyword_vs_rest_int8((p - 128).astype(np.int8), np.array([True, True, False, False])).astype(np.int32) + 128
    np.testing.assert_array_equal(out, [[190, 0, 10, 55], [0, 3, 250, 2], [255, 0, 0, 0]])
    with pytest.raises(ExportError, match="keyword mask"):
        keyword_vs_rest_int8((p - 128).astype(np.int8), np.array([False] * 4))
    # As a posterior it reads the softmax at its temperature, with the labels saying which are keywords.
    logits = np.array([[40, 38, -90, -20, -128, -128]], np.int8)  # 4 classes and 2 padding slots
    labels = ("one", "two", "_silence_", "_unknown_")
    soft = Posterior("softmax", 2).outputs(logits, 0.125, labels).astype(np.int32) + 128
    rest = Posterior("rest", 2).outputs(logits, 0.125, labels).astype(np.int32) + 128
    assert rest[0, 0] == min(255, soft[0, 0] + soft[0, 1]) > soft[0, 0] and rest[0, 1] == 0
    np.testing.assert_array_equal(rest[0, 2:], soft[0, 2:])
    assert Posterior("rest", 2).name == "keyword vs rest T=4" and not Posterior("rest").shippable

