"""Parameter-efficient per-language deltas (PEFT style).

    from polykws.training.deltas import attach, LowRankConfig
    dm = attach(base, LowRankConfig(rank=2), head="new", num_classes=12)
    ...train dm.trainable_parameters()...
    dm.save("uk.delta.pt"); plain = dm.merge_and_unload()   # same class, shapes and MACs as base

A family is one folder of this package (config.py + layer.py, registering itself in its
`__init__`); `discover_families()` imports every such folder, so adding a family needs no edit
anywhere else. `list_deltas()` is the registry call; each family's config and layer classes
are also importable from here by name (e.g. `LowRankConfig`). docs/METHOD.md explains each
family's parameter cost.
"""

import importlib
import pkgutil

from polykws.training.deltas.base import (
    BODY_TARGETS,
    HEAD_SITE,
    SITE_KINDS,
    AttachContext,
    DeltaConfig,
    DeltaLayer,
    candidate_sites,
    site_kind,
    weight_matrix_shape,
)
from polykws.training.deltas.budget import Budget, body_sites_deepest_first, make_budget
from polykws.training.deltas.registry import DeltaFamily, families, get_delta, list_deltas, register_delta


def discover_families() -> None:
    """Import every subpackage of this package (each family folder registers itself)."""
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            importlib.import_module(f"{__name__}.{info.name}")


discover_families()

from polykws.training.deltas.model import (  # noqa: E402
    DELTA_FORMAT_VERSION,
    Cost,
    DeltaModel,
    DeltaState,
    attach,
    iter_site_costs,
    load_delta,
    read_delta_file,
)


def __getattr__(name: str):
    # A family's classes by name (`ScaleConfig`, `ScaleLayer`, ...), from the registry.
    for family in families():
        for cls in (family.config_cls, family.layer_cls):
            if cls.__name__ == name:
                return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BODY_TARGETS",
    "DELTA_FORMAT_VERSION",
    "HEAD_SITE",
    "SITE_KINDS",
    "AttachContext",
    "Budget",
    "Cost",
    "DeltaConfig",
    "DeltaFamily",
    "DeltaLayer",
    "DeltaModel",
    "DeltaState",
    "attach",
    "body_sites_deepest_first",
    "candidate_sites",
    "discover_families",
    "families",
    "get_delta",
    "iter_site_costs",
    "list_deltas",
    "load_delta",
    "make_budget",
    "read_delta_file",
    "register_delta",
    "site_kind",
    "weight_matrix_shape",
]
