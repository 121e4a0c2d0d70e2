"""Per-language transfer: `adapt(base_model, splits, method_cfg, transfer_cfg)`.

- config: TransferConfig, the budget and recipe every method shares;
- data: validated in-memory splits and scoring;
- train: one training phase on the one training loop (training/fit.py);
- harness: `adapt()` and the AdaptContext a method runs with;
- registry: register_method / get_method / method_config;
- budget: each delta family alone, fitted by its own `fit_to_budget()`;
- baselines: head-only, BN-only, BitFit, LoRA, full fine-tune, scratch.
SWR registers itself from training/swr.
"""

from polykws.training.adapt.config import TransferConfig
from polykws.training.adapt.data import Split, accuracy, evaluate_logits, prepare_splits, score
from polykws.training.adapt.harness import AdaptContext, adapt
from polykws.training.adapt.registry import (
    AdaptResult,
    MethodRun,
    MethodSpec,
    get_method,
    list_methods,
    method_config,
    method_name_of,
    register_method,
)
from polykws.training.adapt.budget import FamilyMethodConfig, fit_family_to_budget  # noqa: E402  (registers the families)
from polykws.training.adapt import baselines  # noqa: E402,F401  (registers the baselines)
from polykws.training.adapt.baselines import (  # noqa: E402
    BiasOnlyConfig,
    BNOnlyConfig,
    FullFinetuneConfig,
    HeadOnlyConfig,
    LoRAConfig,
    ScratchConfig,
)
from polykws.training.adapt.train import train_phase  # noqa: E402
from polykws.training.swr import register as _register_swr  # noqa: E402

_register_swr(register_method)

__all__ = [
    "AdaptContext",
    "AdaptResult",
    "BNOnlyConfig",
    "BiasOnlyConfig",
    "FamilyMethodConfig",
    "FullFinetuneConfig",
    "HeadOnlyConfig",
    "LoRAConfig",
    "MethodRun",
    "MethodSpec",
    "ScratchConfig",
    "Split",
    "TransferConfig",
    "accuracy",
    "adapt",
    "evaluate_logits",
    "fit_family_to_budget",
    "get_method",
    "list_methods",
    "method_config",
    "method_name_of",
    "prepare_splits",
    "register_method",
    "score",
    "train_phase",
]
