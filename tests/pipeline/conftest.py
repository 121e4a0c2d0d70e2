"""Make tests/pipeline/fixture_stages.py importable by name, here and in worker processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture
def calls(tmp_path, monkeypatch):
    """Path of the call log the fixture stages append to; `read()` gives the names that ran."""
    path = tmp_path / "calls.log"
    monkeypatch.setenv("POLYKWS_TEST_CALLS", str(path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))

    class Calls:
        def read(self) -> list[str]:
            return path.read_text().split() if path.exists() else []

        def reset(self) -> None:
            path.unlink(missing_ok=True)

    return Calls()
