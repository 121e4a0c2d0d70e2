from polykws.training.deltas.recast.bank import TemplateBank, fit_bank, get_bank, load_bank, save_bank
from polykws.training.deltas.recast.config import RecastConfig
from polykws.training.deltas.recast.layer import RecastLayer
from polykws.training.deltas.registry import register_delta

register_delta("recast", RecastConfig, RecastLayer)

__all__ = ["RecastConfig", "RecastLayer", "TemplateBank", "fit_bank", "get_bank", "load_bank", "save_bank"]
