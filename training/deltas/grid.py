"""The base's frozen int8 weight grid: deltas that move whole int8 steps, and only where paid for.

The exporter stores a touched body tensor as int8 on the *base's* per-channel scales (the
`frozen` scale policy), after folding the BatchNorm that follows the layer into it:

    q = clamp(round_half_away(W · g / s), -127, 127),  g = γ / √(var + ε),  s = max|W0 · g| / 127

A float delta smaller than half a step rounds away, and one a little larger moves a byte the
blob then pays for, so a delta trained in float is not the delta the device runs. On the grid a
delta layer's applied delta is the int8 change itself,

    ΔW_applied = (q(W0 + ΔW) - q(W0)) · s / g

trained straight through (the forward pass sees the quantized change, the gradient reaches ΔW
unchanged). Where ΔW rounds away, the applied delta is exactly 0, so no untouched weight ever
re-rounds. An optional `paid` mask restricts the change to the positions a budget paid for:
outside it the applied delta is 0 whatever ΔW is.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from polykws.core.int8 import WEIGHT_QMAX, ZERO_CHANNEL_HALF_RANGE

WEIGHT_GRIDS = ("int8", "float")


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _channel_view(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(-1, *([1] * (ndim - 1)))


class Int8Grid(nn.Module):
    """One site's frozen grid: the float size of one int8 step per output channel (`step`), the
    base's int8 values (`q0`) and the optional `paid` mask. Buffers, so they follow `.to()`."""

    def __init__(self, w0: torch.Tensor, fold: torch.Tensor | None = None):
        super().__init__()
        w = w0.detach().to(torch.float64)
        g = torch.ones(w.shape[0], dtype=torch.float64) if fold is None else fold.detach().to(torch.float64)
        folded = w * _channel_view(g, w.dim())
        amax = folded.abs().flatten(1).amax(dim=1)
        scale = torch.where(amax > 0, amax, torch.full_like(amax, float(ZERO_CHANNEL_HALF_RANGE))).to(torch.float32).to(torch.float64) / WEIGHT_QMAX
        # A channel whose BN gain is 0 outputs a constant: its weights cannot matter, never move them.
        live = g.abs() > 0
        step = torch.where(live, scale / torch.where(live, g, torch.ones_like(g)), torch.full_like(g, float("inf")))
        # Derived from the base alone, so never part of a delta file's state.
        self.register_buffer("step", _channel_view(step, w.dim()).expand_as(w).clone(), persistent=False)
        self.register_buffer("q0", torch.where(_channel_view(live, w.dim()).expand_as(w), _round_half_away(w / self.step),
                                               torch.zeros_like(w)), persistent=False)
        self.paid: torch.Tensor | None = None

    def set_paid(self, mask: torch.Tensor | None) -> None:
        """Restrict changes to `mask` (bool, the weight's shape); None lifts the restriction."""
        if mask is not None and tuple(mask.shape) != tuple(self.q0.shape):
            raise ValueError(f"paid mask has shape {tuple(mask.shape)}, expected {tuple(self.q0.shape)}")
        self.paid = None if mask is None else mask.detach().to(torch.bool).clone()

    def int8_values(self, w0: torch.Tensor, dw: torch.Tensor) -> torch.Tensor:
        """q(W0 + ΔW) as float64 integers (masked positions keep q0)."""
        q = _round_half_away((w0.detach().to(torch.float64) + dw.detach().to(torch.float64)) / self.step)
        q = torch.where(torch.isfinite(self.step), q.clamp(-WEIGHT_QMAX, WEIGHT_QMAX), self.q0)
        if self.paid is not None:
            q = torch.where(self.paid, q, self.q0)
        return q

    def project(self, w0: torch.Tensor, dw: torch.Tensor) -> torch.Tensor:
        """The applied delta: the int8 change in float, with a straight-through gradient to `dw`."""
        q = self.int8_values(w0, dw)
        step = torch.where(torch.isfinite(self.step), self.step, torch.zeros_like(self.step))
        applied = ((q - self.q0) * step).to(dw.dtype)
        if self.paid is not None:
            dw = dw * self.paid.to(dw.dtype)
        return dw + (applied - dw).detach()

    def changed(self, w0: torch.Tensor, dw: torch.Tensor) -> torch.Tensor:
        """Bool mask of the int8 weights the delta moves."""
        return self.int8_values(w0, dw) != self.q0

    def int8_pair(self, w0: torch.Tensor, dw: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(base int8, new int8) as the blob coder sees the tensor (row-major, one byte each)."""
        q0 = self.q0.clamp(-WEIGHT_QMAX, WEIGHT_QMAX).to(torch.int8).numpy().reshape(-1)
        q1 = self.int8_values(w0, dw).to(torch.int8).numpy().reshape(-1)
        return q0, q1


def fold_factor(model: nn.Module, site: str) -> torch.Tensor | None:
    """γ/√(var+ε) of the BatchNorm the model folds into `site` (the model names it with
    `batchnorm_of`), or None when the site has none."""
    finder = getattr(model, "batchnorm_of", None)
    bn = finder(site) if finder is not None else None
    if bn is None:
        return None
    return (bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)).to(torch.float64)
