"""Shared fixtures. Tests that need the real recordings take `shared_data` and skip with a reason."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from polykws.core import repo_root, shared_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $POLYKWS_SHARED/data): real speech + noise, never copied into the repo."""
    data = shared_dir() / "data"
    if not (data / "kws").is_dir():
        pytest.skip(f"real recordings not found at {data}/kws (set POLYKWS_SHARED to the shared folder)")
    return data


@pytest.fixture(scope="session")
def repo() -> Path:
    return repo_root()


def have_arm_toolchain() -> bool:
    return shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None


@pytest.fixture(scope="session")
def tflm_dir() -> Path:
    d = os.environ.get("TFLM_DIR")
    if not d or not Path(d, "tensorflow", "lite", "micro").is_dir():
        pytest.skip("TFLM_DIR is not set to a tflite-micro checkout (see firmware/README.md)")
    return Path(d)
