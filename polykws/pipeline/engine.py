"""A small resumable stage engine: hash-keyed stages, atomic outputs, fan-out to workers.

Every stage declares what its output depends on:

* `config`  - the JSON subset of the run config the stage reads;
* `deps`    - upstream stages; their *content hashes* (a hash over their output files) enter the key;
* `code`    - derived, never listed by hand: the source of every project module the stage
  function can import (polykws.pipeline.codekey), so editing code a stage runs re-runs it, and
  editing code it cannot reach (the CLI, another stage's module) does not;
* `version` - optional, for a change of output that no project source shows (default "1").

key = hash(kind, function, version, config, code, upstream content hashes). A finished stage with the
same key is reused; a config change re-runs exactly the stages whose inputs changed, and their
dependants only if the re-run produced different files. Outputs are built in a work folder and
published atomically (see store.py), so a killed run resumes at the first unfinished stage.
Stages marked `fanout` are independent jobs (per language x method x budget) that an executor may
run in worker processes or on a Ray cluster; the result is the same files as the serial path.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import io
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from polykws.pipeline.store import ArtifactStore, hash_folder
from polykws.core import PolykwsError, seed_everything, stable_hash, stable_json

ENGINE_VERSION = 2


class StageFailed(PolykwsError):
    def __init__(self, name: str, message: str, log: str = ""):
        super().__init__(f"stage {name} failed: {message}")
        self.stage = name
        self.log = log

    def __reduce__(self):
        return (StageFailed, (self.stage, str(self).split(": ", 1)[-1], self.log))


@dataclass(frozen=True)
class Stage:
    """One unit of work. `fn(ctx) -> summary dict` must be a module-level function (picklable)."""

    name: str
    kind: str
    fn: Callable[["StageContext"], Mapping[str, Any] | None]
    config: Mapping[str, Any] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    version: str = "1"
    fanout: bool = False
    resumable: bool = False
    # torch intra-op threads while this stage runs; fan-out jobs pin 1 so that a job gives the
    # same floats whether it runs alone, beside others, or on a Ray worker.
    threads: int | None = None
    seed: int = 0
    # Settings that do not change the output (cache folders, progress display): not in the key.
    runtime: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not self.kind or "/" in self.kind or self.kind.startswith("."):
            raise PolykwsError(f"bad stage name/kind: {self.name!r}/{self.kind!r}")
        try:
            stable_json(dict(self.config))
        except TypeError as exc:
            raise PolykwsError(f"stage {self.name}: config is not JSON-serializable ({exc})") from None


@dataclass
class StageContext:
    """What a running stage sees: its config, its upstream folders, and the folder to write."""

    name: str
    kind: str
    key: str
    config: Mapping[str, Any]
    out: Path
    inputs: dict[str, Path]
    input_manifests: dict[str, dict[str, Any]]
    in_worker: bool = False
    runtime: Mapping[str, Any] = field(default_factory=dict)

    def input(self, name: str) -> Path:
        try:
            return self.inputs[name]
        except KeyError:
            raise PolykwsError(f"stage {self.name} did not declare {name!r} as an input (deps: {sorted(self.inputs)})") from None

    def summary(self, name: str) -> dict[str, Any]:
        return dict(self.input_manifests[name].get("summary") or {})


@dataclass
class StageOutcome:
    name: str
    kind: str
    key: str
    status: str  # "ran" | "reused"
    manifest: dict[str, Any]
    path: Path
    uri: str
    wall_s: float

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.manifest.get("summary") or {})


@dataclass
class RunResult:
    outcomes: dict[str, StageOutcome]
    wall_s: float

    def ran(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o.status == "ran"]

    def reused(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o.status == "reused"]

    def __getitem__(self, name: str) -> StageOutcome:
        return self.outcomes[name]


# --- keys ---------------------------------------------------------------------------------------
_CODE: dict[tuple[str, str], dict[str, str]] = {}


def stage_code(stage: Stage) -> dict[str, str]:
    """{project module or C source: SHA-256} of everything `stage.fn` can import; cached per process."""
    from polykws.pipeline import codekey

    fn = stage.fn
    ident = (fn.__module__, fn.__qualname__)
    if ident not in _CODE:
        _CODE[ident] = codekey.code_files(fn)
    return _CODE[ident]


def code_digest(stage: Stage) -> str:
    """One hash of `stage_code(stage)`: equal digests mean the stage ran the same project code."""
    return stable_hash(stage_code(stage), 32)


def clear_code_cache() -> None:
    """Forget computed code keys (a process that edits sources, e.g. a test, calls this)."""
    from polykws.pipeline import codekey

    _CODE.clear()
    codekey.clear_caches()


def stage_key(stage: Stage, upstream: Mapping[str, Mapping[str, Any]]) -> str:
    return stable_hash(
        {
            "engine": ENGINE_VERSION,
            "kind": stage.kind,
            "fn": f"{stage.fn.__module__}.{stage.fn.__qualname__}",
            "version": stage.version,
            "config": dict(stage.config),
            "code": stage_code(stage),
            "inputs": {d: upstream[d]["content_hash"] for d in stage.deps},
        },
        length=20,
    )


# --- executing one stage (driver or worker) -----------------------------------------------------
@dataclass(frozen=True)
class Job:
    stage: Stage
    key: str
    inputs: dict[str, tuple[str, str]]  # dep name -> (kind, key)
    capture_log: bool


def storage_error(exc: OSError, where: str) -> str:
    """One line for a failed write or read of the artifact store or run folder (no traceback):
    a full disk or a read-only folder is the user's to fix, and the run resumes afterwards."""
    import errno

    hint = {
        errno.ENOSPC: "the disk is full: free space or point `artifacts`/`output` elsewhere",
        errno.EDQUOT: "the disk quota is exhausted: free space or point `artifacts`/`output` elsewhere",
        errno.EROFS: "the file system is read-only: point `artifacts`/`output` at a writable folder",
        errno.EACCES: "permission denied: point `artifacts`/`output` at a folder you can write",
        errno.EPERM: "operation not permitted: point `artifacts`/`output` at a folder you can write",
    }.get(exc.errno, "")
    name = f" {exc.filename}" if exc.filename else ""
    return (f"{where}: cannot write{name}: {exc.strerror or exc}" + (f" ({hint})" if hint else "")
            + "; finished stages are kept, unfinished work is discarded, and rerunning the same command resumes")


