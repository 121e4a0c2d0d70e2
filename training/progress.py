"""The training loop's console output: a rich progress bar with running loss/accuracy and one
summary line per epoch (stderr; off for pipeline workers and tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from polykws.training.fit import EpochMetrics


class EpochProgress:
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

    def summary(self, m: "EpochMetrics", best_epoch: int) -> None:
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
