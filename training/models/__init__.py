from polykws.training.models.registry import create_model, list_models, register_model
from polykws.training.models.ds_cnn import DSCNN, DSCNNSpec, ds_cnn_l, ds_cnn_m, ds_cnn_s

__all__ = ["DSCNN", "DSCNNSpec", "create_model", "ds_cnn_l", "ds_cnn_m", "ds_cnn_s", "list_models", "register_model"]
