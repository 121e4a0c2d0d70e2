"""Per-layer parameter and MAC counts (the figures an embedded engineer budgets flash and time by).

Counting rules, stated once so every report and test agrees:
- Conv2d: MACs = out_h * out_w * out_channels * (in_channels / groups) * kh * kw.
  Bias adds are not MACs.
- Linear: MACs = in_features * out_features (per sample).
- BatchNorm: its affine parameters are counted (they exist in the float model) but it costs
  0 MACs, because the exported graph folds it into the preceding conv (onnx2tf does the folding).
- Pooling, ReLU, padding and dropout cost 0 MACs and hold no parameters; they are listed only
  when `include_zero` is set.

Shapes come from one real forward pass (hooks), so the table follows the frontend's input shape
(49x10 MFCC or 49x40 micro) without any hand-kept arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerProfile:
    name: str
    kind: str
    input_shape: tuple[int, ...]  # without the batch dim
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class ModelProfile:
    layers: tuple[LayerProfile, ...]

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def by_name(self) -> dict[str, LayerProfile]:
        return {layer.name: layer for layer in self.layers}

    def format_table(self) -> str:
        rows = [("layer", "kind", "output", "params", "MACs")]
        for layer in self.layers:
            rows.append((layer.name, layer.kind, "x".join(map(str, layer.output_shape)), f"{layer.params:,}", f"{layer.macs:,}"))
        rows.append(("total", "", "", f"{self.total_params:,}", f"{self.total_macs:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = []
        for i, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
            if i == 0 or i == len(rows) - 2:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)


_LEAF_KINDS = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d)


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        out_h, out_w = out.shape[-2:]
        return int(out_h * out_w * module.out_channels * (module.in_channels // module.groups) * kh * kw)
    if isinstance(module, nn.Linear):
        # Per sample: all leading dims except the batch are positions the matrix is applied at.
        positions = math.prod(out.shape[1:-1])
        return positions * module.in_features * module.out_features
    return 0


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        if module.groups == module.in_channels and module.groups > 1:
            return "dwconv"
        if module.kernel_size == (1, 1):
            return "pwconv"
        return "conv"
    return type(module).__name__.lower()


def count_params_macs(
    model: nn.Module,
    input_shape: tuple[int, ...] | None = None,
    *,
    include_zero: bool = False,
) -> ModelProfile:
    """Profile `model` with one forward pass on a zero input of `input_shape` (no batch dim).

    `input_shape` defaults to `(1, *model.input_shape)` for DS-CNN-style models.
    Raises ValueError when some parameters are held by modules the counter does not understand,
    so a new layer type can never silently drop out of the totals.
    """
    if input_shape is None:
        if not hasattr(model, "input_shape"):
            raise ValueError("count_params_macs needs input_shape for a model without .input_shape")
        input_shape = (1, *model.input_shape)
    records: list[LayerProfile] = []
    hooks = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            records.append(
                LayerProfile(
                    name=name,
                    kind=_kind(module),
                    input_shape=tuple(inputs[0].shape[1:]),
                    output_shape=tuple(output.shape[1:]),
                    params=_own_params(module),
                    macs=_macs(module, output),
                )
            )

        return hook

    for name, module in model.named_modules():
        if name and (isinstance(module, _LEAF_KINDS) or (include_zero and not list(module.children()))):
            hooks.append(module.register_forward_hook(make_hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            param = next(model.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    profile = ModelProfile(tuple(records))
    total = sum(p.numel() for p in model.parameters())
    if profile.total_params != total:
        raise ValueError(
            f"profile counted {profile.total_params} params but the model has {total}: "
            "a module type holding parameters is not understood (or a layer was not called)"
        )
    return profile
