"""Fault injection on `polykws run` (slow): SIGKILL of the whole process group inside every stage
kind, then resume, gives byte-identical stage artifacts; a full disk and a read-only store end
the run with a named error and leave nothing half-written that a resumed run would reuse.
bench/kill_resume.py runs many trials and reports them per stage kind."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faults  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    setup = faults.make_setup(tmp_path_factory.mktemp("faults"), export=False)
    return setup, faults.reference_run(setup)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    setup = faults.make_setup(tmp_path_factory.mktemp("faults-export"), export=True)
    return setup, faults.reference_run(setup)


@pytest.mark.parametrize("kind", ["scan", "features", "base", "adapt", "report"])
def test_sigkill_in_stage_then_resume_is_identical(quick, kind):
    setup, ref = quick
    _trials_until_landed(setup, ref, kind)


def _trials_until_landed(setup, ref, kind, attempts: int = 3) -> None:
    """Short stages (scan, tflm_eval: about a second) can finish between the moment the harness
    sees them start and the kill: up to 3 trials, every one identical, at least one inside `kind`."""
    rng = random.Random(kind)
    trials = []
    for i in range(attempts):
        trials.append(faults.kill_and_resume(setup, ref, kind, rng, f"kill-{kind}-{i}"))
        faults.cleanup(setup, f"kill-{kind}-{i}")
        assert trials[-1].identical, trials[-1]
        if kind in trials[-1].landed_in:
            return
    pytest.fail(f"no kill landed in {kind}: {trials}")


@pytest.mark.parametrize("kind", ["export_base", "export", "pack", "tflm_eval"])
def test_sigkill_in_export_stages_then_resume_is_identical(exported, kind):
    setup, ref = exported
    _trials_until_landed(setup, ref, kind)


def test_full_disk_is_a_named_error_and_resume_reuses_nothing_half_written(quick):
    if not faults.can_mount():
        pytest.skip("needs root to mount a tiny tmpfs")
    setup, ref = quick
    line, identical = faults.full_disk_then_resume(setup, ref)
    assert "No space left on device" in line and "rerunning the same command resumes" in line
    assert identical


def test_read_only_store_is_a_named_error(quick):
    if not faults.can_mount():
        pytest.skip("needs root to mount a read-only tmpfs")
    setup, _ = quick
    assert "read-only" in faults.read_only_output(setup)
