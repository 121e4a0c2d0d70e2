from polykws.training.deltas.bias.config import BiasConfig
from polykws.training.deltas.bias.layer import BiasLayer
from polykws.training.deltas.registry import register_delta

register_delta("bias", BiasConfig, BiasLayer)

__all__ = ["BiasConfig", "BiasLayer"]
