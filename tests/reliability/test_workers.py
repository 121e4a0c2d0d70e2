"""Workers die with their run: SIGKILL of the process that owns a pool leaves no live worker.

A child script starts a pool (the datasets parallel_map and the pipeline's ProcessExecutor),
prints its workers' pids once they are busy, and is then killed with SIGKILL, which runs no
cleanup at all. Every worker must be gone within a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = {
    "parallel_map": """
        import os, sys, time
        from polykws.datasets._parallel import parallel_map
        import worker_fns
        if __name__ == "__main__":
            for pid in parallel_map(worker_fns.report_and_sleep, list(range(4)), workers=2, min_items_per_worker=1):
                pass
    """,
    "engine": """
        import os, sys, time
        from polykws.pipeline.engine import ProcessExecutor
        import worker_fns
        if __name__ == "__main__":
            ex = ProcessExecutor(2)
            futs = [ex._pool.submit(worker_fns.report_and_sleep, i) for i in range(2)]
            time.sleep(600)
    """,
}

WORKER_FNS = """
import os, sys, time
def report_and_sleep(i):
    with open(os.environ["PIDS_FILE"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(600)
    return i
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.parametrize("kind", sorted(SCRIPT))
def test_sigkilled_owner_takes_its_workers_along(tmp_path, kind):
    (tmp_path / "worker_fns.py").write_text(WORKER_FNS)
    main = tmp_path / "owner.py"
    main.write_text(textwrap.dedent(SCRIPT[kind]))
    pids_file = tmp_path / "pids.txt"
    env = dict(os.environ, PIDS_FILE=str(pids_file), PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    owner = subprocess.Popen([sys.executable, str(main)], cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = [int(x) for x in pids_file.read_text().split()] if pids_file.exists() else []
            if len(pids) >= 2:
                break
            assert owner.poll() is None, f"owner exited early with {owner.returncode}"
            time.sleep(0.2)
        else:
            pytest.fail("workers never started")
        assert all(_alive(p) for p in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        survivors = [p for p in pids if _alive(p)]
        assert not survivors, f"workers {survivors} outlived their SIGKILLed owner"
    finally:
        if owner.poll() is None:
            owner.kill()
        for p in [int(x) for x in pids_file.read_text().split()] if pids_file.exists() else []:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
