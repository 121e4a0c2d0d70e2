"""Run a stage graph: schedule every stage whose upstream is finished, and show it (Rich).

`run_pipeline` reuses finished artifacts, runs fan-out stages on the executor and the others
here, and keeps what finished when a stage fails. `plan` says what a run would do. The stage
engine itself (keys, execution, executors) is engine.py.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from typing import Any, Iterable, Mapping

from polykws.pipeline.engine import (
    Executor,
    Job,
    RunResult,
    SerialExecutor,
    Stage,
    StageFailed,
    StageOutcome,
    execute_stage,
    stage_key,
    toposort,
)
from polykws.pipeline.store import ArtifactStore


class _RunDisplay:
    """The Rich UI of a run: an overall bar, one spinner per running stage, a line per finished stage."""

    def __init__(self, console, total: int, show_progress: bool, log: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console, self.log = console, log
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=console, transient=False, disable=not show_progress)
        self.total = total

    def __enter__(self):
        self.progress.__enter__()
        self.overall = self.progress.add_task("[bold]pipeline", total=self.total)
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def started(self, stage: Stage, executor_name: str | None = None) -> Any:
        where = f" ({executor_name})" if executor_name else ""
        return self.progress.add_task(f"[cyan]{stage.name}[/cyan]{where}", total=None)

    def stopped(self, task: Any) -> None:
        self.progress.remove_task(task)

    def finished(self, stage: Stage, manifest: Mapping[str, Any], status: str) -> None:
        self.progress.advance(self.overall)
        if not self.log:
            return
        headline = _headline(manifest.get("summary") or {})
        if status == "reused":
            self.console.print(f"[dim]  reused  {stage.name}  ({manifest['key']}){headline}[/dim]")
        else:
            self.console.print(f"[green]  done[/green]    {stage.name}  in {manifest.get('wall_s', 0):.1f} s{headline}")

    def failed(self, stage: Stage) -> None:
        if self.log:
            self.console.print(f"[red]  failed[/red]  {stage.name}")


class _Scheduler:
    """Launches every stage whose upstream is finished; fan-out stages go to the executor."""

    def __init__(self, store: ArtifactStore, executor: Executor, force: set[str], ui: _RunDisplay):
        self.store, self.executor, self.force, self.ui = store, executor, force, ui
        self.outcomes: dict[str, StageOutcome] = {}
        self.manifests: dict[str, dict[str, Any]] = {}
        self.running: dict[cf.Future, tuple[Stage, float, Any]] = {}
        self.failure: tuple[str, BaseException] | None = None

    def drive(self, order: list[Stage]) -> None:
        pending = list(order)
        while pending or self.running:
            launched = False
            if self.failure is None:
                for stage in [s for s in pending if all(d in self.manifests for d in s.deps)]:
                    pending.remove(stage)
                    launched = True
                    if not self._launch(stage):
                        break
            if self.running:
                self._collect()
            elif self.failure is not None or (not launched and pending):
                # Nothing runnable and nothing running: only possible after a failure upstream.
                break

    def _launch(self, stage: Stage) -> bool:
        """Reuse, submit or run one stage; False when it failed here (in the driver)."""
        key = stage_key(stage, self.manifests)
        t0 = time.perf_counter()
        existing = self.store.lookup(stage.kind, key)
        if existing is not None and (stage.name in self.force or stage.kind in self.force):
            _unpublish(self.store, stage.kind, key)
            existing = None
        if existing is not None:
            self._finish(stage, existing, "reused", t0)
            return True
        inputs = {d: (self.outcomes[d].kind, self.outcomes[d].key) for d in stage.deps}
        if stage.fanout and self.executor.parallel:
            task = self.ui.started(stage, self.executor.name)
            self.running[self.executor.submit(self.store, Job(stage, key, inputs, capture_log=True))] = (stage, t0, task)
            return True
        task = self.ui.started(stage)
        try:
            manifest = execute_stage(self.store, Job(stage, key, inputs, capture_log=False))
        except BaseException as exc:
            self.failure = (stage.name, exc)
            return False
        finally:
            self.ui.stopped(task)
        self._finish(stage, manifest, "ran", t0)
        return True

    def _collect(self) -> None:
        done, _ = cf.wait(list(self.running), timeout=0.25, return_when=cf.FIRST_COMPLETED)
        for fut in done:
            stage, t0, task = self.running.pop(fut)
            self.ui.stopped(task)
            try:
                self._finish(stage, fut.result(), "ran", t0)
            except BaseException as exc:  # noqa: BLE001
                if self.failure is None:
                    self.failure = (stage.name, exc)
                self.ui.failed(stage)

    def _finish(self, stage: Stage, manifest: dict[str, Any], status: str, t0: float) -> None:
        self.manifests[stage.name] = manifest
        self.outcomes[stage.name] = StageOutcome(
            stage.name, stage.kind, manifest["key"], status, manifest,
            self.store.materialize(stage.kind, manifest["key"]), self.store.stage_uri(stage.kind, manifest["key"]),
            time.perf_counter() - t0,
        )
        self.ui.finished(stage, manifest, status)

    def raise_failure(self) -> None:
        if self.failure is None:
            return
        name, exc = self.failure
        if isinstance(exc, (StageFailed, KeyboardInterrupt)):
            raise exc
        raise StageFailed(name, f"{type(exc).__name__}: {exc}") from exc


def run_pipeline(
    stages: Iterable[Stage],
    store: ArtifactStore,
    executor: Executor | None = None,
    *,
    force: Iterable[str] = (),
    console=None,
    show_progress: bool = True,
    log: bool | None = None,
) -> RunResult:
    """Run every stage whose key has no finished artifact; reuse the rest.

    `force` names stages or kinds to rebuild even when finished (their old folder is replaced).
    Fan-out stages go to `executor` (serial when None); the others run here, one at a time.
    On a failure, jobs already running finish and are kept, then StageFailed is raised.
    """
    from rich.console import Console

    order = toposort(stages)
    ui = _RunDisplay(console or Console(stderr=True), len(order), show_progress, show_progress if log is None else log)
    scheduler = _Scheduler(store, executor or SerialExecutor(), set(force), ui)
    t_start = time.perf_counter()
    with ui:
        scheduler.drive(order)
    scheduler.raise_failure()
    return RunResult(scheduler.outcomes, time.perf_counter() - t_start)


def plan(stages: Iterable[Stage], store: ArtifactStore) -> list[tuple[Stage, str, str | None]]:
    """(stage, status, key) without running anything: "reuse" (finished artifact found), "run"
    (inputs known, no artifact) or "after upstream" (its key depends on a stage that will run)."""
    manifests: dict[str, dict[str, Any]] = {}
    out = []
    for stage in toposort(stages):
        if not all(d in manifests for d in stage.deps):
            out.append((stage, "after upstream", None))
            continue
        key = stage_key(stage, manifests)
        existing = store.lookup(stage.kind, key)
        if existing is not None:
            manifests[stage.name] = existing
        out.append((stage, "reuse" if existing is not None else "run", key))
    return out


def _unpublish(store: ArtifactStore, kind: str, key: str) -> None:
    import shutil

    if store.local:
        d = store.root_path / kind / key
        gone = d.with_name(f".gone-{key}-{os.getpid()}")
        os.rename(d, gone)
        shutil.rmtree(gone, ignore_errors=True)
    else:
        store.fs.rm(store.stage_uri(kind, key), recursive=True)
        shutil.rmtree(store.cache / kind / key, ignore_errors=True)


def _headline(summary: Mapping[str, Any]) -> str:
    """A short ' - acc 91.2%' style suffix from a stage summary's `headline` field."""
    h = summary.get("headline")
    return f"  [bold]{h}[/bold]" if h else ""
