"""DS-CNN (Hello Edge, Zhang et al. 2017; MLPerf Tiny KWS reference).

Layout: Conv 10x4 stride 2 ("same") -> BN -> ReLU, then N depthwise-separable blocks
(DW 3x3 -> BN -> ReLU -> PW 1x1 -> BN -> ReLU), dropout, global average pool, linear head.
Input is (batch, 1, num_frames, num_features) as produced by a FrontendConfig.

Module names are part of the public contract: delta sites, BN folding and the export tensor
mapping all address layers as `conv0`, `blocks.{i}.dw`, `blocks.{i}.pw` and `head`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from polykws.training.models.registry import register_model


def tf_same_padding(in_size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for one spatial dim.

    Expressed as an explicit ZeroPad2d in front of a padding-0 conv so that onnx2tf fuses it
    back into a SAME CONV_2D (measured: no PAD op in the TFLite graph; symmetric torch padding
    leaves a PAD op, which TFLM can run but costs a copy of the input).
    """
    out = math.ceil(in_size / stride)
    total = max((out - 1) * stride + kernel - in_size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class DSCNNSpec:
    channels: int
    num_blocks: int
    first_kernel: tuple[int, int] = (10, 4)
    first_stride: tuple[int, int] = (2, 2)
    dropout: float = 0.2
    # "same": TF SAME padding in time and frequency (the Hello Edge layout). "valid": no padding in
    # time, so every output row depends on real frames only and a stream can compute each row
    # once (polykws.training.models.streaming); frequency keeps SAME padding.
    time_padding: str = "same"

    def __post_init__(self) -> None:
        if self.time_padding not in ("same", "valid"):
            raise ValueError(f"time_padding must be 'same' or 'valid', got {self.time_padding!r}")


class DSBlock(nn.Module):
    def __init__(self, channels: int, time_padding: int = 1):
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=(time_padding, 1), groups=channels)
        self.bn_dw = nn.BatchNorm2d(channels)
        self.pw = nn.Conv2d(channels, channels, 1)
        self.bn_pw = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn_dw(self.dw(x)))
        return torch.relu(self.bn_pw(self.pw(x)))


