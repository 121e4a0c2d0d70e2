"""The on-device micro frontend under QEMU equals the host's, value for value (needs TFLM_DIR and
kissfft v130; skips with a reason otherwise, as in CI).

One continuous stream, never reset: silence, tones, noise at several levels, noise bursts with a
speech-like envelope and a chirp, after a full-scale square wave whose values pass the range the
model's input quantizer clips. Every raw uint16 frame and every int8 model frame must equal
pymicro-features + the host quantizer. The runner is built from host-generated tables
(polykws.firmware.frontendgen), so the device runs no floating-point initialisation.
"""

from __future__ import annotations

import shutil

import pytest

from polykws.core import PolykwsError
from polykws.datasets.frontend import micro_frontend

pytestmark = pytest.mark.tflm

@pytest.fixture(scope="module")
def runner(tflm_dir, tmp_path_factory):
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed (.ci/run installs them from Debian)")
    from polykws.firmware.frontendcheck import FrontendSources, build_frontend_runner
    from polykws.firmware.frontendgen import InputQuant

    try:
        sources = FrontendSources.from_env()
    except PolykwsError as exc:
        pytest.skip(str(exc))
    fe = micro_frontend()
    quant = InputQuant.pinned(fe.value_range)
    tmp = tmp_path_factory.mktemp("fe")
    elf = build_frontend_runner(fe, quant, sources, tmp / "gen", build_root=tmp / "build")
    return elf, fe, quant


def test_device_frontend_is_bit_exact_on_a_stream(runner, signal_pcm):
    from polykws.firmware.frontendcheck import check_stream, host_raw_frames
    from polykws.firmware.frontendgen import quantizer_table

    elf, fe, quant = runner
    pcm = signal_pcm
    result = check_stream(elf, pcm, fe, quant)
    steps = len(pcm) // fe.stride_samples
    assert result.raw_frames == steps - (fe.window_samples // fe.stride_samples - 1)
    assert result.model_frames == (result.raw_frames + 1) // 2
    assert result.bit_exact, result
    # The stream reaches past the quantizer table, so its saturating end is checked too.
    assert host_raw_frames(pcm, fe).max() >= quantizer_table(fe, quant).size
    assert 20_000 < result.instructions_per_frame < 400_000  # about 81K on the M4 (docs/BENCHMARKS.md)


def test_the_profile_build_reports_every_stage_and_stays_bit_exact(runner, signal_pcm, tmp_path):
    """FE_PROFILE=1: the library's stages run through link-time wrappers that time them. The
    frames must not change, every stage must be timed once per frame, and the stages must account
    for nearly all of a frame (the rest is the glue around FrontendProcessSamples)."""
    from polykws.firmware.frontendcheck import (
        FrontendSources,
        build_frontend_runner,
        check_stream,
    )

    _, fe, quant = runner
    elf = build_frontend_runner(fe, quant, FrontendSources.from_env(), tmp_path / "gen", build_root=tmp_path / "build",
                                profile=True)
    result = check_stream(elf, signal_pcm, fe, quant)
    assert result.bit_exact, result
    stages = dict(result.stages)
    assert list(stages) == ["window", "fft", "energy", "accumulate", "sqrt", "noise_reduction", "pcan", "log_scale"]
    assert all(v > 0 for v in stages.values()), stages
    assert 0.9 * result.instructions_per_frame < sum(stages.values()) < result.instructions_per_frame
    assert max(stages, key=stages.get) == "fft"
