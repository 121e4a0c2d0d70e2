"""Worker lifetime: a worker process exits when the run that started it is gone.

A run killed with SIGKILL runs no cleanup, so its pool cannot stop its workers; each worker
watches its owner instead and exits within a fraction of a second, rather than living on with
its memory.
"""

from __future__ import annotations

import os

# How often a worker checks that the process that started it is still alive.
PARENT_POLL_S = 0.25


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (cannot happen for our own parent)
        return True
    return True


def die_with(owner_pid: int, poll_s: float = PARENT_POLL_S) -> None:
    """Exit this worker process as soon as `owner_pid` is gone (a daemon thread polls it).

    The pool's owner, not os.getppid(): forkserver workers are children of the fork server,
    which may outlive the owner by a moment. Polling by pid works for spawn, forkserver and fork.
    """
    import threading
    import time

    if owner_pid == os.getpid():
        return

    def watch() -> None:
        while _pid_alive(owner_pid):
            time.sleep(poll_s)
        os._exit(70)  # no cleanup: the run this worker served is gone

    threading.Thread(target=watch, name=f"die-with-{owner_pid}", daemon=True).start()