class DSCNN(nn.Module):
    def __init__(self, spec: DSCNNSpec, num_classes: int, input_shape: tuple[int, int] = (49, 10)):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        frames, feats = input_shape
        self.spec = spec
        self.input_shape = (int(frames), int(feats))
        self.num_classes = int(num_classes)
        (kh, kw), (sh, sw) = spec.first_kernel, spec.first_stride
        valid = spec.time_padding == "valid"
        pt, pb = (0, 0) if valid else tf_same_padding(frames, kh, sh)
        pl, pr = tf_same_padding(feats, kw, sw)
        if valid and (frames - kh) // sh + 1 - 2 * spec.num_blocks < 1:
            raise ValueError(f"{frames} frames leave no output row through a valid {kh}-frame stem and {spec.num_blocks} blocks")
        self.pad0 = nn.ZeroPad2d((pl, pr, pt, pb))
        self.conv0 = nn.Conv2d(1, spec.channels, spec.first_kernel, stride=spec.first_stride)
        self.bn0 = nn.BatchNorm2d(spec.channels)
        self.blocks = nn.ModuleList(DSBlock(spec.channels, 0 if valid else 1) for _ in range(spec.num_blocks))
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(spec.channels, num_classes)

    @property
    def embedding_dim(self) -> int:
        return self.spec.channels

    def batchnorm_of(self, site: str) -> nn.BatchNorm2d | None:
        """The BatchNorm that follows a conv site (export folds it into that conv), or None."""
        if site == "conv0":
            return self.bn0
        prefix, _, kind = site.rpartition(".")
        if prefix.startswith("blocks.") and kind in ("dw", "pw"):
            return getattr(self.get_submodule(prefix), f"bn_{kind}")
        return None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and blocks: the (N, C, frames', features') map in front of the pooling (timm's split)."""
        x = torch.relu(self.bn0(self.conv0(self.pad0(x))))
        for block in self.blocks:
            x = block(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pooling, dropout and the head. Takes the feature map or an already pooled (N, C)
        embedding, so transfer can cache the pooled embedding of a frozen body."""
        if x.dim() == 4:
            x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(self.dropout(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled embedding before the head (used by head-only transfer and gradient stats)."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Hello Edge / MLPerf Tiny sizes. The first conv uses stride 2x2 for every variant.
DS_CNN_S = DSCNNSpec(channels=64, num_blocks=4)
DS_CNN_M = DSCNNSpec(channels=172, num_blocks=4)
DS_CNN_L = DSCNNSpec(channels=276, num_blocks=5)


@register_model("ds_cnn_s")
def ds_cnn_s(num_classes: int = 12, input_shape: tuple[int, int] = (49, 10)) -> DSCNN:
    return DSCNN(DS_CNN_S, num_classes, input_shape)


# DS-CNN-S for 40-channel filterbank input (the TFLM micro frontend, 49x40): the first conv
# spans 8 channels and strides 8 across them, so its output map is 25x5 as on 49x10 MFCC. The
# blocks then cost what they cost on MFCC: 2.98M MACs in all, where a 2x2 stride on 49x40
# gives a 25x20 map and 10.6M MACs (4x the inference time on the device).
DS_CNN_S_FB40 = DSCNNSpec(channels=64, num_blocks=4, first_kernel=(10, 8), first_stride=(2, 8))


@register_model("ds_cnn_s_fb40")
def ds_cnn_s_fb40(num_classes: int = 12, input_shape: tuple[int, int] = (49, 40)) -> DSCNN:
    return DSCNN(DS_CNN_S_FB40, num_classes, input_shape)


# ds_cnn_s_fb40 with no padding in time: each output row sees real frames only (26 of them), so a
# stream computes every row once and pools the mean of its last 12 final rows. Its window map is 12x5
# instead of 25x5: fewer MACs per window, and the same weights and sites as ds_cnn_s_fb40.
DS_CNN_S_FB40_VALID = DSCNNSpec(channels=64, num_blocks=4, first_kernel=(10, 8), first_stride=(2, 8), time_padding="valid")


@register_model("ds_cnn_s_fb40_valid")
def ds_cnn_s_fb40_valid(num_classes: int = 12, input_shape: tuple[int, int] = (49, 40)) -> DSCNN:
    return DSCNN(DS_CNN_S_FB40_VALID, num_classes, input_shape)


# ds_cnn_s_fb40_valid at 40 channels: a stream that updates every 100 ms (an odd number of model
# frames) computes both chains of stem rows, 50 a second. At 64 channels that costs 17.6M
# instructions a second on a Cortex-M4; at 40 the 1x1 convs have 0.39x the MACs and the other
# layers 0.63x, which brings frontend and model under 30 % of a 64 MHz core.
DS_CNN_XS_FB40_VALID = DSCNNSpec(channels=40, num_blocks=4, first_kernel=(10, 8), first_stride=(2, 8), time_padding="valid")


@register_model("ds_cnn_xs_fb40_valid")
def ds_cnn_xs_fb40_valid(num_classes: int = 12, input_shape: tuple[int, int] = (49, 40)) -> DSCNN:
    return DSCNN(DS_CNN_XS_FB40_VALID, num_classes, input_shape)


@register_model("ds_cnn_m")
def ds_cnn_m(num_classes: int = 12, input_shape: tuple[int, int] = (49, 10)) -> DSCNN:
    return DSCNN(DS_CNN_M, num_classes, input_shape)


@register_model("ds_cnn_l")
def ds_cnn_l(num_classes: int = 12, input_shape: tuple[int, int] = (49, 10)) -> DSCNN:
    return DSCNN(DS_CNN_L, num_classes, input_shape)
