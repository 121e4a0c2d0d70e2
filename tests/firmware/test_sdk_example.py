"""The runtime as a package: `make sdk` writes polykws.h, libpolykws.a and a CMake config; the
example firmware (firmware/examples/listen, plain C) is built against it with CMake, as a product
firmware would be, and its detections under QEMU equal the host's, event for event.

Needs TFLM_DIR, the other TFLM checkouts, kissfft, arm-none-eabi-gcc, cmake and qemu-system-arm
(skips with the reason otherwise, as in CI). The M55 build compiles TFLM for another core, so it
is marked slow; the nRF52840-DK has no QEMU machine and is built only: with a clip in flash, and
with its PDM microphone driver when NRFX_DIR and CMSIS_CORE_DIR point at nrfx and CMSIS-Core.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from polykws.datasets.frontend import micro_frontend
from polykws.export.blob import encode_blob, encode_flash_image
from polykws.export.streaming import DetectorConfig

from polykws.core import PolykwsError

pytestmark = pytest.mark.tflm

LABELS = ["_silence_", "_unknown_"] + [f"kw{i}" for i in range(8)]


@pytest.fixture(scope="module")
def sdk_toolchain(toolchain):
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    return toolchain


@pytest.fixture(scope="module")
def image(int8_model_factory, int8_variant_factory):
    """One blob language, its thresholds in the blob; a model whose head ends in SOFTMAX."""
    base = int8_model_factory(seed=3, features=40, slots=12, output_qparams=(0.05, 0), weight_scale=1e-3, softmax=True)
    lt = int8_variant_factory(base, 9, fraction=0.5)
    thresholds = bytes(255 if lb.startswith("_") else 30 + 25 * (i % 5) for i, lb in enumerate(LABELS))
    return encode_flash_image(base, [encode_blob(base, lt, "lt", LABELS, {"lang": "lt"}, thresholds=thresholds)])


def _sdk(image, toolchain, board, tmp_path):
    from polykws.firmware.sdk import build_sdk
    from polykws.firmware.streamcheck import generate_stream_sources

    third, sources = toolchain
    fe, det = micro_frontend(), DetectorConfig(stride_ms=100, average_window_ms=200, refractory_ms=300)
    # Fallback thresholds that never fire: every detection must come from the blob's.
    gen = generate_stream_sources(tmp_path / "gen", image, base_lang="en", base_labels=[f"en{i}" for i in range(12)],
                                  lang="lt", thresholds=256, frontend=fe, detector=det, board=board, sources=sources)
    return build_sdk(gen, tmp_path / "sdk", board, "cmsis-nn", third, sources), fe, det


@pytest.mark.parametrize("board", ["mps2-an386", pytest.param("mps3-an547", marks=pytest.mark.slow)])
def test_example_built_against_the_package_equals_the_host(board, image, sdk_toolchain, signal_pcm, tmp_path):
    from polykws.firmware.sdk import build_example, run_example
    from polykws.firmware.streamcheck import host_detections

    sdk, fe, det = _sdk(image, sdk_toolchain, board, tmp_path)
    for part in ("include/polykws.h", "include/pkw_model.h", "lib/libpolykws.a", "lib/cmake/polykws/polykwsConfig.cmake"):
        assert (sdk / part).is_file(), part
    elf = build_example(sdk, tmp_path / "build")
    pcm = signal_pcm  # silence, tones, noise, bursts, a chirp, a full-scale square wave
    host = host_detections(image, "lt", pcm, fe, det, {lb: 30 + 25 * (i % 5) for i, lb in enumerate(LABELS) if not lb.startswith("_")})
    assert len(host) >= 3 and len({k for k, _ in host}) >= 2, "the stream must make several keywords fire on the host"
    run = run_example(elf, pcm, board)
    assert run.samples == len(pcm)
    assert run.detections == host
    assert 0 < run.arena_used_bytes and 0 < run.state_bytes


def test_example_builds_for_the_nrf52840dk_with_a_clip_in_flash(image, sdk_toolchain, signal_pcm, tmp_path):
    from polykws.firmware.build import elf_size
    from polykws.firmware.sdk import build_example

    sdk, _, _ = _sdk(image, sdk_toolchain, "nrf52840dk", tmp_path)
    clip = tmp_path / "clip.pcm"
    clip.write_bytes(signal_pcm[:16000].astype("<i2").tobytes())
    elf = build_example(sdk, tmp_path / "build", pcm=clip)
    size = elf_size(elf)
    # The clip is in flash beside the code and the image; the board has 1 MB of flash, 256 KB of RAM.
    assert size.flash_bytes > 32000 and size.flash_bytes <= 1 << 20
    assert size.ram_bytes <= 256 << 10


def test_example_builds_for_the_nrf52840dk_with_its_pdm_microphone(image, sdk_toolchain, tmp_path):
    """Build-checked only: the driver compiles against nrfx with -Werror, links, and its handler
    owns the PDM interrupt's vector. No board with a microphone runs it here."""
    from polykws.firmware.build import NrfxSources, elf_size, elf_symbol, elf_word
    from polykws.firmware.sdk import build_example

    try:
        mic = NrfxSources.from_env()
    except PolykwsError as err:
        pytest.skip(str(err))
    sdk, _, _ = _sdk(image, sdk_toolchain, "nrf52840dk", tmp_path)
    elf = build_example(sdk, tmp_path / "build", pcm="pdm", mic=mic)
    for name in ("pdm_mic_start", "pdm_mic_read", "nrfx_pdm_init", "nrfx_pdm_irq_handler", "polykws_push_pcm"):
        assert elf_symbol(elf, name) is not None, name
    handler = elf_symbol(elf, "PDM_IRQHandler")
    assert handler is not None and elf_word(elf, (16 + 29) * 4) == handler[0] | 1, "IRQ 29 must reach the driver"
    nm = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    assert any(line.split()[1:] == ["T", "PDM_IRQHandler"] for line in nm.splitlines()), "the driver's handler, not the weak one"
    size = elf_size(elf)
    assert size.flash_bytes <= 1 << 20 and size.ram_bytes <= 256 << 10


