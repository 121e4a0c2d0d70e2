"""Delta-family registry (PEFT/timm style): each family registers its config and layer class.

`register_delta("diff_prune", DiffPruneConfig, DiffPruneLayer)` is called once in each family's
package `__init__`; the package discovers the family folders (deltas/__init__.py). Everything else (attach, save/load, SWR options, the adaptation harness,
the tests) looks families up here, so adding a family never needs an if/elif anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from polykws.core import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from polykws.training.deltas.base import DeltaConfig, DeltaLayer


@dataclass(frozen=True)
class DeltaFamily:
    name: str
    config_cls: type["DeltaConfig"]
    layer_cls: type["DeltaLayer"]


_FAMILIES: dict[str, DeltaFamily] = {}


def register_delta(name: str, config_cls: type["DeltaConfig"], layer_cls: type["DeltaLayer"]) -> DeltaFamily:
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"delta family name must be a simple identifier, got {name!r}")
    if name in _FAMILIES:
        raise ValueError(f"delta family {name!r} is already registered")
    # The family name travels with configs and delta files, so both classes carry it.
    config_cls.family = name
    layer_cls.family = name
    layer_cls.config_cls = config_cls
    family = DeltaFamily(name, config_cls, layer_cls)
    _FAMILIES[name] = family
    return family


def _discover() -> None:
    from polykws.training import deltas  # the package imports every family folder

    deltas.discover_families()


def get_delta(name: str) -> DeltaFamily:
    if name not in _FAMILIES:
        _discover()
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ConfigError(f"unknown delta family {name!r}; registered: {', '.join(sorted(_FAMILIES))}") from None


def list_deltas() -> list[str]:
    """Every registered family, discovered from the package's folders (the public registry call)."""
    _discover()
    return sorted(_FAMILIES)


def families() -> list[DeltaFamily]:
    return [_FAMILIES[name] for name in list_deltas()]
