"""The one training loop (`run_loop`) and the base pretraining entry point (`fit`).

`run_loop` is every optimizer loop of the project: base pretraining (`fit`, below) and each
transfer phase (`training/adapt/train.py`: linear probe, delta training, full fine-tune,
scratch, SWR's warm-up, search and fine-tune) build a `Loop` and run it. What differs between
them is data, parameter groups, schedule and per-step hooks, never the loop.

- AdamW, a per-step LR schedule (LambdaLR), gradient clipping, online SpecAugment on each
  training batch (offline augmented copies come from datasets/ as extra training rows),
  validation every epoch and best-epoch selection.
- Determinism: every source of randomness inside an epoch (shuffle order, dropout, SpecAugment
  masks) is reseeded at the start of that epoch by the Loop's `begin_epoch`. A pretraining run
  resumed after epoch k therefore replays epochs k+1.. bit-identically to an uninterrupted run.
- `fit` writes a run folder: `config.yaml` (resolved), `metrics.jsonl` + `metrics.csv`,
  `best.pt` (a self-describing model file from checkpoint.save_model) and `checkpoint.pt`
  (resumable state), all written atomically at the end of every epoch.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from polykws.core import PolykwsError, atomic_write_text, stable_hash
from polykws.datasets.augment import SpecAugmentConfig, spec_augment
from polykws.training.checkpoint import load_training_state, save_model, save_training_state, state_sha256
from polykws.training.config import FitConfig, dump_yaml, to_dict
from polykws.training.data import _mix
from polykws.training.progress import EpochProgress

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"

Tensor = torch.Tensor
Augment = Callable[[Tensor, torch.Generator], Tensor]


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float
    # Which loop produced the epoch (transfer runs several phases into one history).
    phase: str = "fit"


@dataclass
class FitResult:
    run_dir: Path
    history: list[EpochMetrics]
    best_epoch: int
    best_val_acc: float
    best_path: Path
    best_sha256: str
    final_sha256: str
    wall_time_s: float
    resumed_from_epoch: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


EpochCallback = Callable[[EpochMetrics], None]


@dataclass
class StepHooks:
    """Per-step extension points: SWR samples gates before a step and takes its policy and
    dual-ascent step after it; L0-gated families add their penalty to the loss."""

    before_step: Callable[[int], None] | None = None
    extra_loss: Callable[[int], Tensor] | None = None
    on_step: Callable[[int], None] | None = None
    before_eval: Callable[[], None] | None = None


@dataclass
class Loop:
    """One run of the training loop: what to train, on what, and what happens each epoch.

    `begin_epoch(epoch)` reseeds the epoch and returns its (x, y) batches (model-shaped x) and
    the SpecAugment generator. `select_key(m)` orders epochs (higher is better; None keeps no
    best); `on_best(m)` and `on_epoch(m)` are called after validation.
    """

    model: nn.Module
    forward: Callable[[Tensor], Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    begin_epoch: Callable[[int], tuple[Iterable[tuple[Tensor, Tensor]], torch.Generator]]
    evaluate: Callable[[], tuple[float, float]]
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    grad_clip_norm: float = 0.0
    augment: Augment | None = None
    hooks: StepHooks = field(default_factory=StepHooks)
    phase: str = "fit"
    select_key: Callable[[EpochMetrics], tuple] | None = None
    on_best: Callable[[EpochMetrics], None] | None = None
    on_epoch: Callable[[EpochMetrics], None] | None = None
    steps_per_epoch: int = 0  # for the progress bar only
    progress: EpochProgress | None = None


@dataclass
class LoopState:
    """Where a loop stands: resumable from these values alone."""

    epoch: int = 0
    step: int = 0
    best_key: tuple | None = None
    best_epoch: int = 0
    history: list[EpochMetrics] = field(default_factory=list)


def run_loop(loop: Loop, epochs: int, state: LoopState | None = None) -> LoopState:
    """Train epochs state.epoch+1 .. `epochs` (1-based); returns the updated state."""
    state = state or LoopState()
    params = [p for g in loop.optimizer.param_groups for p in g["params"]]
    progress = loop.progress or EpochProgress(enabled=False)
    for epoch in range(state.epoch + 1, epochs + 1):
        t0 = time.perf_counter()
        batches, aug_gen = loop.begin_epoch(epoch)
        loop.model.train()
        seen, correct, loss_sum, lr = 0, 0, 0.0, 0.0
        with progress.epoch(epoch, epochs, loop.steps_per_epoch) as tick:
            for x, y in batches:
                lr = loop.optimizer.param_groups[0]["lr"]  # logged: the LR of the epoch's last step
                loss, logits = _train_step(loop, params, x, y, aug_gen, state.step)
                state.step += 1
                seen += len(y)
                loss_sum += float(loss) * len(y)
                correct += int((logits.argmax(1) == y).sum())
                tick(loss_sum / seen, correct / seen)
        if seen == 0:
            raise ValueError("training loader yielded no samples")
        if loop.hooks.before_eval is not None:
            loop.hooks.before_eval()
        val_loss, val_acc = loop.evaluate()
        m = EpochMetrics(epoch, lr, loss_sum / seen, correct / seen, val_loss, val_acc, time.perf_counter() - t0, loop.phase)
        state.history.append(m)
        state.epoch = epoch
        if loop.select_key is not None and (state.best_key is None or loop.select_key(m) > state.best_key):
            state.best_key, state.best_epoch = loop.select_key(m), epoch
            if loop.on_best is not None:
                loop.on_best(m)
        if loop.on_epoch is not None:
            loop.on_epoch(m)
    return state


def _train_step(loop: Loop, params: list[nn.Parameter], x: Tensor, y: Tensor, aug_gen: torch.Generator, step: int):
    hooks = loop.hooks
    if hooks.before_step is not None:
        hooks.before_step(step)
    if loop.augment is not None:
        x = loop.augment(x, aug_gen)
    logits = loop.forward(x)
    loss = loop.loss_fn(logits, y)
    total = loss if hooks.extra_loss is None else loss + hooks.extra_loss(step)
    loop.optimizer.zero_grad(set_to_none=True)
    total.backward()
    if loop.grad_clip_norm > 0:
        nn.utils.clip_grad_norm_(params, loop.grad_clip_norm)
    loop.optimizer.step()
    loop.scheduler.step()
    if hooks.on_step is not None:
        hooks.on_step(step)
    return loss.detach(), logits.detach()


class WarmupCosine:
    """LR multiplier: linear warm-up over `warmup_steps`, then cosine down to `min_ratio`.

    A plain object (not a closure) so LambdaLR's state_dict can pickle it into a checkpoint.
    """

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float = 0.0):
        self.total_steps, self.warmup_steps, self.min_ratio = total_steps, warmup_steps, min_ratio

    def __call__(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return self.min_ratio + (1.0 - self.min_ratio) * cosine


class _Schedule:
    """Per-step LR multiplier; a pure function of the step, so resuming needs only the step."""

    def __init__(self, cfg, epochs: int, steps_per_epoch: int):
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
        self.cosine = WarmupCosine(epochs * steps_per_epoch, self.warmup, cfg.min_lr_ratio)

    def __call__(self, step: int) -> float:
        cfg = self.cfg
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "step":
            return cfg.step_gamma ** (step // (cfg.step_epochs * self.steps_per_epoch))
        return self.cosine(step)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Decay conv/linear weights only: decaying BN gains and biases just fights the
    # normalisation and is the usual recipe for small CNNs (and for AdamW generally).
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_spec_augment(settings: SpecAugmentConfig) -> Augment | None:
    """Online SpecAugment from datasets/ (one implementation for every training loop)."""
    if not settings.active:
        return None
    return lambda batch, generator: spec_augment(batch, settings, generator)


def _as_model_input(x: Tensor, channels_last: bool = False) -> Tensor:
    # Feature arrays are (N, frames, features); DS-CNN takes (N, 1, frames, features).
    x = x.unsqueeze(1) if x.dim() == 3 else x
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def evaluate_loss_acc(model: nn.Module, loader: Iterable, loss_fn: nn.Module | None = None, *, channels_last: bool = False) -> tuple[float, float]:
    """Mean loss and top-1 accuracy over a loader, in eval mode."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    for x, y in loader:
        logits = model(_as_model_input(x, channels_last))
        loss_sum += float(loss_fn(logits, y)) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
    model.train(was_training)
    if total == 0:
        raise ValueError("evaluation loader yielded no samples")
    return loss_sum / total, correct / total


