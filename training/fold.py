"""Fold eval-mode BatchNorm into the preceding convolution.

The deployed int8 graph has no BN ops (TFLM has none to spare and the quantizer would fold them
anyway), so export, MAC counts and the int8 blob all describe the folded weights:

    W' = W * gamma / sqrt(var + eps)            (per output channel)
    b' = (b - mean) * gamma / sqrt(var + eps) + beta

`fold_batchnorm` returns a deep copy in which every BN that directly follows a conv (and is that
conv's only consumer) is replaced by `nn.Identity`, keeping every other module name, so
`conv0`, `blocks.{i}.dw`, `blocks.{i}.pw` and `head` still address the same layers. The input
model is not modified.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv_name, bn_name) for every BN fed only by a conv whose output goes only to that BN.

    Found by tracing the real forward graph (torch.fx) rather than by module order, so a BN
    that is not directly after its conv is never folded wrongly.
    """
    graph = fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0]
        if (
            isinstance(src, fx.Node)
            and src.op == "call_module"
            and isinstance(modules.get(src.target), nn.Conv2d)
            and len(src.users) == 1
        ):
            pairs.append((str(src.target), str(node.target)))
    return pairs


def _set_module(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of `model` with every conv->BN pair folded into the conv.

    Raises ValueError if a BatchNorm remains that could not be folded (e.g. BN with no conv in
    front of it), because the export path assumes a BN-free graph.
    """
    folded = copy.deepcopy(model).eval()
    pairs = conv_bn_pairs(folded)
    for conv_name, bn_name in pairs:
        conv = folded.get_submodule(conv_name)
        bn = folded.get_submodule(bn_name)
        # The fused conv always carries a bias (b' above), even if the original had none.
        _set_module(folded, conv_name, fuse_conv_bn_eval(conv, bn))
        _set_module(folded, bn_name, nn.Identity())
    leftover = [n for n, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if leftover:
        raise ValueError(f"BatchNorm layers not directly after a conv cannot be folded: {leftover}")
    folded.bn_folded = True  # type: ignore[attr-defined]
    return folded
