"""One transfer training phase on in-memory splits, run by the one training loop (training/fit.py).

Speed: when only the head trains (the linear probe, head-only), the frozen body's pooled
embedding (`forward_features` -> `forward_head(pre_logits=True)`) is computed once per split and
cached. That is exact: BN is frozen and the only dropout sits in the head, behind the pooling.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from polykws.training.adapt.config import TransferConfig
from polykws.training.adapt.data import Split, accuracy, class_weights, evaluate_logits, weighted_accuracy
from polykws.training.deltas import HEAD_SITE
from polykws.training.fit import EpochMetrics, Loop, LoopState, StepHooks, WarmupCosine, make_spec_augment, run_loop

ParamGroups = list[tuple[list[nn.Parameter], float, float]]  # (params, lr, weight_decay)


def train_phase(
    module: nn.Module,
    data: dict[str, Split],
    cfg: TransferConfig,
    param_groups: ParamGroups,
    epochs: int,
    *,
    phase: str,
    net: nn.Module | None = None,
    seed_offset: int = 0,
    hooks: StepHooks | None = None,
    select_best: bool = True,
    augment: bool = True,
    history: list[EpochMetrics] | None = None,
) -> float:
    """Train `module`'s `param_groups` for `epochs`; returns the validation accuracy kept.

    `net` is the network to run (default `module`; a DeltaModel's inner model, whose
    `forward_features`/`forward_head` allow the embedding cache). With `select_best` the
    trainable parameters end at their best-validation epoch (accuracy, then loss).
    """
    hooks = hooks or StepHooks()
    net = module if net is None else net
    module.eval()  # epochs switch to train mode; validation and the caches run in eval mode
    spec = make_spec_augment(cfg.spec_augment) if augment else None
    train_fwd, val_fwd, train_x, val_x = _inputs(module, net, data, cfg, spec is not None)
    weight = _class_weight(data, cfg)
    evaluate = _evaluator(module, val_fwd, val_x, data["val"].y, cfg.eval_batch_size, weight)
    groups = [{"params": ps, "lr": lr, "weight_decay": wd} for ps, lr, wd in param_groups if ps]
    if not groups or epochs <= 0:
        if hooks.before_eval is not None:
            hooks.before_eval()
        return evaluate()[1]
    best: dict[str, torch.Tensor] = {}
    loop = _loop(module, data["train"].y, train_x, train_fwd, groups, epochs, cfg, seed_offset, evaluate, weight)
    loop.augment, loop.hooks, loop.phase = spec, hooks, phase
    if select_best:
        loop.select_key = lambda m: (m.val_acc, -m.val_loss)
        loop.on_best = lambda m: best.update({n: p.detach().clone() for n, p in _trainable(module).items()})
    state = run_loop(loop, epochs, LoopState())
    if history is not None:
        history.extend(state.history)
    if select_best:
        with torch.no_grad():
            for name, p in _trainable(module).items():
                p.copy_(best[name])
        module.eval()
        return state.best_key[0]
    module.eval()
    if hooks.before_eval is not None:
        hooks.before_eval()
    return evaluate()[1]


def _class_weight(data: dict[str, Split], cfg: TransferConfig) -> torch.Tensor | None:
    """The loss's class weights under `cfg.class_balance` (from the training labels), else None."""
    if not cfg.class_balance:
        return None
    y = data["train"].y
    return class_weights(y, int(max(int(y.max()), int(data["val"].y.max())) + 1), cfg.class_balance)


def _loop(module, y, train_x, train_fwd, groups, epochs, cfg: TransferConfig, seed_offset: int, evaluate,
          weight: torch.Tensor | None = None) -> Loop:
    n = int(y.shape[0])
    opt = torch.optim.AdamW(groups)
    total = cfg.steps_per_epoch(n) * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(total, min(cfg.warmup_steps, total // 4)))
    seed = cfg.seed * 100003 + seed_offset * 1009

    def begin_epoch(epoch: int):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch - 1))
        batches = ((train_x[idx], y[idx]) for idx in order.split(cfg.batch_size))
        return batches, torch.Generator().manual_seed(seed + epoch - 1 + 7)

    return Loop(
        model=module,
        forward=train_fwd,
        optimizer=opt,
        scheduler=sched,
        begin_epoch=begin_epoch,
        evaluate=evaluate,
        loss_fn=lambda logits, yb: F.cross_entropy(logits, yb, weight=_fit(weight, logits), label_smoothing=cfg.label_smoothing),
        grad_clip_norm=cfg.grad_clip_norm,
    )


def _trainable(module: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def _body_is_frozen(module: nn.Module, net: nn.Module) -> bool:
    """True when everything in front of the head computes the same embedding in every epoch."""
    if not (hasattr(net, "forward_features") and hasattr(net, "forward_head")):
        return False
    body = [(n, m) for n, m in net.named_children() if n != HEAD_SITE]
    if any(p.requires_grad for _, m in body for p in m.parameters()):
        return False
    was = module.training
    module.train()  # a BN that would update its statistics in training makes the body live
    live = any(isinstance(s, nn.modules.batchnorm._BatchNorm) and s.training for _, m in body for s in m.modules())
    module.train(was)
    return not live


def _inputs(module: nn.Module, net: nn.Module, data: dict[str, Split], cfg: TransferConfig, augmenting: bool):
    """(train forward, val forward, train inputs, val inputs): embeddings when the body is frozen."""
    if not _body_is_frozen(module, net):
        return net, net, data["train"].x, data["val"].x
    with torch.no_grad():
        embed = lambda x: net.forward_head(net.forward_features(x), pre_logits=True)  # noqa: E731
        val_x = evaluate_logits(embed, data["val"].x, cfg.eval_batch_size)
        # Online augmentation changes the training inputs every step: only validation is cached.
        train_x = data["train"].x if augmenting else evaluate_logits(embed, data["train"].x, cfg.eval_batch_size)
    train_fwd = net if augmenting else net.forward_head
    return train_fwd, net.forward_head, train_x, val_x


def _fit(weight: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
    """The class weights padded to the head's width (padding slots are never a target)."""
    if weight is None or weight.numel() == logits.shape[1]:
        return weight
    return torch.cat([weight, torch.zeros(logits.shape[1] - weight.numel())])


def _evaluator(module: nn.Module, fwd: Callable, x: torch.Tensor, y: torch.Tensor, batch: int,
               weight: torch.Tensor | None = None) -> Callable[[], tuple[float, float]]:
    def evaluate() -> tuple[float, float]:
        was = module.training
        module.eval()
        logits = evaluate_logits(fwd, x, batch)
        module.train(was)
        if weight is None:
            return float(F.cross_entropy(logits, y)), accuracy(logits, y)
        return float(F.cross_entropy(logits, y, weight=_fit(weight, logits))), weighted_accuracy(logits, y, _fit(weight, logits))

    return evaluate
