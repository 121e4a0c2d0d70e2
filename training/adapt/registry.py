"""The method registry: each transfer method registers `fn(ctx, method_cfg) -> MethodRun`.

Methods register themselves (`register_method(name, ConfigCls)`), like delta families: each
delta family alone (adapt/budget.py), the baselines (adapt/baselines.py) and SWR (training/swr).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from torch import nn

from polykws.core import ConfigError
from polykws.training.deltas import Cost, DeltaModel
from polykws.training.fit import EpochMetrics


@dataclass
class AdaptResult:
    method: str
    method_config: dict[str, Any]
    model: nn.Module  # the merged, plain model (base class, base shapes, language head)
    delta_model: DeltaModel | None  # None for methods that change the base weights directly
    labels: tuple[str, ...]
    cost: Cost  # updated parameters: body + head
    val_acc: float
    test_acc: float | None
    wall_s: float
    history: list[EpochMetrics] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "body_params": self.cost.body,
            "head_params": self.cost.head,
            "total_params": self.cost.total,
            "val_acc": self.val_acc,
            "test_acc": self.test_acc,
            "wall_s": self.wall_s,
            **{k: v for k, v in self.details.items() if isinstance(v, (int, float, str))},
        }


@dataclass
class MethodRun:
    """What a method hands back to the harness."""

    model: nn.Module  # trained model (a DeltaModel or a plain module)
    delta_model: DeltaModel | None
    cost: Cost
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    config_cls: type
    run: Callable[..., MethodRun]
    budgeted: bool
    defaults: tuple[tuple[str, Any], ...] = ()


_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, config_cls: type, *, budgeted: bool, defaults: Mapping[str, Any] | None = None):
    """Register `fn(ctx, method_cfg) -> MethodRun` as method `name`. `defaults` are config
    values the name implies (each delta family is the generic family method with `family=name`)."""

    def deco(fn: Callable[..., MethodRun]) -> Callable[..., MethodRun]:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered")
        _METHODS[name] = MethodSpec(name, config_cls, fn, budgeted, tuple(sorted((defaults or {}).items())))
        return fn

    return deco


_SOURCES: list[Callable[[], None]] = []


def add_method_source(register_new: Callable[[], None]) -> None:
    """`register_new()` registers methods that appeared since it last ran (a new delta family)."""
    _SOURCES.append(register_new)


def _refresh() -> None:
    for register_new in _SOURCES:
        register_new()


def list_registered() -> list[str]:
    """The methods registered so far (no refresh)."""
    return sorted(_METHODS)


def list_methods() -> list[str]:
    _refresh()
    return sorted(_METHODS)


def get_method(name: str) -> MethodSpec:
    if name not in _METHODS:
        _refresh()
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; registered: {', '.join(sorted(_METHODS))}") from None


def method_config(name: str, *, budget_params: int | None = None, **overrides: Any):
    """The config of method `name`; `budget_params` applies to budgeted methods only."""
    spec = get_method(name)
    kwargs = {**dict(spec.defaults), **overrides}
    names = {f.name for f in fields(spec.config_cls)}
    if budget_params is not None:
        if "budget_params" not in names:
            raise ConfigError(f"method {name!r} takes no budget (it is a fixed baseline)")
        kwargs["budget_params"] = budget_params
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise ConfigError(f"method {name!r}: unknown options {unknown}; known: {sorted(names)}")
    return spec.config_cls(**kwargs)


def method_name_of(cfg: Any) -> str:
    """The registered name of a method config (a config may name itself via `method_name`)."""
    named = getattr(cfg, "method_name", None)
    if named is not None:
        return named
    hits = [spec.name for spec in _METHODS.values() if type(cfg) is spec.config_cls]
    if len(hits) != 1:
        raise ConfigError(f"{type(cfg).__name__} is not the config of exactly one registered method")
    return hits[0]
