"""Fitting a family's config to a budget of body parameters or of estimated blob bytes.

Each family's layer class has `fit_to_budget()` (DeltaLayer's default: whole sites, deepest
first). A budget measures a site through the family's own estimate entry points, `cost`
(parameters) and `blob_bytes` (training/deltas/blob_bytes.py), so the byte arithmetic lives in
one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from polykws.core import ConfigError
from polykws.training.deltas.base import HEAD_SITE, DeltaConfig, candidate_sites

if TYPE_CHECKING:  # pragma: no cover
    from polykws.training.deltas.base import DeltaLayer

Sites = list[tuple[str, nn.Module]]


@dataclass(frozen=True)
class Budget:
    """An upper bound on a delta's body cost, in `unit` ("params" or "blob_bytes")."""

    limit: int
    unit: str

    def measure(self, layer_cls: type["DeltaLayer"], module: nn.Module, cfg: DeltaConfig) -> int:
        return int(layer_cls.cost(module, cfg) if self.unit == "params" else layer_cls.blob_bytes(module, cfg))

    def of_sites(self, layer_cls: type["DeltaLayer"], sites: Sites, cfg: DeltaConfig) -> int:
        return sum(self.measure(layer_cls, m, cfg) for _, m in sites)


def make_budget(budget_params: int | None = None, budget_bytes: int | None = None) -> Budget:
    """Exactly one of the two bounds, as a Budget."""
    if (budget_params is None) == (budget_bytes is None):
        raise ConfigError("give exactly one of budget_params and budget_bytes")
    limit, unit = (budget_params, "params") if budget_params is not None else (budget_bytes, "blob_bytes")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError(f"budget_{'params' if unit == 'params' else 'bytes'} must be an integer >= 0, got {limit!r}")
    return Budget(limit, unit)


def body_sites_deepest_first(model: nn.Module) -> Sites:
    """Body sites from the head backwards: with a frozen base, the last layers carry the most
    task-specific features, so a family that cannot cover every site starts there."""
    sites = [(n, m) for n, m in candidate_sites(model).items() if n != HEAD_SITE]
    return list(reversed(sites))


def fit_whole_sites(layer_cls: type["DeltaLayer"], cfg: DeltaConfig, sites: Sites, budget: Budget) -> DeltaConfig | None:
    """`cfg` on whole sites taken in order while the budget allows; None when none fits."""
    chosen, spent = [], 0
    for name, module in sites:
        if not layer_cls.supports(module, cfg):
            continue
        c = budget.measure(layer_cls, module, cfg)
        if spent + c <= budget.limit:
            chosen.append(name)
            spent += c
    return cfg.replace(targets=tuple(reversed(chosen))) if chosen else None
