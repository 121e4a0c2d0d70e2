"""Board registry: what `polykws firmware` needs to know about each target.

The memory map is read from the board's own linker script (firmware/boards/<name>/memory.ld), so
the linker and the flash-time memory check can never disagree. Boards register themselves, like
models and deltas elsewhere in polykws.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from polykws.core import ConfigError, PolykwsError

FIRMWARE_DIR = Path(__file__).resolve().parent
KERNELS = ("reference", "cmsis-nn")


@dataclass(frozen=True)
class MemoryRegion:
    name: str
    origin: int
    length: int

    @property
    def end(self) -> int:
        return self.origin + self.length

    def contains(self, start: int, size: int) -> bool:
        return self.origin <= start and start + size <= self.end


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    cpu: str  # marketing name, for reports
    qemu_machine: str | None = None  # None: real silicon only
    pyocd_target: str | None = None  # None: not flashable (QEMU only)
    # SysTick counts this many instructions (QEMU -icount shift=0) or cycles (silicon) per tick.
    count_unit: str = "instructions"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9-]+", self.name):
            raise ConfigError(f"board name {self.name!r} must be [a-z0-9-]")
        if self.qemu_machine is None and self.pyocd_target is None:
            raise ConfigError(f"board {self.name}: needs a QEMU machine or a pyOCD target")

    @property
    def directory(self) -> Path:
        return FIRMWARE_DIR / "boards" / self.name

    @property
    def linker_script(self) -> Path:
        return self.directory / "memory.ld"

    def memory(self) -> dict[str, MemoryRegion]:
        return parse_memory_regions(self.linker_script)


_BOARDS: dict[str, Board] = {}


def register_board(board: Board) -> Board:
    if board.name in _BOARDS:
        raise ConfigError(f"board {board.name!r} registered twice")
    _BOARDS[board.name] = board
    return board


def get_board(name: str) -> Board:
    try:
        return _BOARDS[name]
    except KeyError:
        raise ConfigError(f"unknown board {name!r}; known: {', '.join(sorted(_BOARDS))}") from None


def list_boards() -> list[Board]:
    return [_BOARDS[k] for k in sorted(_BOARDS)]


def check_kernels(kernels: str) -> str:
    if kernels not in KERNELS:
        raise ConfigError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    return kernels


_SIZE_RE = re.compile(r"^(0x[0-9a-fA-F]+|\d+)\s*([KM]?)$")
_REGION_RE = re.compile(r"^\s*(\w+)\s*\([^)]*\)\s*:\s*ORIGIN\s*=\s*([^,]+),\s*LENGTH\s*=\s*(\S+)\s*$")


def _ld_number(text: str, path: Path) -> int:
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise PolykwsError(f"{path}: cannot read linker-script number {text!r}")
    value = int(m.group(1), 0)
    return value * {"": 1, "K": 1024, "M": 1024 * 1024}[m.group(2)]


def parse_memory_regions(path: Path) -> dict[str, MemoryRegion]:
    """The MEMORY { NAME (attrs) : ORIGIN = x, LENGTH = y } block of a GNU ld script."""
    text = Path(path).read_text()
    block = re.search(r"MEMORY\s*\{(.*?)\}", text, re.S)
    if not block:
        raise PolykwsError(f"{path}: no MEMORY block")
    regions = {}
    for line in block.group(1).splitlines():
        line = line.split("/*")[0]
        if not line.strip():
            continue
        m = _REGION_RE.match(line)
        if not m:
            raise PolykwsError(f"{path}: cannot parse memory region line {line.strip()!r}")
        name = m.group(1)
        regions[name] = MemoryRegion(name, _ld_number(m.group(2), path), _ld_number(m.group(3), path))
    for required in ("FLASH", "RAM"):
        if required not in regions:
            raise PolykwsError(f"{path}: MEMORY block lacks the {required} region")
    return regions


register_board(Board("mps2-an386", "Arm MPS2+ AN386 under QEMU", "Cortex-M4F", qemu_machine="mps2-an386"))
register_board(Board("mps3-an547", "Arm MPS3 AN547 under QEMU", "Cortex-M55", qemu_machine="mps3-an547"))
register_board(
    Board("nrf52840dk", "Nordic nRF52840-DK (PCA10056)", "Cortex-M4F", pyocd_target="nrf52840", count_unit="cycles")
)
