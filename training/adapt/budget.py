"""Every delta family as a transfer method, alone, fitted to a budget by its own
`fit_to_budget()` (one folder per family: nothing here names a family)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from polykws.core import ConfigError, PolykwsError
from polykws.training.adapt.registry import MethodRun, add_method_source, list_registered, register_method
from polykws.training.deltas import HEAD_SITE, DeltaConfig, get_delta, list_deltas


def fit_family_to_budget(
    family: str, base_model: nn.Module, budget_params: int | None = None, *, budget_bytes: int | None = None, **options: Any
) -> DeltaConfig | None:
    """`family`'s config that spends as much of the body budget (parameters or estimated blob
    bytes) as it can: the family's own `fit_to_budget()`. None when not even one site fits."""
    return get_delta(family).layer_cls.fit_to_budget(base_model, budget_params=budget_params, budget_bytes=budget_bytes, **options)


@dataclass(frozen=True)
class FamilyMethodConfig:
    """One delta family alone. With `budget_params` (or `budget_bytes`) the family is fitted to
    the budget (`fit_family_to_budget`); without either, its default config on its default sites."""

    family: str
    budget_params: int | None = None
    family_options: tuple[tuple[str, Any], ...] = ()
    budget_bytes: int | None = None

    def __post_init__(self) -> None:
        get_delta(self.family)
        for name in ("budget_params", "budget_bytes"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.budget_params is not None and self.budget_bytes is not None:
            raise ConfigError("give budget_params or budget_bytes, not both")

    @property
    def method_name(self) -> str:
        return self.family


def _run_family(ctx, mcfg: FamilyMethodConfig) -> MethodRun:
    opts = dict(mcfg.family_options)
    if mcfg.budget_params is None and mcfg.budget_bytes is None:
        cfg = get_delta(mcfg.family).config_cls(**opts)
        cfg = cfg.replace(targets=tuple(t for t in cfg.resolved_targets if t != HEAD_SITE))
    else:
        cfg = fit_family_to_budget(mcfg.family, ctx.base_model, mcfg.budget_params, budget_bytes=mcfg.budget_bytes, **opts)
        if cfg is None:
            what = f"{mcfg.budget_params} parameters" if mcfg.budget_bytes is None else f"{mcfg.budget_bytes} blob bytes"
            raise PolykwsError(f"{mcfg.family}: no site fits a budget of {what}")
    dm = ctx.attach(cfg)
    ctx.train_deltas(dm)
    return MethodRun(dm, dm, dm.cost(), {"config": str(cfg.to_dict())})


def register_family_methods() -> None:
    """Register every delta family (including one added since the last call) as a method."""
    known = set(list_registered())
    for family in list_deltas():
        if family not in known:
            register_method(family, FamilyMethodConfig, budgeted=True, defaults={"family": family})(_run_family)


add_method_source(register_family_methods)
