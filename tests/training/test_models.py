"""Model registry, per-layer params/MACs (against hand arithmetic) and the model's feature/head split."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polykws.datasets.frontend import micro_frontend, mfcc_frontend
from polykws.training.models import DSCNN, create_model, ds_cnn_l, ds_cnn_m, ds_cnn_s, list_models, register_model
from polykws.training.profile import count_params_macs

VARIANTS = {"ds_cnn_s": (64, 4), "ds_cnn_m": (172, 4), "ds_cnn_l": (276, 5)}


def test_registry_lists_and_builds_every_variant():
    assert set(VARIANTS) <= set(list_models())
    for name, (channels, blocks) in VARIANTS.items():
        for frontend in (mfcc_frontend(), micro_frontend()):
            model = create_model(name, num_classes=7, input_shape=frontend.input_shape)
            assert isinstance(model, DSCNN)
            assert model.model_name == name
            assert model.conv0.out_channels == channels and len(model.blocks) == blocks
            assert model.conv0.kernel_size == (10, 4) and model.conv0.stride == (2, 2)
            out = model.eval()(torch.zeros(2, 1, *frontend.input_shape))
            assert out.shape == (2, 7)


def test_direct_variant_calls_are_tagged_like_create_model():
    # save_model() needs model_name; calling ds_cnn_s() directly must be as good as create_model().
    for fn, name in ((ds_cnn_s, "ds_cnn_s"), (ds_cnn_m, "ds_cnn_m"), (ds_cnn_l, "ds_cnn_l")):
        assert fn(num_classes=3).model_name == name


def test_registry_rejects_unknown_and_duplicate_names():
    with pytest.raises(ValueError, match="unknown model 'ds_cnn_xl'.*ds_cnn_s"):
        create_model("ds_cnn_xl")
    with pytest.raises(ValueError, match="already registered"):
        register_model("ds_cnn_s")(lambda **kw: nn.Linear(1, 1))


def test_module_names_are_the_public_contract():
    names = {n for n, _ in ds_cnn_s().named_modules()}
    for i in range(4):
        assert {f"blocks.{i}.dw", f"blocks.{i}.bn_dw", f"blocks.{i}.pw", f"blocks.{i}.bn_pw"} <= names
    assert {"pad0", "conv0", "bn0", "dropout", "head"} <= names


def test_ds_cnn_s_params_and_macs_match_hand_arithmetic():
    """DS-CNN-S on MFCC 49x10, 12 classes, every figure worked out by hand.

    conv0: 10x4 kernel, stride 2, TF-SAME padding.
      out frames = ceil(49/2) = 25, out feats = ceil(10/2) = 5 -> 25x5x64.
      params = 64*1*10*4 + 64 (bias) = 2,624
      MACs   = 25*5 positions * 64 out ch * (1 in ch * 10*4) = 125*64*40 = 320,000
    BN (each): gamma + beta = 2*64 = 128 params, 0 MACs (folded away for deployment).
    depthwise 3x3 (each of 4): params = 64*9 + 64 = 640, MACs = 125*64*9 = 72,000
    pointwise 1x1 (each of 4): params = 64*64 + 64 = 4,160, MACs = 125*64*64 = 512,000
    head: params = 64*12 + 12 = 780, MACs = 64*12 = 768
    totals: params = 2,624 + 128 + 4*(640+128+4,160+128) + 780 = 2,752 + 20,224 + 780 = 23,756
            MACs   = 320,000 + 4*(72,000 + 512,000) + 768 = 2,656,768
    """
    prof = count_params_macs(ds_cnn_s(num_classes=12, input_shape=(49, 10)))
    layers = prof.by_name()
    assert layers["conv0"].output_shape == (64, 25, 5)
    assert (layers["conv0"].params, layers["conv0"].macs) == (2_624, 320_000)
    assert (layers["bn0"].params, layers["bn0"].macs) == (128, 0)
    for i in range(4):
        assert (layers[f"blocks.{i}.dw"].params, layers[f"blocks.{i}.dw"].macs) == (640, 72_000)
        assert layers[f"blocks.{i}.dw"].kind == "dwconv"
        assert (layers[f"blocks.{i}.pw"].params, layers[f"blocks.{i}.pw"].macs) == (4_160, 512_000)
        assert layers[f"blocks.{i}.pw"].kind == "pwconv"
        assert layers[f"blocks.{i}.bn_dw"].params == layers[f"blocks.{i}.bn_pw"].params == 128
    assert (layers["head"].params, layers["head"].macs) == (780, 768)
    assert prof.total_params == 23_756
    assert prof.total_macs == 2_656_768
    table = prof.format_table()
    assert "23,756" in table and "2,656,768" in table


def test_macs_follow_the_frontend_shape():
    # micro frontend 49x40: conv0 output 25x20 -> every conv costs 4x the MFCC figure.
    mfcc = count_params_macs(ds_cnn_s(num_classes=12, input_shape=(49, 10)))
    micro = count_params_macs(ds_cnn_s(num_classes=12, input_shape=(49, 40)))
    assert micro.by_name()["conv0"].output_shape == (64, 25, 20)
    assert micro.total_params == mfcc.total_params
    assert micro.total_macs - 768 == 4 * (mfcc.total_macs - 768)


def test_fb40_variant_costs_what_ds_cnn_s_costs_on_mfcc():
    """ds_cnn_s_fb40 on 49x40: conv0 10x8, stride 2x8, TF-SAME.

    out = ceil(49/2) x ceil(40/8) = 25x5 (the MFCC map); conv0 params = 64*10*8 + 64 = 5,184,
    MACs = 125*64*80 = 640,000. Blocks and head as in ds_cnn_s on MFCC, so params = 23,756 +
    2,560 = 26,316 and MACs = 2,656,768 + 320,000 = 2,976,768.
    """
    from polykws.training.models import create_model

    model = create_model("ds_cnn_s_fb40", num_classes=12, input_shape=micro_frontend().input_shape)
    prof = count_params_macs(model)
    assert model.model_name == "ds_cnn_s_fb40"
    assert prof.by_name()["conv0"].output_shape == (64, 25, 5)
    assert (prof.by_name()["conv0"].params, prof.by_name()["conv0"].macs) == (5_184, 640_000)
    assert (prof.total_params, prof.total_macs) == (26_316, 2_976_768)
    assert {n for n, _ in model.named_modules()} == {n for n, _ in ds_cnn_s().named_modules()}


def test_profile_refuses_parameters_it_cannot_attribute():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x * self.scale)

    with pytest.raises(ValueError, match="counted 8 params but the model has 11"):
        count_params_macs(Odd(), input_shape=(3,))


def test_forward_is_forward_features_then_forward_head():
    torch.manual_seed(0)
    model = ds_cnn_s(num_classes=5).eval()
    x = torch.randn(3, 1, 49, 10)
    with torch.no_grad():
        fmap = model.forward_features(x)
        assert fmap.shape == (3, 64, 25, 5)
        pooled = model.forward_head(fmap, pre_logits=True)
        torch.testing.assert_close(pooled, model.features(x), atol=0, rtol=0)
        # The head takes the map or its pooled embedding: the cache transfer keeps is exact.
        torch.testing.assert_close(model.forward_head(pooled), model(x), atol=0, rtol=0)
        torch.testing.assert_close(model.forward_head(fmap), model(x), atol=0, rtol=0)
