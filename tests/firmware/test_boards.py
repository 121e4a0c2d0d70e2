"""Board support: startup + console + SysTick under QEMU (with the instruction-count calibration),
the real board's build, and the memory-map check `polykws firmware flash` runs before writing."""

from __future__ import annotations

import re
import shutil

import pytest

from polykws.firmware import build as fw_build
from polykws.firmware.boards import get_board, list_boards, parse_memory_regions
from polykws.firmware.flash import check_memory, flash_elf
from polykws.firmware.qemu import run_elf
from polykws.core import PolykwsError

needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed (.ci/run installs it)")


def test_board_registry_and_memory_maps():
    names = [b.name for b in list_boards()]
    assert {"mps2-an386", "mps3-an547", "nrf52840dk"} <= set(names)
    nrf = get_board("nrf52840dk").memory()
    assert (nrf["FLASH"].origin, nrf["FLASH"].length) == (0, 1 << 20)
    assert (nrf["RAM"].origin, nrf["RAM"].length) == (0x20000000, 256 << 10)
    an547 = get_board("mps3-an547").memory()
    assert an547["FLASH"].length == 512 << 10 and an547["SRAM"].origin == 0x01000000
    with pytest.raises(Exception, match="unknown board"):
        get_board("stm32-imaginary")


def test_memory_parser_rejects_garbage(tmp_path):
    p = tmp_path / "m.ld"
    p.write_text("MEMORY\n{\n  FLASH (rx) : ORIGIN = 0x0, LENGTH = 1M\n}\n")
    with pytest.raises(PolykwsError, match="RAM"):
        parse_memory_regions(p)
    p.write_text("MEMORY\n{\n  FLASH (rx) : ORIGIN = zero, LENGTH = 1M\n}\n")
    with pytest.raises(PolykwsError, match="zero"):
        parse_memory_regions(p)


@pytest.mark.qemu
@pytest.mark.parametrize("board", [b.name for b in list_boards() if b.qemu_machine])
def test_qemu_selftest_counts_instructions(board, tmp_path):
    """SHA-256/CRC known answers on the core, and SysTick x units_per_tick == the loop's instruction count."""
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed (.ci/run installs them from Debian)")
    fw_build.run_make("selftest", board, build_root=tmp_path, nice=False)
    out = run_elf(tmp_path / board / "selftest.elf", board, timeout_s=60).stdout
    m = re.search(r"PKW_SELFTEST board=(\S+) sha256=(\w+) crc32=(\w+) loop_instructions=(\d+) measured_instructions=(\d+) ticks=(\d+)", out)
    assert m, out
    assert m.group(1) == board and m.group(2) == "ok" and m.group(3) == "ok"
    expected, measured, ticks = int(m.group(4)), int(m.group(5)), int(m.group(6))
    per_tick = measured / ticks
    # One SysTick tick of resolution (plus the few instructions that read the counter).
    assert abs(measured - expected) <= per_tick + 8, (measured, expected)
    assert "PKW_END status=ok" in out


@needs_arm
def test_real_board_builds_and_fits(tmp_path):
    fw_build.run_make("selftest", "nrf52840dk", build_root=tmp_path, nice=False)
    elf = tmp_path / "nrf52840dk" / "selftest.elf"
    check = check_memory(elf, "nrf52840dk")
    assert check.ok, check.problems
    assert 0 < check.flash_used < 64 * 1024 and check.ram_used > 16 * 1024  # stack + heap reserved
    assert flash_elf(elf, "nrf52840dk", dry_run=True).ok
    # The 48 device vectors sit right behind the 16 architectural ones; with no microphone driver
    # linked, the PDM slot (IRQ 29) holds the weak handler, which reports and stops.
    assert fw_build.elf_symbol(elf, "g_device_vectors") == (16 * 4, 48 * 4)
    weak = fw_build.elf_symbol(elf, "PDM_IRQHandler")
    assert weak is not None and fw_build.elf_word(elf, (16 + 29) * 4) == weak[0] | 1  # Thumb bit
    with pytest.raises(PolykwsError, match="QEMU machine"):
        flash_elf(elf, "mps2-an386", dry_run=True)


@needs_arm
def test_memory_check_refuses_an_image_that_does_not_fit(tmp_path):
    """The AN386 blob runner reserves ~460 KB of RAM: it must be refused for a 256 KB nRF52840, naming both maps."""
    elf = fw_build.build_blob_runner("mps2-an386", tmp_path)
    check = check_memory(elf, "nrf52840dk")
    assert not check.ok
    assert any(".bss" in p and "linker script" in p for p in check.problems)
    assert any("pyOCD target nrf52840" in p for p in check.problems)
    with pytest.raises(PolykwsError, match="nothing was written"):
        flash_elf(elf, "nrf52840dk")
