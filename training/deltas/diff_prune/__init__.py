from polykws.training.deltas.diff_prune.config import DiffPruneConfig
from polykws.training.deltas.diff_prune.layer import DiffPruneLayer
from polykws.training.deltas.registry import register_delta

register_delta("diff_prune", DiffPruneConfig, DiffPruneLayer)

__all__ = ["DiffPruneConfig", "DiffPruneLayer"]
