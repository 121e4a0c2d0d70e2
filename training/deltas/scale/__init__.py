from polykws.training.deltas.registry import register_delta
from polykws.training.deltas.scale.config import ScaleConfig
from polykws.training.deltas.scale.layer import ScaleLayer

register_delta("scale", ScaleConfig, ScaleLayer)

__all__ = ["ScaleConfig", "ScaleLayer"]
