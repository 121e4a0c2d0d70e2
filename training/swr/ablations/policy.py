"""The SWR policy: a small MLP from per-site features to logits over that site's options.

It exists only during transfer. The search reads its argmax and then drops it; nothing of it
reaches the DeltaModel, the delta file or the merged model (tests/deltas/test_swr.py checks).
"""

from __future__ import annotations

import torch
from torch import nn


class SWRPolicy(nn.Module):
    def __init__(self, num_features: int, num_choices: int, hidden: int = 32, logit_bound: float = 3.0):
        super().__init__()
        self.logit_bound = float(logit_bound)
        # No bias on the output: a shared bias would push every site to the same option; the
        # logits must come from each site's own features.
        self.net = nn.Sequential(nn.Linear(num_features, hidden), nn.Tanh(), nn.Linear(hidden, num_choices, bias=False))
        # Zero last layer: the search starts from a uniform distribution over allowed options.
        nn.init.zeros_(self.net[2].weight)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features (sites, F), mask (sites, choices) bool -> logits with disallowed = -inf."""
        # Bounded logits (|logit| <= bound): the policy can become decisive (probability ratios
        # up to e^(2·bound)) but never saturates so far that straight-through gradients vanish
        # and a noisy early decision freezes.
        raw = self.net(features)
        logits = self.logit_bound * torch.tanh(raw / self.logit_bound)
        return logits.masked_fill(~mask, float("-inf"))


def gumbel_straight_through(logits: torch.Tensor, tau: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through Gumbel-softmax (Jang et al. 2017) per row.

    Returns (z, soft): z is the hard one-hot sample in the forward pass and carries the soft
    sample's gradient in the backward pass. Seeded by `generator` for reproducible searches.
    """
    u = torch.rand(logits.shape, generator=generator).clamp(1e-10, 1.0 - 1e-10)
    gumbel = -torch.log(-torch.log(u))
    soft = torch.softmax((logits + gumbel) / tau, dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
    return hard - soft.detach() + soft, soft