def execute_stage(store: ArtifactStore, job: Job) -> dict[str, Any]:
    """Build one stage and publish it; returns its manifest. Runs in the driver or in a worker."""
    try:
        return _execute_stage(store, job)
    except StageFailed as exc:
        if isinstance(exc.__cause__, OSError) and not isinstance(exc.__cause__, FileNotFoundError) and exc.__cause__.errno is not None:
            raise StageFailed(job.stage.name, storage_error(exc.__cause__, "storage"), exc.log) from None
        raise
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or exc.errno is None:
            raise
        raise StageFailed(job.stage.name, storage_error(exc, "storage")) from None


def _execute_stage(store: ArtifactStore, job: Job) -> dict[str, Any]:
    stage = job.stage
    with store.lock(stage.kind, job.key):
        existing = store.lookup(stage.kind, job.key)
        if existing is not None:  # another run published it while we waited for the lock
            return existing
        if not stage.resumable:
            store.discard_work(stage.kind, job.key)
        work = store.work_dir(stage.kind, job.key)
        inputs = {d: store.materialize(*kk) for d, kk in job.inputs.items()}
        manifests = {d: store.lookup(*kk) for d, kk in job.inputs.items()}
        ctx = StageContext(stage.name, stage.kind, job.key, dict(stage.config), work, inputs, manifests,
                           in_worker=job.capture_log, runtime=dict(stage.runtime))
        started = time.time()
        t0 = time.perf_counter()
        cpu0 = _cpu_seconds()
        log_buf = io.StringIO()
        with _threads(stage.threads), _captured(job.capture_log, work / "log.txt", log_buf):
            seed_everything(stage.seed)
            try:
                summary = stage.fn(ctx) or {}
            except PolykwsError as exc:
                raise StageFailed(stage.name, str(exc), _tail(work / "log.txt")) from exc
            except Exception as exc:
                tb = traceback.format_exc()
                raise StageFailed(stage.name, f"{type(exc).__name__}: {exc}\n{tb}", _tail(work / "log.txt")) from exc
        wall_s = time.perf_counter() - t0
        cpu_s = _cpu_seconds() - cpu0
        content_hash, files = hash_folder(work)
        manifest = {
            "format": "polykws-stage",
            "engine_version": ENGINE_VERSION,
            "name": stage.name,
            "kind": stage.kind,
            "key": job.key,
            "version": stage.version,
            "config": dict(stage.config),
            "code_digest": code_digest(stage),
            "code": stage_code(stage),
            "inputs": {d: {"kind": kk[0], "key": kk[1], "content_hash": manifests[d]["content_hash"]} for d, kk in job.inputs.items()},
            "content_hash": content_hash,
            "files": files,
            "summary": summary,
            "started_unix": round(started, 3),
            "wall_s": round(wall_s, 3),
            # CPU seconds of this process and the workers it reaped while the stage ran: on a
            # shared machine this says more about cost than the wall time does.
            "cpu_s": round(cpu_s, 3),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        stable_json(manifest)  # fail here, not in the writer, when a summary is not JSON-able
        return store.commit(stage.kind, job.key, work, manifest)


def _cpu_seconds() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@contextlib.contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _captured(enabled: bool, path: Path, _buf):
    """Workers write their stdout/stderr (including rich progress) to the stage's log.txt."""
    if not enabled:
        yield
        return
    with open(path, "a", encoding="utf-8", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        yield


# --- executors ----------------------------------------------------------------------------------
class Executor:
    """Runs fan-out jobs. `submit` returns a concurrent.futures.Future of the stage manifest."""

    name = "serial"
    parallel = False
    workers = 1

    def submit(self, store: ArtifactStore, job: Job) -> cf.Future:
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(execute_stage(store, job))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)
        return fut

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialExecutor(Executor):
    pass


def _worker_init(sys_path: list[str], owner_pid: int | None = None) -> None:
    if owner_pid is not None:
        from polykws.core import die_with

        die_with(owner_pid)  # a killed run takes its workers with it
    for p in reversed(sys_path):
        if p not in sys.path:
            sys.path.insert(0, p)


class ProcessExecutor(Executor):
    """Plain local worker processes (spawned, so no torch/fork hazards). No Ray needed."""

    name = "process"
    parallel = True

    def __init__(self, workers: int):
        import multiprocessing as mp

        self.workers = max(1, int(workers))
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(list(sys.path), os.getpid())
        )

    def submit(self, store: ArtifactStore, job: Job) -> cf.Future:
        return self._pool.submit(execute_stage, store, job)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor(Executor):
    """Fan-out on Ray: `address=None` starts a local cluster, else joins the given one.

    Workers read and write the same artifact store, so with a remote cluster the store must be a
    shared filesystem path or an object store URI that every node can reach.
    """

    name = "ray"
    parallel = True

    def __init__(self, address: str | None = None, workers: int | None = None, cpus_per_job: float = 1.0):
        try:
            import ray
        except ImportError:
            raise PolykwsError("--executor ray needs the 'scale' extra: pip install 'polykws[scale]'") from None
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False)
            if address:
                # A remote cluster: its nodes must have polykws installed (same version) and reach
                # the artifact store; the driver's paths mean nothing there.
                kwargs["address"] = address
            else:
                # Local cluster: workers import polykws (and test fixtures) exactly as the driver does.
                kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
                if workers:
                    kwargs["num_cpus"] = int(workers)
            ray.init(**kwargs)
        self.workers = int(ray.cluster_resources().get("CPU", 1) // cpus_per_job) or 1
        self._remote = ray.remote(num_cpus=cpus_per_job, max_retries=0)(execute_stage)

    def submit(self, store: ArtifactStore, job: Job) -> cf.Future:
        return self._remote.remote(store, job).future()

    def close(self) -> None:
        if self._owns:
            self._ray.shutdown()


def make_executor(kind: str = "auto", *, workers: int | None = None, ray_address: str | None = None) -> Executor:
    if kind == "auto":
        kind = "ray" if ray_address else "process"
    if ray_address and kind != "ray":
        raise PolykwsError("--ray-address needs --executor ray (or auto)")
    if kind == "serial":
        return SerialExecutor()
    if kind == "process":
        n = workers or os.cpu_count() or 1
        return SerialExecutor() if n <= 1 else ProcessExecutor(n)
    if kind == "ray":
        return RayExecutor(address=ray_address, workers=workers)
    raise PolykwsError(f"unknown executor {kind!r}; choose auto, serial, process or ray")


# --- the pipeline ---------------------------------------------------------------------------------
def toposort(stages: Iterable[Stage]) -> list[Stage]:
    by_name: dict[str, Stage] = {}
    for s in stages:
        if s.name in by_name:
            raise PolykwsError(f"duplicate stage name {s.name!r}")
        by_name[s.name] = s
    for s in by_name.values():
        for d in s.deps:
            if d not in by_name:
                raise PolykwsError(f"stage {s.name} depends on unknown stage {d!r}")
    order: list[Stage] = []
    state: dict[str, int] = {}

    def visit(s: Stage, path: tuple[str, ...]) -> None:
        if state.get(s.name) == 2:
            return
        if state.get(s.name) == 1:
            raise PolykwsError(f"stage cycle: {' -> '.join(path + (s.name,))}")
        state[s.name] = 1
        for d in s.deps:
            visit(by_name[d], path + (s.name,))
        state[s.name] = 2
        order.append(s)

    for s in by_name.values():
        visit(s, ())
    return order
