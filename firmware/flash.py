"""Flash a real board with pyOCD, after checking that the ELF fits the target's memory map.

Two independent maps are checked before anything is written: the board's linker script
(firmware/boards/<board>/memory.ld) and pyOCD's own description of the chip. Every loadable
segment must lie inside a flash region (what gets programmed) and every RAM segment (data, bss,
arena, heap, stack) inside a RAM region, so a model pack that outgrew the part is refused with
numbers instead of bricking a board or corrupting memory at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polykws.firmware.boards import MemoryRegion, get_board
from polykws.core import PolykwsError


@dataclass(frozen=True)
class Segment:
    kind: str  # "flash" (bytes to program) or "ram" (occupied at run time)
    start: int
    size: int
    what: str

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class MemoryCheck:
    board: str
    segments: tuple[Segment, ...]
    flash_used: int
    ram_used: int
    flash_total: int
    ram_total: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return (
            f"{self.board}: flash {self.flash_used} / {self.flash_total} bytes "
            f"({100 * self.flash_used / self.flash_total:.1f}%), RAM {self.ram_used} / {self.ram_total} bytes "
            f"({100 * self.ram_used / self.ram_total:.1f}%)"
        )


def elf_segments(elf: Path) -> list[Segment]:
    """Program bytes (by load address) and RAM footprint (by run address) from the ELF's sections."""
    from elftools.elf.elffile import ELFFile  # pyelftools comes with pyOCD

    segments: list[Segment] = []
    with open(elf, "rb") as f:
        e = ELFFile(f)
        if e["e_machine"] != "EM_ARM":
            raise PolykwsError(f"{elf}: not an Arm ELF ({e['e_machine']})")
        for seg in e.iter_segments():
            if seg["p_type"] != "PT_LOAD":
                continue
            if seg["p_filesz"]:
                segments.append(Segment("flash", seg["p_paddr"], seg["p_filesz"], f"LOAD @ {seg['p_paddr']:#x}"))
        loads = [seg for seg in e.iter_segments() if seg["p_type"] == "PT_LOAD"]
        for sec in e.iter_sections():
            if not sec["sh_flags"] & 0x2 or sec["sh_size"] == 0:  # SHF_ALLOC
                continue
            # RAM at run time: zero-initialised (NOBITS: bss, heap, stack) or copied there at boot
            # (its segment runs somewhere other than where it is stored: .data). Everything else
            # executes or is read in place from flash, even if flagged writable (.init_array).
            addr = sec["sh_addr"]
            seg = next((g for g in loads if g["p_vaddr"] <= addr < g["p_vaddr"] + max(g["p_memsz"], 1)), None)
            copied = seg is not None and seg["p_vaddr"] != seg["p_paddr"]
            if sec["sh_type"] == "SHT_NOBITS" or copied:
                segments.append(Segment("ram", addr, sec["sh_size"], sec.name))
    return segments


def _pyocd_regions(target: str) -> tuple[list[MemoryRegion], list[MemoryRegion]]:
    try:
        from pyocd.target import TARGET
    except ImportError:
        raise PolykwsError("pyOCD is not installed (pip install 'polykws[firmware]')") from None
    if target not in TARGET:
        raise PolykwsError(f"pyOCD has no built-in target {target!r}")
    flash, ram = [], []
    for r in TARGET[target].MEMORY_MAP:
        region = MemoryRegion(r.name, r.start, r.length)
        if r.is_flash:
            flash.append(region)
        elif r.is_ram:
            ram.append(region)
    return flash, ram


def check_memory(elf: Path, board: str) -> MemoryCheck:
    """Does every byte of `elf` land in flash and every RAM section in RAM, per linker script and pyOCD?"""
    b = get_board(board)
    ld = b.memory()
    ld_flash = [r for name, r in ld.items() if name not in ("RAM",)]
    ld_ram = [ld["RAM"]]
    maps = {"linker script": (ld_flash, ld_ram)}
    if b.pyocd_target:
        maps[f"pyOCD target {b.pyocd_target}"] = _pyocd_regions(b.pyocd_target)
    segments = elf_segments(Path(elf))
    problems = []
    for map_name, (flash, ram) in maps.items():
        for s in segments:
            regions = flash if s.kind == "flash" else ram
            if not any(r.contains(s.start, s.size) for r in regions):
                where = ", ".join(f"{r.name} [{r.origin:#x}, {r.end:#x})" for r in regions)
                problems.append(f"{s.what} [{s.start:#x}, {s.end:#x}) ({s.size} bytes) is outside the {s.kind} of the {map_name}: {where}")
    flash_used = sum(s.size for s in segments if s.kind == "flash")
    ram_used = sum(s.size for s in segments if s.kind == "ram")
    flash_total = sum(r.length for r in ld_flash if r.name == "FLASH") or sum(r.length for r in ld_flash)
    return MemoryCheck(board, tuple(segments), flash_used, ram_used, flash_total, ld["RAM"].length, tuple(problems))


def flash_elf(elf: Path, board: str, probe: str | None = None, dry_run: bool = False) -> MemoryCheck:
    """Check the memory map, then program `elf` with pyOCD and reset the target."""
    b = get_board(board)
    if b.pyocd_target is None:
        raise PolykwsError(f"board {board} is a QEMU machine; run it with `polykws firmware run --board {board}`")
    check = check_memory(elf, board)
    if not check.ok:
        raise PolykwsError(f"{elf}: does not fit {board}; nothing was written:\n  " + "\n  ".join(check.problems))
    if dry_run:
        return check
    from pyocd.core.helpers import ConnectHelper
    from pyocd.flash.file_programmer import FileProgrammer

    session = ConnectHelper.session_with_chosen_probe(
        unique_id=probe, target_override=b.pyocd_target, blocking=False, return_first=probe is None
    )
    if session is None:
        raise PolykwsError("no debug probe found (connect the board's USB debug port, or pass --probe <unique id>)")
    with session:
        FileProgrammer(session).program(str(elf), file_format="elf")
        session.target.reset()
    return check