def test_the_pdm_microphone_is_refused_on_a_board_without_one(image, sdk_toolchain, tmp_path):
    from polykws.firmware.build import NrfxSources
    from polykws.firmware.sdk import build_example

    nrfx = tmp_path / "nrfx"
    (nrfx / "drivers" / "src").mkdir(parents=True)
    (nrfx / "drivers" / "src" / "nrfx_pdm.c").write_text("")
    core = tmp_path / "core" / "Include"
    core.mkdir(parents=True)
    (core / "core_cm4.h").write_text("")
    mic = NrfxSources.from_env({"NRFX_DIR": str(nrfx), "CMSIS_CORE_DIR": str(core.parent)})
    sdk, _, _ = _sdk(image, sdk_toolchain, "mps2-an386", tmp_path)
    with pytest.raises(PolykwsError) as err:
        build_example(sdk, tmp_path / "build", pcm="pdm", mic=mic)
    assert "board mps2-an386 has no microphone driver" in " ".join(str(err.value).split())


def test_a_clip_of_odd_length_is_refused_by_name(image, sdk_toolchain, tmp_path):
    from polykws.firmware.sdk import build_example

    sdk, _, _ = _sdk(image, sdk_toolchain, "mps2-an386", tmp_path)
    clip = tmp_path / "odd.pcm"
    clip.write_bytes(b"\x01\x02\x03")
    with pytest.raises(PolykwsError) as err:
        build_example(sdk, tmp_path / "build", pcm=clip)
    message = " ".join(str(err.value).split())  # CMake wraps long messages
    assert "odd.pcm: not a raw int16 clip (3 bytes: empty or an odd count)" in message
