"""fit(model, loaders, cfg): the one training loop (base pretraining; transfer reuses it).

- AdamW (no weight decay on BN and biases), per-step LR schedule: linear warmup, then cosine,
  step or constant. Optional label smoothing. Online SpecAugment on each training batch
  (offline augmented copies come from datasets/ as extra training rows).
- Run folder: `config.yaml` (resolved), `metrics.jsonl` + `metrics.csv`, `best.pt` (a
  self-describing model file from checkpoint.save_model) and `checkpoint.pt` (resumable state),
  all written atomically at the end of every epoch.
- Determinism: every source of randomness inside an epoch (shuffle order, dropout, SpecAugment
  masks) is reseeded from (seed, epoch) at the start of that epoch. A run resumed after epoch k
  therefore replays epochs k+1.. bit-identically to an uninterrupted run, without having to
  capture RNG state mid-stream.
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

from polykws.training.checkpoint import load_training_state, save_model, save_training_state, state_sha256
from polykws.training.config import FitConfig, SpecAugmentSettings, dump_yaml, to_dict
from polykws.training.data import _mix
from polykws.core import PolykwsError, atomic_write_text, stable_hash

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float


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


class _Schedule:
    """Per-step LR multiplier; a pure function of the step, so resuming needs only the step."""

    def __init__(self, cfg, epochs: int, steps_per_epoch: int):
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.total = epochs * steps_per_epoch
        self.warmup = int(round(cfg.warmup_epochs * steps_per_epoch))

    def __call__(self, step: int) -> float:
        cfg = self.cfg
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "step":
            return cfg.step_gamma ** (step // (cfg.step_epochs * self.steps_per_epoch))
        progress = (step - self.warmup) / max(self.total - self.warmup, 1)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine


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


def make_spec_augment(settings: SpecAugmentSettings) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """Online SpecAugment from datasets/ (one implementation for every training loop)."""
    if not settings.enabled or (settings.time_masks == 0 and settings.freq_masks == 0):
        return None
    from polykws.datasets import SpecAugmentConfig, spec_augment

    sa_cfg = SpecAugmentConfig(
        time_masks=settings.time_masks,
        time_mask_frames=settings.time_mask_frames,
        freq_masks=settings.freq_masks,
        freq_mask_bins=settings.freq_mask_bins,
    )
    return lambda batch, generator: spec_augment(batch, sa_cfg, generator)


def _as_model_input(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
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
    """Train `model` in place on loaders["train"], select on loaders["val"].

    `loaders` is a training.data.TaskLoaders or a dict with "train" and "val" DataLoaders
    yielding (x, y). `frontend` (a FrontendConfig) and `labels` make best.pt self-describing.
    `run_config` is the resolved config written to config.yaml (default: the FitConfig); on
    `resume` it must match the run folder's, or the run refuses to continue.
    """
    train_loader, val_loader = _get(loaders, "train"), _get(loaders, "val")
    if train_loader is None or val_loader is None:
        raise ValueError("fit needs loaders with 'train' and 'val'")
    labels = tuple(labels if labels is not None else _get(loaders, "labels") or ())
    if not labels:
        raise ValueError("fit needs the label list (pass labels= or TaskLoaders)")
    if len(labels) != getattr(model, "num_classes", len(labels)):
        raise ValueError(f"{len(labels)} labels but the model has {model.num_classes} outputs")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = run_config if run_config is not None else {"fit": to_dict(cfg)}
    config_hash = stable_hash(resolved)
    ckpt_path = run_dir / CHECKPOINT_NAME
    steps_per_epoch = len(train_loader)
    schedule = _Schedule(cfg.optim, cfg.epochs, steps_per_epoch)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    augment = make_spec_augment(cfg.spec_augment)
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=layout)

    history: list[EpochMetrics] = []
    start_epoch, best_epoch, best_value, best_sha, wall_before = 1, 0, None, "", 0.0
    if resume:
        state = load_training_state(ckpt_path)
        if state["config_hash"] != config_hash:
            raise PolykwsError(
                f"{ckpt_path}: the run was started with a different config (hash {state['config_hash']} != {config_hash}); "
                "start a new run_dir instead of resuming"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = [EpochMetrics(**h) for h in state["history"]]
        start_epoch = state["epoch"] + 1
        best_epoch, best_value, best_sha = state["best_epoch"], state["best_value"], state["best_sha256"]
        wall_before = state["wall_time_s"]
    elif ckpt_path.exists():
        raise PolykwsError(f"{run_dir}: already holds a training checkpoint; pass --resume to continue it or use a new run_dir")
    atomic_write_text(run_dir / "config.yaml", dump_yaml(resolved))

    progress = _Progress(enabled=cfg.progress)
    t_start = time.perf_counter()
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            t_epoch = time.perf_counter()
            # Reseed everything an epoch draws from (see module docstring).
            torch.manual_seed(_mix(cfg.seed, epoch, 1))
            sampler = getattr(train_loader, "batch_sampler", None)
            for s in (sampler, getattr(train_loader, "sampler", None)):
                if hasattr(s, "set_epoch"):
                    s.set_epoch(epoch)
            aug_gen = torch.Generator().manual_seed(_mix(cfg.seed, epoch, 2))
            model.train()
            seen, correct, loss_sum = 0, 0, 0.0
            lr = 0.0
            with progress.epoch(epoch, cfg.epochs, steps_per_epoch) as tick:
                for x, y in train_loader:
                    x = _as_model_input(x)
                    if augment is not None:
                        x = augment(x, aug_gen)
                    x = x.contiguous(memory_format=layout)
                    logits = model(x)
                    loss = loss_fn(logits, y)
                    lr = optimizer.param_groups[0]["lr"]  # logged: the LR of the epoch's last step
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.optim.grad_clip_norm > 0:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip_norm)
                    optimizer.step()
                    scheduler.step()
                    n = len(y)
                    seen += n
                    loss_sum += float(loss.detach()) * n
                    correct += int((logits.detach().argmax(1) == y).sum())
                    tick(loss_sum / seen, correct / seen)
            if seen == 0:
                raise ValueError("training loader yielded no samples")
            val_loss, val_acc = evaluate_loss_acc(model, val_loader, channels_last=cfg.channels_last)
            m = EpochMetrics(
                epoch=epoch,
                lr=lr,
                train_loss=loss_sum / seen,
                train_acc=correct / seen,
                val_loss=val_loss,
                val_acc=val_acc,
                seconds=time.perf_counter() - t_epoch,
            )
            history.append(m)
            value = m.val_acc if cfg.select_metric == "val_acc" else -m.val_loss
            if best_value is None or value > best_value:
                best_value, best_epoch = value, epoch
                best_sha = save_model(
                    run_dir / BEST_NAME,
                    model,
                    labels=labels,
                    frontend=frontend,
                    meta={**(meta or {}), "epoch": epoch, "val_acc": val_acc, "val_loss": val_loss, "config_hash": config_hash},
                )
            _write_metrics(run_dir, history)
            wall = wall_before + time.perf_counter() - t_start
            save_training_state(
                ckpt_path,
                {
                    "config_hash": config_hash,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": [asdict(h) for h in history],
                    "best_epoch": best_epoch,
                    "best_value": best_value,
                    "best_sha256": best_sha,
                    "wall_time_s": wall,
                },
            )
            progress.summary(m, best_epoch)
            for cb in callbacks:
                cb(m)
    finally:
        progress.close()
        model.to(memory_format=torch.contiguous_format)
    if not history:
        raise PolykwsError(f"{run_dir}: nothing to train (epochs={cfg.epochs}, checkpoint at epoch {start_epoch - 1})")
    best = next(h for h in history if h.epoch == best_epoch)
    return FitResult(
        run_dir=run_dir,
        history=history,
        best_epoch=best_epoch,
        best_val_acc=best.val_acc,
        best_path=run_dir / BEST_NAME,
        best_sha256=best_sha,
        final_sha256=state_sha256(model),
        wall_time_s=wall_before + time.perf_counter() - t_start,
        resumed_from_epoch=start_epoch - 1 if resume else 0,
    )


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


class _Progress:
    """rich progress bar with running loss/accuracy; one summary line per epoch."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.console = Console(stderr=True)
            self._progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.3f}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()

    def epoch(self, epoch: int, epochs: int, steps: int):
        progress = self._progress

        class _Ctx:
            def __enter__(ctx):
                if progress is None:
                    return lambda loss, acc: None
                ctx.task = progress.add_task("train", total=steps, epoch=f"{epoch}/{epochs}", loss=float("nan"), acc=0.0)
                return lambda loss, acc: progress.update(ctx.task, advance=1, loss=loss, acc=acc)

            def __exit__(ctx, *exc):
                if progress is not None and hasattr(ctx, "task"):
                    progress.remove_task(ctx.task)
                return False

        return _Ctx()

    def summary(self, m: EpochMetrics, best_epoch: int) -> None:
        if not self.enabled:
            return
        star = " *" if m.epoch == best_epoch else ""
        self.console.print(
            f"epoch {m.epoch:3d}  lr {m.lr:.2e}  train loss {m.train_loss:.4f} acc {m.train_acc:.3f}  "
            f"val loss {m.val_loss:.4f} acc {m.val_acc:.3f}  {m.seconds:.1f}s{star}",
            soft_wrap=True,
        )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
