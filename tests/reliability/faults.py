"""Fault injection for `polykws run`: SIGKILL at a random point inside a chosen stage kind, then
resume; a full disk; a read-only output folder. Shared by tests/reliability/test_faults.py
(one trial per stage kind, `slow`) and bench/kill_resume.py (many trials).

A run is the real CLI (`python -m polykws.cli run --config ...`) in its own process group, so a
kill takes the driver and every worker at once. Where a kill lands is read from the store, not
guessed: a stage being built has a `<kind>/.work-<key>/` folder. Identity is checked on every
stage's content hash (a hash over its output files; the report, which holds build times, aside).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PIPELINE_TESTS = Path(__file__).resolve().parents[1] / "pipeline"
if str(PIPELINE_TESTS) not in sys.path:
    sys.path.insert(0, str(PIPELINE_TESTS))

from corpus_fixture import make_corpus, pipeline_config  # noqa: E402

# The report records build times: its bytes differ between any two runs by design.
NOT_COMPARED = frozenset({"report"})


@dataclass
class Setup:
    root: Path
    corpus: Path
    export: bool

    def config(self, name: str) -> Path:
        """A config whose store, feature cache and run folder live in root/<name>/."""
        base = self.root / name
        raw = pipeline_config(self.corpus, base / "store", base / "run", export=self.export)
        raw["data"]["cache_dir"] = str(base / "feature-cache")
        raw["name"] = "faults"
        path = base / "config.yaml"
        base.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(raw))
        return path


def make_setup(root: Path, export: bool) -> Setup:
    root.mkdir(parents=True, exist_ok=True)
    corpus = root / "corpus"
    if not corpus.exists():
        make_corpus(corpus)
    return Setup(root, corpus, export)


def start(cfg: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "import sys; from polykws.cli import main; sys.exit(main())", "run", "--config", str(cfg), "--no-progress", *extra]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PIPELINE_TESTS), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)


def finish(proc: subprocess.Popen, timeout_s: float = 3600) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc.returncode, out + err


def store_of(cfg: Path) -> Path:
    return Path(yaml.safe_load(cfg.read_text())["artifacts"])


def finished(store: Path) -> dict[str, dict]:
    """name -> stage manifest of every finished stage in the store."""
    out = {}
    for p in store.glob("*/*/stage.json"):
        m = json.loads(p.read_text())
        out[m["name"]] = m
    return out


def in_progress(store: Path) -> list[str]:
    """Kinds with a stage being built (a .work-<key> folder)."""
    return sorted({p.parent.name for p in store.glob("*/.work-*")})


def content_hashes(store: Path) -> dict[str, str]:
    return {n: m["content_hash"] for n, m in finished(store).items() if m["kind"] not in NOT_COMPARED}


@dataclass
class Reference:
    hashes: dict[str, str]
    # kind -> [(start offset from launch, wall seconds)] of every stage of that kind
    windows: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    wall_s: float = 0.0


def reference_run(setup: Setup) -> Reference:
    cfg = setup.config("reference")
    t0 = time.time()
    rc, log = finish(start(cfg))
    assert rc == 0, log[-4000:]
    ref = Reference(content_hashes(store_of(cfg)), wall_s=time.time() - t0)
    for m in finished(store_of(cfg)).values():
        ref.windows.setdefault(m["kind"], []).append((m["started_unix"] - t0, m["wall_s"]))
    return ref


@dataclass
class Trial:
    kind: str
    kill_at_s: float
    landed_in: list[str]
    identical: bool
    resumed_stages_reused: int
    wall_s: float


def kill_and_resume(setup: Setup, ref: Reference, kind: str, rng: random.Random, name: str) -> Trial:
    """Start a fresh run, wait until a stage of `kind` is being built, SIGKILL the run's process
    group a random fraction of that stage's reference wall time later, resume, and compare every
    stage's content hash with the reference."""
    _, wall = rng.choice(ref.windows[kind])
    delay = rng.uniform(0.0, 0.8) * wall
    cfg = setup.config(name)
    store = store_of(cfg)
    t0 = time.time()
    proc = start(cfg)
    landed: list[str] = []
    deadline = t0 + ref.wall_s * 3 + 120
    while proc.poll() is None and time.time() < deadline and kind not in in_progress(store):
        time.sleep(0.01)
    if proc.poll() is None:
        time.sleep(delay)
        landed = in_progress(store)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # The folder being built when the group died is still there: sample again.
        landed = sorted(set(landed) | set(in_progress(store)))
    else:
        landed = ["(finished before the kill)"]
    kill_at = time.time() - t0
    before = set(finished(store))
    rc, log = finish(start(cfg))
    assert rc == 0, f"resume after a kill in {kind} failed:\n{log[-4000:]}"
    got = content_hashes(store)
    return Trial(kind, round(kill_at, 2), landed, got == ref.hashes, len(before), round(time.time() - t0, 1))


def cleanup(setup: Setup, name: str) -> None:
    shutil.rmtree(setup.root / name, ignore_errors=True)


def _mount_tmpfs(path: Path, size: str, read_only: bool = False) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


def full_disk_then_resume(setup: Setup, ref: Reference, size: str = "768k") -> tuple[str, bool]:
    """Run with the store on a tiny tmpfs: the run must stop with a clear error (no traceback).
    Then copy what it left to a roomy disk and resume there: the result must equal the reference,
    so nothing half-written was reused. Returns (the error line, identical)."""
    cfg = setup.config("fulldisk")
    store = store_of(cfg)
    if not _mount_tmpfs(store, size):
        raise RuntimeError("mount failed")
    try:
        rc, log = finish(start(cfg))
        assert rc == 2, f"a full disk must end the run with a named error (rc 2), got {rc}:\n{log[-3000:]}"
        assert "Traceback" not in log and "No space left on device" in log, log[-3000:]
        line = next(ln for ln in log.splitlines() if "No space left on device" in ln)
        roomy = setup.root / "fulldisk" / "store-roomy"
        shutil.copytree(store, roomy, symlinks=True)
    finally:
        _umount(store)
    shutil.rmtree(store, ignore_errors=True)
    roomy.rename(store)
    rc, log = finish(start(cfg))
    assert rc == 0, log[-3000:]
    return line, content_hashes(store) == ref.hashes


def read_only_output(setup: Setup) -> str:
    """Store and run folder on a read-only mount: a clear error naming the problem, nothing written."""
    cfg = setup.config("readonly")
    store = store_of(cfg)
    out = Path(yaml.safe_load(cfg.read_text())["output"])
    if not _mount_tmpfs(store, "1m", read_only=True):
        raise RuntimeError("mount failed")
    try:
        rc, log = finish(start(cfg))
        assert rc == 2, f"a read-only store must end the run with a named error (rc 2), got {rc}:\n{log[-3000:]}"
        assert "Traceback" not in log and "read-only" in log.lower(), log[-3000:]
        assert not any(store.iterdir())
        return next(ln for ln in log.splitlines() if "read-only" in ln.lower())
    finally:
        _umount(store)
        assert not out.exists() or not any(out.rglob("*.json"))
