from polykws.training.deltas.dense.config import DenseConfig
from polykws.training.deltas.dense.layer import DenseLayer
from polykws.training.deltas.registry import register_delta

register_delta("dense", DenseConfig, DenseLayer)

__all__ = ["DenseConfig", "DenseLayer"]
