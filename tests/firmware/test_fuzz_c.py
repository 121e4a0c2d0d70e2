"""A short structure-aware fuzz of firmware/lib/blob.c under ASan/UBSan, in the default test run.

libFuzzer when clang links it (.ci/run installs clang), else the driver's seeded mutation loop
under gcc's sanitizers. 10,000 inputs per parser (blob decoder, flash image reader); the 1,000,000
input runs are bench/fuzz_blob.py. Properties (firmware/test/fuzz_blob.c): a documented status,
an accepted blob gives exactly its target, a refused switch leaves no model, no write outside
the model buffer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from polykws.firmware import build as fw_build
from polykws.firmware import fuzz

RUNS_PER_TARGET = 10_000

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("clang") is None, reason="no host C compiler")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    if not fuzz.libfuzzer_available() and not fw_build.host_sanitizers_available():
        pytest.skip("neither clang's libFuzzer nor gcc's ASan/UBSan can be linked here")
    exe, engine = fuzz.build(root / "build")
    return exe, engine, fuzz.write_seeds(root / "seeds")


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_fuzz_blob_c(driver, target):
    exe, engine, seeds = driver
    r = fuzz.run(exe, engine, seeds, target, RUNS_PER_TARGET, seed=7)
    assert r.ok, f"{engine} {target}: {r.log[-4000:]}"
    assert r.runs == RUNS_PER_TARGET
    if engine == "libfuzzer":
        assert r.coverage and r.coverage > 100, "the fuzzer should reach well past the header checks"


def test_fuzz_driver_catches_a_planted_out_of_bounds_write(driver, tmp_path):
    """The harness can fail: blob.c with its span check removed writes past the model buffer."""
    exe, engine, seeds = driver
    src = (fuzz.FIRMWARE_DIR / "lib" / "blob.c").read_text()
    planted = src.replace("if (end > blob->model_size) return PKWB_ERR_OUT_OF_RANGE;", "")
    planted = planted.replace("if (at + width > limit) return PKWB_ERR_OUT_OF_RANGE;", "")
    assert planted != src
    broken = tmp_path / "fw"
    shutil.copytree(fuzz.FIRMWARE_DIR, broken, ignore=shutil.ignore_patterns("*.py", "__pycache__", "boards", "app", "compat", "build"))
    (broken / "lib" / "blob.c").write_text(planted)
    old = fuzz.FIRMWARE_DIR
    try:
        fuzz.FIRMWARE_DIR = broken
        bad_exe, _ = fuzz.build(tmp_path / "build", engine)
    finally:
        fuzz.FIRMWARE_DIR = old
    r = fuzz.run(bad_exe, engine, seeds, "blob", 200_000, seed=7)
    assert not r.ok and ("heap-buffer-overflow" in r.log or "AddressSanitizer" in r.log), r.log[-2000:]


@pytest.mark.slow
def test_fuzz_run_does_not_inherit_the_callers_peak_rss(driver):
    """Linux carries getrusage's peak RSS across exec, so a caller holding 2.2 GB must not fail the driver."""
    exe, engine, seeds = driver
    if engine != "libfuzzer":
        pytest.skip("only libFuzzer reads the peak RSS")
    script = (
        "import sys; from pathlib import Path; from polykws.firmware import fuzz\n"
        "held = bytearray(2200 * 2**20)\n"
        "held[::4096] = b'x' * len(held[::4096])\n"
        "r = fuzz.run(Path(sys.argv[1]), 'libfuzzer', Path(sys.argv[2]), 'blob', 30000, seed=7)\n"
        "print(r.log[-1500:]); sys.exit(0 if r.ok else 1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(exe), str(seeds)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
