"""The per-language adaptation harness: `adapt(base_model, splits, method_cfg, train_cfg)`.

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

Methods register themselves (`register_method(name, ConfigCls)`), like delta families.
Speed: the frozen part of the network in front of the first trainable layer is computed once
per split and cached (exact, because BN is frozen and the only dropout sits before the head),
so head-only and late-layer deltas train in seconds on a CPU.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from polykws.training.deltas import (
    BODY_TARGETS,
    HEAD_SITE,
    Cost,
    DeltaConfig,
    DeltaModel,
    attach,
    candidate_sites,
    get_delta,
    list_deltas,
)
from polykws.core import ConfigError, PolykwsError, seed_everything

# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """What every method shares. Learning rates are per parameter role."""

    epochs: int = 30
    batch_size: int = 64
    delta_lr: float = 1e-2  # delta parameters (scale, coefficients, low-rank factors, ...)
    head_lr: float = 1e-2  # the language head
    body_lr: float = 2e-3  # base weights in full fine-tune / BN-only / scratch
    weight_decay: float = 0.0
    head_weight_decay: float = 1e-3
    label_smoothing: float = 0.0
    # Linear probe on frozen embeddings before the method trains (its own epochs, cached, cheap).
    probe_epochs: int = 60
    # Two-phase families (diff_prune): fraction of `epochs` spent before finalize().
    finalize_fraction: float = 0.6
    warmup_steps: int = 10
    grad_clip_norm: float = 5.0
    # Online SpecAugment (datasets.spec_augment) on every training batch of the method's own
    # phases (not the linear probe, which stays on cached embeddings). 0 masks disables it.
    spec_time_masks: int = 0
    spec_time_mask_frames: int = 6
    spec_freq_masks: int = 0
    spec_freq_mask_bins: int = 2
    seed: int = 0
    eval_batch_size: int = 1024
    # torch intra-op threads (None leaves torch's default). The benchmark pins 1 per worker.
    num_threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("delta_lr", "head_lr", "body_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "head_weight_decay", "label_smoothing", "grad_clip_norm"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not isinstance(self.probe_epochs, int) or self.probe_epochs < 0:
            raise ConfigError(f"TrainConfig.probe_epochs must be an integer >= 0, got {self.probe_epochs!r}")
        if not 0.0 < self.finalize_fraction < 1.0:
            raise ConfigError(f"TrainConfig.finalize_fraction must be in (0, 1), got {self.finalize_fraction!r}")
        if self.label_smoothing >= 1:
            raise ConfigError(f"TrainConfig.label_smoothing must be < 1, got {self.label_smoothing!r}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"TrainConfig.num_threads must be >= 1, got {self.num_threads!r}")
        for name in ("spec_time_masks", "spec_time_mask_frames", "spec_freq_masks", "spec_freq_mask_bins"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be an integer >= 0, got {getattr(self, name)!r}")

    @property
    def augments(self) -> bool:
        return (self.spec_time_masks and self.spec_time_mask_frames) or (self.spec_freq_masks and self.spec_freq_mask_bins)

    def replace(self, **changes: Any) -> "TrainConfig":
        return type(self)(**{**asdict(self), **changes})


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


@dataclass
class Split:
    x: torch.Tensor  # (N, 1, frames, features) float32
    y: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.y.shape[0])


def _to_split(name: str, split: Any, input_shape: tuple[int, int] | None) -> Split:
    for attr in ("x", "y"):
        if not hasattr(split, attr):
            raise PolykwsError(f"split {name!r}: expected an object with .x and .y (a FeatureSplit), got {type(split).__name__}")
    x = torch.as_tensor(np.asarray(split.x, dtype=np.float32))
    y = torch.as_tensor(np.asarray(split.y, dtype=np.int64))
    if x.dim() != 3:
        raise PolykwsError(f"split {name!r}: features must be (N, frames, features), got {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise PolykwsError(f"split {name!r}: {x.shape[0]} feature rows but labels of shape {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise PolykwsError(f"split {name!r} is empty")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise PolykwsError(f"split {name!r}: features are {tuple(x.shape[1:])} but the base expects {tuple(input_shape)}")
    if not torch.isfinite(x).all():
        raise PolykwsError(f"split {name!r}: features contain NaN or inf")
    return Split(x.unsqueeze(1).contiguous(), y)


def prepare_splits(splits: Mapping[str, Any], base_model: nn.Module) -> tuple[dict[str, Split], tuple[str, ...]]:
    """Validate and convert {"train","val"[,"test"]} FeatureSplits; returns tensors and labels."""
    missing = [s for s in ("train", "val") if s not in splits]
    if missing:
        raise PolykwsError(f"adapt() needs splits 'train' and 'val'; missing {missing}")
    input_shape = getattr(base_model, "input_shape", None)
    out = {name: _to_split(name, s, input_shape) for name, s in splits.items() if s is not None}
    labels = tuple(getattr(splits["train"], "labels", ()) or ())
    for name, s in splits.items():
        other = tuple(getattr(s, "labels", ()) or ())
        if labels and other and other != labels:
            raise PolykwsError(f"split {name!r} has labels {other} but train has {labels}")
    num_classes = len(labels) if labels else int(max(int(s.y.max()) for s in out.values())) + 1
    for name, s in out.items():
        if int(s.y.min()) < 0 or int(s.y.max()) >= num_classes:
            raise PolykwsError(f"split {name!r}: label ids outside 0..{num_classes - 1}")
    if not labels:
        labels = tuple(str(i) for i in range(num_classes))
    return out, labels


# ----------------------------------------------------------------------------------------------
# Staged forward (exact prefix caching for DS-CNN-shaped models)
# ----------------------------------------------------------------------------------------------


class Stages:
    """A DS-CNN forward split into stages: stem, each block, pooling, dropout+head.

    `first_trainable` is the earliest stage holding a trainable parameter; everything before
    it is frozen and (when no module in it behaves differently in train mode) is computed once.
    Models without the DS-CNN layout fall back to a single stage (no caching).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        m = model
        if all(hasattr(m, a) for a in ("pad0", "conv0", "bn0", "blocks", "dropout", HEAD_SITE)):
            stem = nn.ModuleList([m.pad0, m.conv0, m.bn0])
            self.modules: list[nn.Module] = [stem, *m.blocks, nn.Identity(), nn.ModuleList([m.dropout, getattr(m, HEAD_SITE)])]
            self.fns: list[Callable[[torch.Tensor], torch.Tensor]] = [
                lambda x: torch.relu(m.bn0(m.conv0(m.pad0(x)))),
                *[blk for blk in m.blocks],
                lambda h: h.mean(dim=(2, 3)),
                lambda h: getattr(m, HEAD_SITE)(m.dropout(h)),
            ]
        else:
            self.modules = [m]
            self.fns = [m]

    def first_trainable(self) -> int:
        for i, mod in enumerate(self.modules):
            if any(p.requires_grad for p in mod.parameters()):
                return i
        return len(self.modules) - 1

    def cacheable_prefix(self) -> int:
        """Number of leading stages that may be cached in the current train/eval mode."""
        k = self.first_trainable()
        for i in range(k):
            for sub in self.modules[i].modules():
                if sub.training and isinstance(sub, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
                    return i
        return k

    def run(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        for fn in self.fns[start:stop]:
            x = fn(x)
        return x


def _spec_augment(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    from polykws.datasets import SpecAugmentConfig, spec_augment

    sa = SpecAugmentConfig(cfg.spec_time_masks, cfg.spec_time_mask_frames, cfg.spec_freq_masks, cfg.spec_freq_mask_bins)
    return lambda batch, generator: spec_augment(batch, sa, generator)


@torch.no_grad()
def _precompute(stages: Stages, x: torch.Tensor, k: int, batch: int) -> torch.Tensor:
    if k == 0:
        return x
    return torch.cat([stages.run(x[i : i + batch], 0, k) for i in range(0, x.shape[0], batch)])


# ----------------------------------------------------------------------------------------------
# Training loop
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochRecord:
    phase: str
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float


def _lr_lambda(total_steps: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


@torch.no_grad()
def evaluate_logits(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == y).float().mean())


class Trainer:
    """Trains `module`'s trainable parameters on cached stage inputs; keeps the best-val state.

    `param_groups`: [(params, lr, weight_decay)]. `extra_loss(step)` adds a penalty (L0, SWR
    cost); `on_step(step)` runs after each optimizer step (SWR's dual ascent).
    """

    def __init__(self, module: nn.Module, data: dict[str, Split], cfg: TrainConfig, *, forward_model: nn.Module | None = None):
        self.module = module
        self.data = data
        self.cfg = cfg
        self.forward_model = forward_model if forward_model is not None else module
        self.history: list[EpochRecord] = []

    def _named_trainable(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.module.named_parameters() if p.requires_grad}

    def fit(
        self,
        param_groups: list[tuple[list[nn.Parameter], float, float]],
        epochs: int,
        *,
        phase: str,
        seed_offset: int = 0,
        extra_loss: Callable[[int], torch.Tensor] | None = None,
        before_step: Callable[[int], None] | None = None,
        on_step: Callable[[int], None] | None = None,
        before_eval: Callable[[], None] | None = None,
        select_best: bool = True,
        augment: bool = True,
    ) -> float:
        cfg = self.cfg
        self.module.train()
        stages = Stages(self.forward_model)
        k = stages.cacheable_prefix()
        spec = _spec_augment(cfg) if augment and cfg.augments else None
        # Cached inputs of stage k: computed once with the frozen prefix. With online
        # augmentation the training inputs change every step, so only validation is cached.
        self.module.eval()
        k_train = 0 if spec is not None else k
        cached = {
            "train": _precompute(stages, self.data["train"].x, k_train, cfg.eval_batch_size),
            "val": _precompute(stages, self.data["val"].x, k, cfg.eval_batch_size),
        }
        groups = [{"params": ps, "lr": lr, "weight_decay": wd} for ps, lr, wd in param_groups if ps]
        if not groups or epochs <= 0:
            if before_eval is not None:
                before_eval()
            return self._val(stages, k, cached)[1]
        opt = torch.optim.AdamW(groups)
        train = self.data["train"]
        n = len(train)
        steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
        total = steps_per_epoch * epochs
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, min(cfg.warmup_steps, total // 4)))
        params = [p for g in groups for p in g["params"]]
        best = (-1.0, float("inf"))
        best_state = None
        step = 0
        for epoch in range(epochs):
            t0 = time.perf_counter()
            self.module.train()
            gen = torch.Generator().manual_seed(cfg.seed * 100003 + seed_offset * 1009 + epoch)
            order = torch.randperm(n, generator=gen)
            aug_gen = torch.Generator().manual_seed(cfg.seed * 100003 + seed_offset * 1009 + epoch + 7)
            tot_loss = tot_correct = 0.0
            for i in range(0, n, cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                if before_step is not None:
                    before_step(step)
                xb = cached["train"][idx]
                if spec is not None:
                    xb = stages.run(spec(xb, aug_gen), 0, k)
                logits = stages.run(xb, k)
                yb = train.y[idx]
                loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
                total_loss = loss if extra_loss is None else loss + extra_loss(step)
                opt.zero_grad(set_to_none=True)
                total_loss.backward()
                if cfg.grad_clip_norm > 0:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip_norm)
                opt.step()
                sched.step()
                if on_step is not None:
                    on_step(step)
                step += 1
                tot_loss += float(loss.detach()) * len(idx)
                tot_correct += float((logits.argmax(1) == yb).sum())
            if before_eval is not None:
                before_eval()
            val_loss, val_acc = self._val(stages, k, cached)
            self.history.append(EpochRecord(phase, epoch, tot_loss / n, tot_correct / n, val_loss, val_acc, time.perf_counter() - t0))
            if select_best and (val_acc > best[0] or (val_acc == best[0] and val_loss < best[1])):
                best = (val_acc, val_loss)
                best_state = {name: p.detach().clone() for name, p in self._named_trainable().items()}
        if select_best and best_state is not None:
            with torch.no_grad():
                for name, p in self._named_trainable().items():
                    p.copy_(best_state[name])
        self.module.eval()
        if select_best:
            return best[0]
        if before_eval is not None:
            before_eval()
        return self._val(stages, k, cached)[1]

    def _val(self, stages: Stages, k: int, cached: dict[str, torch.Tensor]) -> tuple[float, float]:
        was = self.module.training
        self.module.eval()
        logits = evaluate_logits(lambda h: stages.run(h, k), cached["val"], self.cfg.eval_batch_size)
        self.module.train(was)
        return float(F.cross_entropy(logits, self.data["val"].y)), accuracy(logits, self.data["val"].y)


# ----------------------------------------------------------------------------------------------
# Results and the method registry
# ----------------------------------------------------------------------------------------------


@dataclass
class AdaptResult:
    method: str
    method_config: dict[str, Any]
    model: nn.Module  # the merged, plain model (base class, base shapes, language head)
    delta_model: DeltaModel | None  # None for methods that change the base weights directly
    labels: tuple[str, ...]
    cost: Cost  # updated parameters: body + head
    val_acc: float
    test_acc: float | None
    wall_s: float
    history: list[EpochRecord] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "body_params": self.cost.body,
            "head_params": self.cost.head,
            "total_params": self.cost.total,
            "val_acc": self.val_acc,
            "test_acc": self.test_acc,
            "wall_s": self.wall_s,
            **{k: v for k, v in self.details.items() if isinstance(v, (int, float, str))},
        }


@dataclass
class MethodRun:
    """What a method hands back to the harness."""

    model: nn.Module  # trained model (a DeltaModel or a plain module)
    delta_model: DeltaModel | None
    cost: Cost
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    config_cls: type
    run: Callable[..., MethodRun]
    budgeted: bool
    defaults: tuple[tuple[str, Any], ...] = ()


_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, config_cls: type, *, budgeted: bool, defaults: Mapping[str, Any] | None = None):
    """Register `fn(ctx, method_cfg) -> MethodRun` as method `name`. `defaults` are config
    values the name implies (each delta family is the generic family method with `family=name`)."""

    def deco(fn: Callable[..., MethodRun]) -> Callable[..., MethodRun]:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered")
        _METHODS[name] = MethodSpec(name, config_cls, fn, budgeted, tuple(sorted((defaults or {}).items())))
        return fn

    return deco


def list_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> MethodSpec:
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; registered: {', '.join(sorted(_METHODS))}") from None


def method_config(name: str, *, budget_params: int | None = None, **overrides: Any):
    """The config of method `name`; `budget_params` applies to budgeted methods only."""
    spec = get_method(name)
    kwargs = {**dict(spec.defaults), **overrides}
    names = {f.name for f in fields(spec.config_cls)}
    if budget_params is not None:
        if "budget_params" not in names:
            raise ConfigError(f"method {name!r} takes no budget (it is a fixed baseline)")
        kwargs["budget_params"] = budget_params
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise ConfigError(f"method {name!r}: unknown options {unknown}; known: {sorted(names)}")
    return spec.config_cls(**kwargs)


def method_name_of(cfg: Any) -> str:
    """The registered name of a method config (a config may name itself via `method_name`)."""
    named = getattr(cfg, "method_name", None)
    if named is not None:
        return named
    hits = [spec.name for spec in _METHODS.values() if type(cfg) is spec.config_cls]
    if len(hits) != 1:
        raise ConfigError(f"{type(cfg).__name__} is not the config of exactly one registered method")
    return hits[0]


# ----------------------------------------------------------------------------------------------
# The harness
# ----------------------------------------------------------------------------------------------


def adapt(base_model: nn.Module, splits: Mapping[str, Any], method_cfg: Any, train_cfg: TrainConfig | None = None) -> AdaptResult:
    """Adapt `base_model` to a new language. `splits`: {"train","val"[,"test"]} FeatureSplits.

    Returns the merged plain model, the DeltaModel (for delta files), the cost, validation and
    test accuracy (of the merged model) and the training history.
    """
    train_cfg = train_cfg or TrainConfig()
    name = method_name_of(method_cfg)
    spec = get_method(name)
    if not isinstance(method_cfg, spec.config_cls):
        raise ConfigError(f"method {name!r} needs a {spec.config_cls.__name__}, got {type(method_cfg).__name__}")
    data, labels = prepare_splits(splits, base_model)
    old_threads = torch.get_num_threads()
    if train_cfg.num_threads is not None:
        torch.set_num_threads(train_cfg.num_threads)
    try:
        seed_everything(train_cfg.seed)
        t0 = time.perf_counter()
        trainer_history: list[EpochRecord] = []
        ctx = AdaptContext(base_model, data, labels, train_cfg, trainer_history)
        run = spec.run(ctx, method_cfg)
        wall = time.perf_counter() - t0
        model = run.model
        merged = model.merge_and_unload() if isinstance(model, DeltaModel) else _plain_copy(model)
        val_acc = score(merged, data["val"], train_cfg.eval_batch_size)
        test_acc = score(merged, data["test"], train_cfg.eval_batch_size) if "test" in data else None
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
        history=trainer_history,
        details=run.details,
    )


def _plain_copy(model: nn.Module) -> nn.Module:  # scratch: already a plain model
    plain = copy.deepcopy(model)
    for p in plain.parameters():
        p.requires_grad_(True)
    return plain.eval()


@torch.no_grad()
def score(model: nn.Module, split: Split, batch: int = 1024) -> float:
    model.eval()
    return accuracy(evaluate_logits(model, split.x, batch), split.y)


@dataclass
class AdaptContext:
    """What a method's run function gets: the base, the data, the labels and shared helpers."""

    base_model: nn.Module
    data: dict[str, Split]
    labels: tuple[str, ...]
    cfg: TrainConfig
    history: list[EpochRecord]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def trainer(self, module: nn.Module, forward_model: nn.Module | None = None) -> Trainer:
        t = Trainer(module, self.data, self.cfg, forward_model=forward_model)
        t.history = self.history  # one history across phases
        return t

    def attach(self, configs: DeltaConfig | list[DeltaConfig] | tuple = ()) -> DeltaModel:
        return attach(self.base_model, configs, head="new", num_classes=self.num_classes)

    def probe_head(self, dm: DeltaModel, epochs: int | None = None) -> float:
        """Fit the new head on frozen embeddings (everything else temporarily frozen)."""
        epochs = self.cfg.probe_epochs if epochs is None else epochs
        head = getattr(dm.model, HEAD_SITE)
        frozen = [p for p in dm.parameters() if p.requires_grad and all(p is not q for q in head.parameters())]
        for p in frozen:
            p.requires_grad_(False)
        try:
            acc = self.trainer(dm, forward_model=dm.model).fit(
                [(list(head.parameters()), self.cfg.head_lr, self.cfg.head_weight_decay)],
                epochs,
                phase="probe",
                seed_offset=1,
                augment=False,
            )
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return acc

    def delta_groups(self, dm: DeltaModel) -> list[tuple[list[nn.Parameter], float, float]]:
        head_params = list(getattr(dm.model, HEAD_SITE).parameters())
        deltas = [p for layer in dm.delta_layers().values() for p in layer.parameters() if p.requires_grad]
        return [(deltas, self.cfg.delta_lr, self.cfg.weight_decay), (head_params, self.cfg.head_lr, self.cfg.head_weight_decay)]

    def train_deltas(self, dm: DeltaModel, *, phase: str = "deltas", epochs: int | None = None) -> float:
        """Probe the head, then train deltas + head; two-phase families finalize midway."""
        epochs = self.cfg.epochs if epochs is None else epochs
        self.probe_head(dm)
        trainer = self.trainer(dm, forward_model=dm.model)
        reg = (lambda step: dm.regularization()) if dm.needs_finalize else None
        if dm.needs_finalize:
            search_epochs = max(1, int(round(epochs * self.cfg.finalize_fraction)))
            trainer.fit(self.delta_groups(dm), search_epochs, phase=f"{phase}-search", seed_offset=2, extra_loss=reg, select_best=False)
            dm.finalize()
            return trainer.fit(self.delta_groups(dm), max(1, epochs - search_epochs), phase=f"{phase}-fixed", seed_offset=3)
        return trainer.fit(self.delta_groups(dm), epochs, phase=phase, seed_offset=2)


# ----------------------------------------------------------------------------------------------
# Methods: every delta family at a budget
# ----------------------------------------------------------------------------------------------


def site_order_deepest_first(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Body sites from the head backwards: with a frozen base, the last layers carry the most
    task-specific features, so a family that cannot cover every site starts there."""
    sites = [(n, m) for n, m in candidate_sites(model).items() if n != HEAD_SITE]
    return list(reversed(sites))


def fit_family_to_budget(family: str, base_model: nn.Module, budget_params: int, **family_kwargs: Any) -> DeltaConfig | None:
    """The family's config that spends as much of `budget_params` (body) as it can.

    - diff_prune: k = budget over every body site (global magnitude projection, as in Guo et al.).
    - lowrank: the pointwise convs at the largest rank that fits, else rank 1 on as many
      pointwise convs as fit (deepest first), else rank 1 on any sites that fit.
    - recast: every body site, with the most coefficient groups (a divisor of the channel count)
      that fits at `num_templates` templates.
    - every other family: whole sites, deepest first, while the budget allows.
    Returns None when not even one site fits.
    """
    cls = get_delta(family).config_cls
    layer_cls = get_delta(family).layer_cls
    sites = site_order_deepest_first(base_model)
    strategy = _BUDGET_STRATEGIES.get(family, _fit_whole_sites)
    return strategy(cls, layer_cls, sites, budget_params, family_kwargs)


def _fit_whole_sites(cls, layer_cls, sites, budget, kwargs):
    cfg0 = cls(**kwargs)
    chosen, spent = [], 0
    for name, module in sites:
        if not layer_cls.supports(module, cfg0):
            continue
        c = layer_cls.cost(module, cfg0)
        if spent + c <= budget:
            chosen.append(name)
            spent += c
    return cfg0.replace(targets=tuple(reversed(chosen))) if chosen else None


def _fit_diff_prune(cls, layer_cls, sites, budget, kwargs):
    return cls(**{**kwargs, "k": int(budget)}, targets=BODY_TARGETS) if budget >= 1 else None


def _fit_lowrank(cls, layer_cls, sites, budget, kwargs):
    pw = [(n, m) for n, m in sites if n.endswith(".pw")]
    for rank in range(64, 0, -1):
        cfg = cls(**{**kwargs, "rank": rank})
        if all(layer_cls.supports(m, cfg) for _, m in pw) and sum(layer_cls.cost(m, cfg) for _, m in pw) <= budget:
            return cfg.replace(targets=tuple(n for n, _ in reversed(pw)))
    return _fit_whole_sites(cls, layer_cls, pw, budget, {**kwargs, "rank": 1}) or _fit_whole_sites(
        cls, layer_cls, sites, budget, {**kwargs, "rank": 1}
    )


def _fit_recast(cls, layer_cls, sites, budget, kwargs):
    k = kwargs.get("num_templates", cls().num_templates)
    channels = [int(m.weight.shape[0]) for _, m in sites]
    best = None
    for groups in sorted({g for g in range(1, min(channels) + 1) if all(c % g == 0 for c in channels)}):
        cfg = cls(**{**kwargs, "groups": groups, "num_templates": k}, targets=BODY_TARGETS)
        if sum(layer_cls.cost(m, cfg) for _, m in sites) <= budget:
            best = cfg
    if best is None:  # fewer templates on every site
        for kk in range(k - 1, 0, -1):
            cfg = cls(**{**kwargs, "groups": 1, "num_templates": kk}, targets=BODY_TARGETS)
            if sum(layer_cls.cost(m, cfg) for _, m in sites) <= budget:
                return cfg
    return best


_BUDGET_STRATEGIES = {"diff_prune": _fit_diff_prune, "lowrank": _fit_lowrank, "recast": _fit_recast}


@dataclass(frozen=True)
class FamilyMethodConfig:
    """One delta family alone. With `budget_params` the family is fitted to the budget
    (`fit_family_to_budget`); without it, the family's default config on its default sites."""

    family: str
    budget_params: int | None = None
    family_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        get_delta(self.family)
        if self.budget_params is not None and (not isinstance(self.budget_params, int) or self.budget_params < 1):
            raise ConfigError(f"budget_params must be a positive integer, got {self.budget_params!r}")

    @property
    def method_name(self) -> str:
        return self.family


def _run_family(ctx: AdaptContext, mcfg: FamilyMethodConfig) -> MethodRun:
    opts = dict(mcfg.family_options)
    if mcfg.budget_params is None:
        cfg = get_delta(mcfg.family).config_cls(**opts)
        cfg = cfg.replace(targets=tuple(t for t in cfg.resolved_targets if t != HEAD_SITE))
    else:
        cfg = fit_family_to_budget(mcfg.family, ctx.base_model, mcfg.budget_params, **opts)
        if cfg is None:
            raise PolykwsError(f"{mcfg.family}: no site fits a budget of {mcfg.budget_params} parameters")
    dm = ctx.attach(cfg)
    ctx.train_deltas(dm)
    return MethodRun(dm, dm, dm.cost(), {"config": str(cfg.to_dict())})


for _family in list_deltas():
    register_method(_family, FamilyMethodConfig, budgeted=True, defaults={"family": _family})(_run_family)


# ----------------------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadOnlyConfig:
    """Only the new language head trains (a linear probe on the frozen base)."""


@register_method("head_only", HeadOnlyConfig, budgeted=False)
def _run_head_only(ctx: AdaptContext, mcfg: HeadOnlyConfig) -> MethodRun:
    dm = ctx.attach(())
    ctx.probe_head(dm)
    # Then the same method epochs (and augmentation) every other method gets, on the head only.
    head = list(getattr(dm.model, HEAD_SITE).parameters())
    ctx.trainer(dm, forward_model=dm.model).fit([(head, ctx.cfg.head_lr, ctx.cfg.head_weight_decay)], ctx.cfg.epochs, phase="head", seed_offset=2)
    return MethodRun(dm, dm, dm.cost())


@dataclass(frozen=True)
class BNOnlyConfig:
    """BatchNorm affine parameters (γ, β) + head; BN statistics stay frozen."""


@register_method("bn_only", BNOnlyConfig, budgeted=False)
def _run_bn_only(ctx: AdaptContext, mcfg: BNOnlyConfig) -> MethodRun:
    dm = ctx.attach(())
    ctx.probe_head(dm)
    bn_params = [p for m in dm.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters()]
    for p in bn_params:
        p.requires_grad_(True)
    head = list(getattr(dm.model, HEAD_SITE).parameters())
    ctx.trainer(dm, forward_model=dm.model).fit(
        [(bn_params, ctx.cfg.delta_lr, ctx.cfg.weight_decay), (head, ctx.cfg.head_lr, ctx.cfg.head_weight_decay)],
        ctx.cfg.epochs,
        phase="bn",
        seed_offset=2,
    )
    body = sum(p.numel() for p in bn_params)
    # The trained BN affine terms are ordinary weights of the plain model: no DeltaModel cost.
    return MethodRun(dm, None, Cost(body, dm.cost().head))


@dataclass(frozen=True)
class BiasOnlyConfig:
    """BitFit: the `bias` family on every body site + head (no budget fitting)."""


@register_method("bias_only", BiasOnlyConfig, budgeted=False)
def _run_bias_only(ctx: AdaptContext, mcfg: BiasOnlyConfig) -> MethodRun:
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
def _run_lora(ctx: AdaptContext, mcfg: LoRAConfig) -> MethodRun:
    dm = ctx.attach(get_delta("lowrank").config_cls(rank=mcfg.rank, targets=("blocks.*.pw",)))
    ctx.train_deltas(dm)
    return MethodRun(dm, dm, dm.cost())


@dataclass(frozen=True)
class FullFinetuneConfig:
    """Every base weight + head. BN statistics are re-estimated unless `freeze_bn_stats`."""

    freeze_bn_stats: bool = False


@register_method("full_ft", FullFinetuneConfig, budgeted=False)
def _run_full_ft(ctx: AdaptContext, mcfg: FullFinetuneConfig) -> MethodRun:
    dm = ctx.attach(())
    ctx.probe_head(dm)  # with BN statistics frozen, whatever the fine-tune does later
    dm.freeze_bn_stats = mcfg.freeze_bn_stats
    head = list(getattr(dm.model, HEAD_SITE).parameters())
    body = [p for n, p in dm.model.named_parameters() if not n.startswith(HEAD_SITE + ".")]
    for p in body:
        p.requires_grad_(True)
    ctx.trainer(dm, forward_model=dm.model).fit(
        [(body, ctx.cfg.body_lr, ctx.cfg.weight_decay), (head, ctx.cfg.head_lr, ctx.cfg.head_weight_decay)],
        ctx.cfg.epochs,
        phase="full",
        seed_offset=2,
    )
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
def _run_scratch(ctx: AdaptContext, mcfg: ScratchConfig) -> MethodRun:
    from polykws.training.models import create_model

    name = getattr(ctx.base_model, "model_name", None)
    if name is None:
        raise PolykwsError("scratch needs a base built by create_model() (it carries model_name)")
    model = create_model(name, num_classes=ctx.num_classes, input_shape=tuple(ctx.base_model.input_shape))
    trainer = ctx.trainer(model)
    trainer.fit(
        [(list(model.parameters()), ctx.cfg.body_lr, ctx.cfg.weight_decay)],
        max(1, int(round(ctx.cfg.epochs * mcfg.epochs_multiplier))),
        phase="scratch",
        seed_offset=2,
    )
    head = sum(p.numel() for p in getattr(model, HEAD_SITE).parameters())
    return MethodRun(model, None, Cost(sum(p.numel() for p in model.parameters()) - head, head))


# SWR registers itself from its own package (imported here so the registry is complete).
from polykws.training.swr import register as _register_swr  # noqa: E402

_register_swr(register_method)
