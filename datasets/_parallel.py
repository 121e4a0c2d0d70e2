"""Process-parallel map with a rich progress bar, used for decoding, features and synthesis.

Workers start through ``forkserver`` (never a fork of a process that may already hold torch's
thread pools) and each worker runs single-threaded, so N workers use N cores. Results come back
in input order, which keeps every output independent of scheduling.

Every worker watches the process that started its pool (``die_with``): when that process is
gone - killed with SIGKILL, say, which runs no cleanup - the worker exits within a fraction of a
second instead of living on with its memory.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from polykws.core import die_with

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """$POLYKWS_WORKERS, else every core (2 on the reference machine)."""
    env = os.environ.get("POLYKWS_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, os.cpu_count() or 1)


# The forkserver imports these once; every worker is then a fork of that server, so a worker
# starts in milliseconds instead of re-importing torch (seconds). Nothing runs in the server, so
# no thread pool or espeak-ng state is inherited.
_PRELOAD = ["numpy", "soundfile", "torch", "torchaudio", "polykws.datasets.audio", "polykws.datasets.frontend"]


def mp_context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _single_thread_init(owner_pid: int | None = None) -> None:
    if owner_pid is not None:
        die_with(owner_pid)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


@contextlib.contextmanager
def _torch_single_thread():
    """Inline runs use one torch thread too: intra-op threads on 1 s clips cost far more than they
    save (measured 15x slower under load). The caller's setting is restored afterwards."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True):
    """Yield an advance(n) callable; a rich bar on stderr when enabled, a no-op otherwise."""
    if not enabled or total == 0:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int | None = None,
    min_items_per_worker: int = 64,
    description: str = "",
    progress: bool = False,
) -> Iterator[R]:
    """fn over items, in order. Runs inline when the job is too small to pay for process start-up.

    fn must be a module-level function (it is pickled by reference).
    """
    items = list(items)
    workers = default_workers() if workers is None else max(1, workers)
    workers = min(workers, max(1, len(items) // max(1, min_items_per_worker)))
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file and not os.path.exists(main_file):
        workers = 1  # e.g. a script piped on stdin: child processes could not re-import __main__
    with progress_bar(description, len(items), progress) as advance:
        if workers <= 1:
            with _torch_single_thread():
                for item in items:
                    yield fn(item)
                    advance()
            return
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp_context(), initializer=_single_thread_init, initargs=(os.getpid(),)) as pool:
            for result in pool.map(fn, items, chunksize=1):
                yield result
                advance()
