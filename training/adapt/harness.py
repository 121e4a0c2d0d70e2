"""The per-language adaptation harness: `adapt(base_model, splits, method_cfg, transfer_cfg)`.

Every method (SWR, each delta family at a budget, and the baselines) runs through this one
harness with the same data, the same seeds, the same epoch budget and the same model
selection, so their accuracies are comparable:

1. The language head is new (each language has its own labels) and is first fitted as a linear
   probe on the frozen base's pooled embeddings (LP-FT, Kumar et al. 2022). `head_only` stops
   here (with the full epoch budget).
2. The method's trainable parameters are trained with AdamW + cosine decay; BN statistics stay
   frozen for every parameter-efficient method. Families that need a search phase
   (diff_prune) are finalized after `finalize_fraction` of the epochs and then fine-tuned.
3. The epoch with the best validation accuracy is kept; the merged plain model is scored on
   the test split (so the reported figure is the deployed model's, not the wrapper's).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import nn

from polykws.core import ConfigError, seed_everything
from polykws.training.adapt.config import TransferConfig
from polykws.training.adapt.data import Split, prepare_splits, score
from polykws.training.adapt.registry import AdaptResult, get_method, method_name_of
from polykws.training.adapt.train import ParamGroups, train_phase
from polykws.training.deltas import HEAD_SITE, DeltaConfig, DeltaModel, attach
from polykws.training.fit import EpochMetrics, StepHooks


def adapt(base_model: nn.Module, splits: Mapping[str, Any], method_cfg: Any, transfer_cfg: TransferConfig | None = None) -> AdaptResult:
    """Adapt `base_model` to a new language. `splits`: {"train","val"[,"test"]} FeatureSplits.

    Returns the merged plain model, the DeltaModel (for delta files), the cost, validation and
    test accuracy (of the merged model) and the training history.
    """
    cfg = transfer_cfg or TransferConfig()
    name = method_name_of(method_cfg)
    spec = get_method(name)
    if not isinstance(method_cfg, spec.config_cls):
        raise ConfigError(f"method {name!r} needs a {spec.config_cls.__name__}, got {type(method_cfg).__name__}")
    data, labels = prepare_splits(splits, base_model)
    old_threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        seed_everything(cfg.seed)
        t0 = time.perf_counter()
        ctx = AdaptContext(base_model, data, labels, cfg, [])
        run = spec.run(ctx, method_cfg)
        wall = time.perf_counter() - t0
        model = run.model
        merged = model.merge_and_unload() if isinstance(model, DeltaModel) else _plain_copy(model)
        val_acc = score(merged, data["val"], cfg.eval_batch_size)
        test_acc = score(merged, data["test"], cfg.eval_batch_size) if "test" in data else None
    finally:
        torch.set_num_threads(old_threads)
    return AdaptResult(
        method=name,
        method_config=asdict(method_cfg),
        model=merged,
        delta_model=run.delta_model,
        labels=labels,
        cost=run.cost,
        val_acc=val_acc,
        test_acc=test_acc,
        wall_s=wall,
        history=ctx.history,
        details=run.details,
    )


def head_group(dm: DeltaModel, cfg: TransferConfig) -> tuple[list[nn.Parameter], float, float]:
    """The language head's parameters with the head's learning rate and weight decay."""
    return list(getattr(dm.model, HEAD_SITE).parameters()), cfg.head_lr, cfg.head_weight_decay


def delta_groups(dm: DeltaModel, cfg: TransferConfig) -> ParamGroups:
    """What a delta phase trains: the trainable delta parameters, then the head."""
    deltas = [p for layer in dm.delta_layers().values() for p in layer.parameters() if p.requires_grad]
    return [(deltas, cfg.delta_lr, cfg.weight_decay), head_group(dm, cfg)]


def _plain_copy(model: nn.Module) -> nn.Module:  # scratch: already a plain model
    plain = copy.deepcopy(model)
    for p in plain.parameters():
        p.requires_grad_(True)
    return plain.eval()


@dataclass
class AdaptContext:
    """What a method's run function gets: the base, the data, the labels and shared helpers."""

    base_model: nn.Module
    data: dict[str, Split]
    labels: tuple[str, ...]
    cfg: TransferConfig
    history: list[EpochMetrics]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def train(self, module: nn.Module, param_groups: ParamGroups, epochs: int, *, phase: str, **kwargs: Any) -> float:
        """One training phase of `module` (train_phase); its epochs join the run's history.

        A DeltaModel runs its inner network, so a frozen body's embedding can be cached."""
        net = module.model if isinstance(module, DeltaModel) else module
        return train_phase(module, self.data, self.cfg, param_groups, epochs, phase=phase, net=net, history=self.history, **kwargs)

    def attach(self, configs: DeltaConfig | list[DeltaConfig] | tuple = ()) -> DeltaModel:
        return attach(self.base_model, configs, head="new", num_classes=self.num_classes, weight_grid=self.cfg.weight_grid)

    def head_group(self, dm: DeltaModel) -> tuple[list[nn.Parameter], float, float]:
        return head_group(dm, self.cfg)

    def probe_head(self, dm: DeltaModel, epochs: int | None = None) -> float:
        """Fit the new head on frozen embeddings (everything else temporarily frozen)."""
        epochs = self.cfg.probe_epochs if epochs is None else epochs
        head = getattr(dm.model, HEAD_SITE)
        frozen = [p for p in dm.parameters() if p.requires_grad and all(p is not q for q in head.parameters())]
        for p in frozen:
            p.requires_grad_(False)
        try:
            return self.train(dm, [self.head_group(dm)], epochs, phase="probe", seed_offset=1, augment=False)
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def delta_groups(self, dm: DeltaModel) -> ParamGroups:
        return delta_groups(dm, self.cfg)

    def train_deltas(self, dm: DeltaModel, *, phase: str = "deltas", epochs: int | None = None) -> float:
        """Probe the head, then train deltas + head; two-phase families finalize midway."""
        epochs = self.cfg.epochs if epochs is None else epochs
        self.probe_head(dm)
        if not dm.needs_finalize:
            return self.train(dm, self.delta_groups(dm), epochs, phase=phase, seed_offset=2)
        split = self.cfg.finalize_split(epochs)
        reg = StepHooks(extra_loss=lambda step: dm.regularization())
        self.train(dm, self.delta_groups(dm), split["search"], phase=f"{phase}-search", seed_offset=2, hooks=reg, select_best=False)
        dm.finalize()
        return self.train(dm, self.delta_groups(dm), split["fixed"], phase=f"{phase}-fixed", seed_offset=3)
