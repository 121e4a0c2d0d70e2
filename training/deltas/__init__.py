"""Parameter-efficient per-language deltas (PEFT style).

    from polykws.training.deltas import attach, LowRankConfig
    dm = attach(base, LowRankConfig(rank=2), head="new", num_classes=12)
    ...train dm.trainable_parameters()...
    dm.save("uk.delta.pt"); plain = dm.merge_and_unload()   # same class, shapes and MACs as base

Families register themselves on import (one folder each: config.py + layer.py); see
`list_deltas()`. docs/METHOD.md explains each family's parameter cost.
"""

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
from polykws.training.deltas.registry import DeltaFamily, get_delta, list_deltas, register_delta

# Importing the family packages registers them (order only affects list order in messages).
from polykws.training.deltas.scale import ScaleConfig, ScaleLayer  # noqa: E402
from polykws.training.deltas.bias import BiasConfig, BiasLayer  # noqa: E402
from polykws.training.deltas.lowrank import LowRankConfig, LowRankLayer  # noqa: E402
from polykws.training.deltas.dense import DenseConfig, DenseLayer  # noqa: E402
from polykws.training.deltas.diff_prune import DiffPruneConfig, DiffPruneLayer  # noqa: E402
from polykws.training.deltas.recast import RecastConfig, RecastLayer  # noqa: E402
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

__all__ = [
    "BODY_TARGETS",
    "DELTA_FORMAT_VERSION",
    "HEAD_SITE",
    "SITE_KINDS",
    "AttachContext",
    "BiasConfig",
    "BiasLayer",
    "Cost",
    "DeltaConfig",
    "DeltaFamily",
    "DeltaLayer",
    "DeltaModel",
    "DeltaState",
    "DenseConfig",
    "DenseLayer",
    "DiffPruneConfig",
    "DiffPruneLayer",
    "LowRankConfig",
    "LowRankLayer",
    "RecastConfig",
    "RecastLayer",
    "ScaleConfig",
    "ScaleLayer",
    "attach",
    "candidate_sites",
    "get_delta",
    "iter_site_costs",
    "list_deltas",
    "load_delta",
    "read_delta_file",
    "register_delta",
    "site_kind",
    "weight_matrix_shape",
]
