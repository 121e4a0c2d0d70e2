from polykws.training.deltas.lowrank.config import LowRankConfig
from polykws.training.deltas.lowrank.layer import LowRankLayer
from polykws.training.deltas.registry import register_delta

register_delta("lowrank", LowRankConfig, LowRankLayer)

__all__ = ["LowRankConfig", "LowRankLayer"]