def _get(loaders: Any, key: str):
    try:
        return loaders[key]
    except (KeyError, TypeError):
        return getattr(loaders, key, None)


def fit(
    model: nn.Module,
    loaders: Any,
    cfg: FitConfig,
    *,
    run_dir: str | Path,
    frontend,
    labels: Iterable[str] | None = None,
    resume: bool = False,
    run_config: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    callbacks: Iterable[EpochCallback] = (),
) -> FitResult:
    """Pretrain `model` in place on loaders["train"], select on loaders["val"].

    `loaders` is a training.data.TaskLoaders or a dict with "train" and "val" DataLoaders
    yielding (x, y). `frontend` (a FrontendConfig) and `labels` make best.pt self-describing.
    `run_config` is the resolved config written to config.yaml (default: the FitConfig); on
    `resume` it must match the run folder's, or the run refuses to continue.
    """
    train_loader, val_loader = _get(loaders, "train"), _get(loaders, "val")
    if train_loader is None or val_loader is None:
        raise ValueError("fit needs loaders with 'train' and 'val'")
    labels = _check_labels(model, labels if labels is not None else _get(loaders, "labels"))
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    run = _RunFolder(Path(run_dir), run_config if run_config is not None else {"fit": to_dict(cfg)}, model, labels, frontend, meta)
    loop = _pretraining_loop(model, train_loader, val_loader, cfg, run, callbacks)
    state = run.start(loop, resume)
    t_start = time.perf_counter()
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    try:
        run_loop(loop, cfg.epochs, state)
    finally:
        loop.progress.close()
        model.to(memory_format=torch.contiguous_format)
    resumed_from = run.resumed_from
    if not state.history:
        raise PolykwsError(f"{run.dir}: nothing to train (epochs={cfg.epochs}, checkpoint at epoch {resumed_from})")
    best = next(h for h in state.history if h.epoch == state.best_epoch)
    return FitResult(
        run_dir=run.dir,
        history=state.history,
        best_epoch=state.best_epoch,
        best_val_acc=best.val_acc,
        best_path=run.dir / BEST_NAME,
        best_sha256=run.best_sha,
        final_sha256=state_sha256(model),
        wall_time_s=run.wall_before + time.perf_counter() - t_start,
        resumed_from_epoch=resumed_from,
    )


