"""Where things are: the source checkout, the shared recordings, and the machine a run used."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The source checkout root (editable installs) - used to find configs/ and firmware sources."""
    return Path(__file__).resolve().parent.parent.parent


def shared_dir() -> Path:
    """Where the real recordings live: $POLYKWS_SHARED, else ../shared next to the checkout."""
    env = os.environ.get("POLYKWS_SHARED")
    return Path(env) if env else repo_root().parent / "shared"


def resolve_path(path: str | Path) -> Path:
    """The one path rule of every config: `shared:<rel>` is shared_dir()/<rel>, `~` expands, and
    a relative path is relative to the repository root (not the working directory)."""
    text = str(path)
    if text.startswith("shared:"):
        return shared_dir() / text[len("shared:") :]
    p = Path(os.path.expanduser(text))
    return p if p.is_absolute() else repo_root() / p


def run_context() -> dict[str, str]:
    """When, where and how a benchmark ran: recorded beside every result it writes."""
    import platform
    import sys
    from datetime import datetime, timezone

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), {platform.platform()}",
        "command": " ".join(sys.argv),
    }
