"""The baselines every method is compared with: head-only, BN-only, BitFit, LoRA, full
fine-tune and training from scratch."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from polykws.core import ConfigError, PolykwsError
from polykws.training.adapt.registry import MethodRun, register_method
from polykws.training.deltas import BODY_TARGETS, HEAD_SITE, Cost, get_delta


@dataclass(frozen=True)
class HeadOnlyConfig:
    """Only the new language head trains (a linear probe on the frozen base)."""


@register_method("head_only", HeadOnlyConfig, budgeted=False)
def _run_head_only(ctx, mcfg: HeadOnlyConfig) -> MethodRun:
    dm = ctx.attach(())
    ctx.probe_head(dm)
    # Then the same method epochs (and augmentation) every other method gets, on the head only.
    ctx.train(dm, [ctx.head_group(dm)], ctx.cfg.epochs, phase="head", seed_offset=2)
    return MethodRun(dm, dm, dm.cost())


@dataclass(frozen=True)
class BNOnlyConfig:
    """BatchNorm affine parameters (γ, β) + head; BN statistics stay frozen."""


@register_method("bn_only", BNOnlyConfig, budgeted=False)
def _run_bn_only(ctx, mcfg: BNOnlyConfig) -> MethodRun:
    dm = ctx.attach(())
    ctx.probe_head(dm)
    bn_params = [p for m in dm.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters()]
    for p in bn_params:
        p.requires_grad_(True)
    ctx.train(dm, [(bn_params, ctx.cfg.delta_lr, ctx.cfg.weight_decay), ctx.head_group(dm)], ctx.cfg.epochs, phase="bn", seed_offset=2)
    body = sum(p.numel() for p in bn_params)
    # The trained BN affine terms are ordinary weights of the plain model: no DeltaModel cost.
    return MethodRun(dm, None, Cost(body, dm.cost().head))


@dataclass(frozen=True)
class BiasOnlyConfig:
    """BitFit: the `bias` family on every body site + head (no budget fitting)."""


@register_method("bias_only", BiasOnlyConfig, budgeted=False)
def _run_bias_only(ctx, mcfg: BiasOnlyConfig) -> MethodRun:
    dm = ctx.attach(get_delta("bias").config_cls(targets=BODY_TARGETS))
    ctx.train_deltas(dm)
    return MethodRun(dm, dm, dm.cost())


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA on every pointwise conv at a fixed rank, plus the language head."""

    rank: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"LoRAConfig.rank must be an integer >= 1, got {self.rank!r}")


@register_method("lora", LoRAConfig, budgeted=False)
def _run_lora(ctx, mcfg: LoRAConfig) -> MethodRun:
    dm = ctx.attach(get_delta("lowrank").config_cls(rank=mcfg.rank, targets=("blocks.*.pw",)))
    ctx.train_deltas(dm)
    return MethodRun(dm, dm, dm.cost())


@dataclass(frozen=True)
class FullFinetuneConfig:
    """Every base weight + head. BN statistics are re-estimated unless `freeze_bn_stats`."""

    freeze_bn_stats: bool = False


@register_method("full_ft", FullFinetuneConfig, budgeted=False)
def _run_full_ft(ctx, mcfg: FullFinetuneConfig) -> MethodRun:
    dm = ctx.attach(())
    ctx.probe_head(dm)  # with BN statistics frozen, whatever the fine-tune does later
    dm.freeze_bn_stats = mcfg.freeze_bn_stats
    head = list(getattr(dm.model, HEAD_SITE).parameters())
    body = [p for n, p in dm.model.named_parameters() if not n.startswith(HEAD_SITE + ".")]
    for p in body:
        p.requires_grad_(True)
    ctx.train(dm, [(body, ctx.cfg.body_lr, ctx.cfg.weight_decay), ctx.head_group(dm)], ctx.cfg.epochs, phase="full", seed_offset=2)
    # Base weights changed directly: the merged model is the result, there is no delta file.
    return MethodRun(dm, None, Cost(sum(p.numel() for p in body), sum(p.numel() for p in head)))


@dataclass(frozen=True)
class ScratchConfig:
    """The base architecture trained from a random init on the target language alone."""

    epochs_multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not self.epochs_multiplier > 0:
            raise ConfigError(f"ScratchConfig.epochs_multiplier must be > 0, got {self.epochs_multiplier!r}")


@register_method("scratch", ScratchConfig, budgeted=False)
def _run_scratch(ctx, mcfg: ScratchConfig) -> MethodRun:
    from polykws.training.models import create_model

    name = getattr(ctx.base_model, "model_name", None)
    if name is None:
        raise PolykwsError("scratch needs a base built by create_model() (it carries model_name)")
    model = create_model(name, num_classes=ctx.num_classes, input_shape=tuple(ctx.base_model.input_shape))
    epochs = max(1, int(round(ctx.cfg.epochs * mcfg.epochs_multiplier)))
    ctx.train(model, [(list(model.parameters()), ctx.cfg.body_lr, ctx.cfg.weight_decay)], epochs, phase="scratch", seed_offset=2)
    head = sum(p.numel() for p in getattr(model, HEAD_SITE).parameters())
    return MethodRun(model, None, Cost(sum(p.numel() for p in model.parameters()) - head, head))