def _check_labels(model: nn.Module, labels: Iterable[str] | None) -> tuple[str, ...]:
    labels = tuple(labels or ())
    if not labels:
        raise ValueError("fit needs the label list (pass labels= or TaskLoaders)")
    if len(labels) != getattr(model, "num_classes", len(labels)):
        raise ValueError(f"{len(labels)} labels but the model has {model.num_classes} outputs")
    return labels


def _pretraining_loop(model: nn.Module, train_loader, val_loader, cfg: FitConfig, run: "_RunFolder", callbacks) -> Loop:
    steps_per_epoch = len(train_loader)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _Schedule(cfg.optim, cfg.epochs, steps_per_epoch))
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format

    def begin_epoch(epoch: int):
        # Reseed everything an epoch draws from (see module docstring).
        torch.manual_seed(_mix(cfg.seed, epoch, 1))
        for s in (getattr(train_loader, "batch_sampler", None), getattr(train_loader, "sampler", None)):
            if hasattr(s, "set_epoch"):
                s.set_epoch(epoch)
        batches = ((_as_model_input(x), y) for x, y in train_loader)
        return batches, torch.Generator().manual_seed(_mix(cfg.seed, epoch, 2))

    def on_epoch(m: EpochMetrics) -> None:
        run.save_epoch(m)
        for cb in callbacks:
            cb(m)

    return Loop(
        model=model,
        forward=lambda x: model(x.contiguous(memory_format=layout)),
        optimizer=optimizer,
        scheduler=scheduler,
        begin_epoch=begin_epoch,
        evaluate=lambda: evaluate_loss_acc(model, val_loader, channels_last=cfg.channels_last),
        loss_fn=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        grad_clip_norm=cfg.optim.grad_clip_norm,
        augment=make_spec_augment(cfg.spec_augment),
        select_key=(lambda m: (m.val_acc,)) if cfg.select_metric == "val_acc" else (lambda m: (-m.val_loss,)),
        on_best=run.save_best,
        on_epoch=on_epoch,
        steps_per_epoch=steps_per_epoch,
        progress=EpochProgress(enabled=cfg.progress),
    )


