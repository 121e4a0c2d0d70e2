"""Run a Cortex-M ELF under qemu-system-arm with semihosting and deterministic instruction counting.

`-icount shift=0` makes every instruction advance QEMU's virtual clock by exactly 1 ns, so the
SysTick-based counts the firmware prints are instruction counts (not cycles: QEMU models no
pipeline or memory timing) and repeat exactly from run to run.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from polykws.firmware.boards import get_board
from polykws.firmware.build import require_tool
from polykws.core import PolykwsError


@dataclass(frozen=True)
class QemuRun:
    command: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def faulted(self) -> bool:
        return "PKW_FAULT" in self.stdout


def qemu_command(elf: Path, machine: str) -> list[str]:
    return [
        "qemu-system-arm",
        "-M", machine,
        "-nographic",
        "-monitor", "none",
        "-serial", "none",
        "-semihosting-config", "enable=on,target=native",
        "-icount", "shift=0",
        "-kernel", str(elf),
    ]  # fmt: skip


def run_elf(elf: Path, board: str, cwd: Path | None = None, timeout_s: float = 600.0) -> QemuRun:
    """Run `elf` on the board's QEMU machine; semihosting file paths are relative to `cwd`."""
    b = get_board(board)
    if b.qemu_machine is None:
        raise PolykwsError(f"board {board} is real silicon; flash it with `polykws firmware flash` instead")
    require_tool("qemu-system-arm")
    elf = Path(elf).resolve()
    if not elf.is_file():
        raise PolykwsError(f"{elf}: no such ELF; build it first")
    cmd = qemu_command(elf, b.qemu_machine)
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise PolykwsError(f"{elf.name} on {b.qemu_machine} did not finish within {timeout_s:.0f} s; last output:\n{out[-2000:]}") from None
    run = QemuRun(cmd, proc.returncode, proc.stdout, proc.stderr)
    if run.faulted:
        raise PolykwsError(f"{elf.name} faulted on {b.qemu_machine}; output:\n{proc.stdout[-2000:]}{proc.stderr[-1000:]}")
    return run
