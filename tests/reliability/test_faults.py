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


@pytest.mark.parametrize("kind", ["scan", "features", "base", "adapt"])
def test_sigkill_in_stage_then_resume_is_identical(quick, kind):
    setup, ref = quick
    trial = faults.kill_and_resume(setup, ref, kind, random.Random(kind), f"kill-{kind}")
    assert kind in trial.landed_in, trial
    assert trial.identical, trial
    faults.cleanup(setup, f"kill-{kind}")


@pytest.mark.parametrize("kind", ["export_base", "export", "pack", "tflm_eval"])
def test_sigkill_in_export_stages_then_resume_is_identical(tmp_path_factory, kind):
    setup = faults.make_setup(tmp_path_factory.mktemp(f"faults-{kind}"), export=True)
    ref = faults.reference_run(setup)
    trial = faults.kill_and_resume(setup, ref, kind, random.Random(kind), f"kill-{kind}")
    assert kind in trial.landed_in, trial
    assert trial.identical, trial


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
