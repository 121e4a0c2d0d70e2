"""Shared fixtures. Tests that need the real recordings take `shared_data` and skip with a reason."""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path

import pytest

from polykws.core import repo_root, shared_dir

# What every test's global random generators start from, whichever tests ran before it.
TEST_SEED = 0
_FILE_ORDER = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """pytest-randomly (dev extra) shuffles and reseeds every run once installed. A plain run
    keeps file order; random order needs an explicit seed (`make test-random`,
    `pytest --randomly-seed=N`), so every shuffled run can be repeated."""
    if config.pluginmanager.hasplugin("randomly") and config.getoption("randomly_seed") == "default":
        config.option.randomly_reorganize = False
        config.option.randomly_reset_seed = False
        config.stash[_FILE_ORDER] = True


def pytest_report_header(config):
    if config.stash.get(_FILE_ORDER, False):
        return "test order: file order, randomly's seed unused (random order: make test-random)"


@pytest.fixture(autouse=True)
def _fresh_global_rng():
    """Code under test draws from the global generators (layer init, dropout, a new head), so
    each test starts them from TEST_SEED rather than from where the previous test left them.
    torch is seeded only once imported: on import its generator starts from a fixed seed."""
    random.seed(TEST_SEED)
    import numpy as np

    np.random.seed(TEST_SEED)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(TEST_SEED)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $POLYKWS_SHARED/data): real speech + noise, never copied into the repo."""
    data = shared_dir() / "data"
    if not (data / "kws").is_dir():
        pytest.skip(f"real recordings not found at {data}/kws (set POLYKWS_SHARED to the shared folder)")
    return data


@pytest.fixture(scope="session")
def bench_module():
    """Load a bench script as a module (bench/ is scripts, not a package); its folder goes on sys.path."""
    import importlib.util

    folder = str(repo_root() / "bench")
    if folder not in sys.path:
        sys.path.insert(0, folder)

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", repo_root() / "bench" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


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