class _RunFolder:
    """The pretraining run folder: config.yaml, best.pt, checkpoint.pt and the metrics files."""

    def __init__(self, run_dir: Path, resolved: dict[str, Any], model: nn.Module, labels, frontend, meta):
        self.dir = run_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.resolved = resolved
        self.config_hash = stable_hash(resolved)
        self.model, self.labels, self.frontend, self.meta = model, labels, frontend, meta or {}
        self.ckpt_path = run_dir / CHECKPOINT_NAME
        self.best_sha, self.wall_before, self.resumed_from = "", 0.0, 0
        self.loop: Loop | None = None
        self.state: LoopState | None = None
        self.t_start = time.perf_counter()

    def start(self, loop: Loop, resume: bool) -> LoopState:
        self.loop, self.state = loop, LoopState()
        if resume:
            self._restore(loop)
        elif self.ckpt_path.exists():
            raise PolykwsError(f"{self.dir}: already holds a training checkpoint; pass --resume to continue it or use a new run_dir")
        atomic_write_text(self.dir / "config.yaml", dump_yaml(self.resolved))
        self.t_start = time.perf_counter()
        return self.state

    def _restore(self, loop: Loop) -> None:
        state = load_training_state(self.ckpt_path)
        if state["config_hash"] != self.config_hash:
            raise PolykwsError(
                f"{self.ckpt_path}: the run was started with a different config (hash {state['config_hash']} != {self.config_hash}); "
                "start a new run_dir instead of resuming"
            )
        self.model.load_state_dict(state["model"])
        loop.optimizer.load_state_dict(state["optimizer"])
        loop.scheduler.load_state_dict(state["scheduler"])
        history = [EpochMetrics(**h) for h in state["history"]]
        best_key = None if state["best_value"] is None else (state["best_value"],)
        self.state = LoopState(state["epoch"], 0, best_key, state["best_epoch"], history)
        self.best_sha, self.wall_before, self.resumed_from = state["best_sha256"], state["wall_time_s"], state["epoch"]

    def save_best(self, m: EpochMetrics) -> None:
        meta = {**self.meta, "epoch": m.epoch, "val_acc": m.val_acc, "val_loss": m.val_loss, "config_hash": self.config_hash}
        self.best_sha = save_model(self.dir / BEST_NAME, self.model, labels=self.labels, frontend=self.frontend, meta=meta)

    def save_epoch(self, m: EpochMetrics) -> None:
        assert self.loop is not None and self.state is not None
        _write_metrics(self.dir, self.state.history)
        save_training_state(
            self.ckpt_path,
            {
                "config_hash": self.config_hash,
                "epoch": m.epoch,
                "model": self.model.state_dict(),
                "optimizer": self.loop.optimizer.state_dict(),
                "scheduler": self.loop.scheduler.state_dict(),
                "history": [asdict(h) for h in self.state.history],
                "best_epoch": self.state.best_epoch,
                "best_value": self.state.best_key[0] if self.state.best_key else None,
                "best_sha256": self.best_sha,
                "wall_time_s": self.wall_before + time.perf_counter() - self.t_start,
            },
        )
        self.loop.progress.summary(m, self.state.best_epoch)


_FIELDS = [f for f in EpochMetrics.__dataclass_fields__]


def _write_metrics(run_dir: Path, history: list[EpochMetrics]) -> None:
    # Rewritten whole each epoch (atomically) from the history, so a resumed run never has
    # duplicate or torn lines.
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(asdict(h)) + "\n" for h in history))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_FIELDS, lineterminator="\n")
    w.writeheader()
    for h in history:
        w.writerow(asdict(h))
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())
