"""Build wrappers around firmware/Makefile: the blob runner (host and Cortex-M) and the TFLM app.

Third-party sources are never part of the repo: the TFLM application takes them from
TFLM_DIR, CMSIS_NN_DIR, FLATBUFFERS_DIR and GEMMLOWP_DIR (see firmware/README.md for the pinned
commits and how to check them out).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from polykws.firmware.boards import FIRMWARE_DIR, check_kernels, get_board
from polykws.core import PolykwsError, repo_root

APT_HINT = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib",
    "arm-none-eabi-size": "gcc-arm-none-eabi (binutils-arm-none-eabi)",
    "qemu-system-arm": "qemu-system-arm",
    "make": "make",
    "gcc": "gcc",
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PolykwsError(f"{name} not found on PATH; install it (Debian: apt-get install {APT_HINT.get(name, name)})")
    return path


def default_build_root() -> Path:
    """firmware/build/ in the checkout (gitignored); POLYKWS_FIRMWARE_BUILD overrides it."""
    env = os.environ.get("POLYKWS_FIRMWARE_BUILD")
    return Path(env) if env else repo_root() / "firmware" / "build"


# Where TFLM's own Makefile downloads its dependencies (`make -f tensorflow/lite/micro/tools/make/Makefile
# third_party_downloads`); used when CMSIS_NN_DIR / FLATBUFFERS_DIR / GEMMLOWP_DIR are unset.
TFLM_DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
DOWNLOAD_NAMES = {"CMSIS_NN_DIR": "cmsis_nn", "FLATBUFFERS_DIR": "flatbuffers", "GEMMLOWP_DIR": "gemmlowp"}


@dataclass(frozen=True)
class ThirdParty:
    """Checkouts the TFLM application compiles from (never committed to this repo)."""

    tflm_dir: Path
    cmsis_nn_dir: Path | None
    flatbuffers_dir: Path
    gemmlowp_dir: Path

    @classmethod
    def from_env(cls, kernels: str, env: dict[str, str] | None = None) -> "ThirdParty":
        env = dict(os.environ if env is None else env)
        missing = []
        if env.get("TFLM_DIR"):
            for var, name in DOWNLOAD_NAMES.items():
                fallback = Path(env["TFLM_DIR"]).expanduser() / TFLM_DOWNLOADS / name
                if not env.get(var) and fallback.is_dir():
                    env[var] = str(fallback)

        def path_of(var: str, probe: str, needed: bool = True) -> Path | None:
            if not needed:
                return None
            value = env.get(var)
            if not value:
                missing.append(f"{var} (unset)")
                return None
            p = Path(value).expanduser().resolve()
            if not (p / probe).exists():
                missing.append(f"{var}={p} (no {probe} there)")
            return p

        tflm = path_of("TFLM_DIR", "tensorflow/lite/micro/micro_interpreter.h")
        cmsis = path_of("CMSIS_NN_DIR", "Include/arm_nnfunctions.h", needed=kernels == "cmsis-nn")
        fb = path_of("FLATBUFFERS_DIR", "include/flatbuffers/flatbuffers.h")
        gl = path_of("GEMMLOWP_DIR", "fixedpoint/fixedpoint.h")
        if missing:
            raise PolykwsError(
                "the TFLM build needs third-party checkouts outside the repo: "
                + "; ".join(missing)
                + " (firmware/README.md lists the pinned commits and how to get them)"
            )
        return cls(tflm, cmsis, fb, gl)  # type: ignore[arg-type]

    def make_vars(self) -> list[str]:
        out = [f"TFLM_DIR={self.tflm_dir}", f"FLATBUFFERS_DIR={self.flatbuffers_dir}", f"GEMMLOWP_DIR={self.gemmlowp_dir}"]
        if self.cmsis_nn_dir is not None:
            out.append(f"CMSIS_NN_DIR={self.cmsis_nn_dir}")
        return out


@dataclass(frozen=True)
class NrfxSources:
    """What the nRF52840-DK's PDM microphone driver compiles against (never committed to this
    repo): an nrfx checkout and CMSIS-Core, at the pins in firmware/README.md."""

    nrfx_dir: Path
    cmsis_core_dir: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "NrfxSources":
        env = dict(os.environ if env is None else env)
        found, missing = {}, []
        for var, probe in (("NRFX_DIR", "drivers/src/nrfx_pdm.c"), ("CMSIS_CORE_DIR", "Include/core_cm4.h")):
            value = env.get(var)
            if not value:
                missing.append(f"{var} (unset)")
                continue
            found[var] = Path(value).expanduser().resolve()
            if not (found[var] / probe).is_file():
                missing.append(f"{var}={found[var]} (no {probe} there)")
        if missing:
            raise PolykwsError("the PDM microphone driver needs checkouts outside the repo: " + "; ".join(missing)
                               + " (firmware/README.md lists the pinned commits and how to get them)")
        return cls(found["NRFX_DIR"], found["CMSIS_CORE_DIR"])

    def cmake_defines(self) -> list[str]:
        return [f"-DNRFX_DIR={self.nrfx_dir}", f"-DCMSIS_CORE_DIR={self.cmsis_core_dir}"]


def run_make(
    target: str,
    board: str,
    kernels: str = "cmsis-nn",
    build_root: Path | None = None,
    extra_vars: list[str] | None = None,
    jobs: int = 2,
    nice: bool = True,
    capture: bool = True,
) -> subprocess.CompletedProcess:
    """Run one target of firmware/Makefile; PolykwsError with the compiler's tail on failure."""
    require_tool("make")
    get_board(board)
    check_kernels(kernels)
    root = Path(build_root) if build_root else default_build_root()
    cmd = ["make", "-C", str(FIRMWARE_DIR), f"-j{jobs}", target, f"BOARD={board}", f"KERNELS={kernels}", f"BUILD_ROOT={root}"]
    cmd += extra_vars or []
    if nice and shutil.which("nice"):
        # The build machine is shared; TFLM takes minutes of CPU.
        cmd = ["nice", "-n", "10"] + cmd
    proc = subprocess.run(cmd, capture_output=capture, text=True)
    if proc.returncode != 0:
        tail = ((proc.stdout or "") + (proc.stderr or ""))[-4000:] if capture else ""
        raise PolykwsError(f"firmware build failed: make {target} BOARD={board} KERNELS={kernels} (exit {proc.returncode})\n{tail}")
    return proc


def _host_runner(target: str, exe: str, build_root: Path | None, sanitize: bool) -> Path:
    require_tool(os.environ.get("HOST_CC", "gcc"))
    root = Path(build_root) if build_root else default_build_root()
    extra = [] if sanitize else ["HOST_SANITIZE="]
    run_make(target, "mps2-an386", build_root=root, extra_vars=extra, nice=False)
    return root / "host" / exe


def _board_runner(target: str, elf: str, board: str, build_root: Path | None) -> Path:
    require_tool("arm-none-eabi-gcc")
    root = Path(build_root) if build_root else default_build_root()
    run_make(target, board, build_root=root, nice=False)
    return root / board / elf


def build_host_blob_runner(build_root: Path | None = None, sanitize: bool = True) -> Path:
    """blob.c + the vector runner for the host (gcc), with ASan/UBSan when the compiler has them."""
    return _host_runner("host-blob-test", "blob_runner", build_root, sanitize)


def build_host_detector_runner(build_root: Path | None = None, sanitize: bool = True) -> Path:
    """detector.c + its test runner for the host (gcc), with ASan/UBSan when the compiler has them."""
    return _host_runner("host-detector-test", "detector_runner", build_root, sanitize)


def build_detector_runner(board: str, build_root: Path | None = None) -> Path:
    """detector.c + its test runner for a Cortex-M board (semihosting I/O)."""
    return _board_runner("detector-test", "detector_runner.elf", board, build_root)


def host_sanitizers_available() -> bool:
    """Whether gcc here can link -fsanitize=address,undefined (not every CI image ships libasan)."""
    cc = shutil.which(os.environ.get("HOST_CC", "gcc"))
    if cc is None:
        return False
    proc = subprocess.run(
        [cc, "-x", "c", "-", "-fsanitize=address,undefined", "-o", os.devnull],
        input="int main(void){return 0;}\n",
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0


def build_blob_runner(board: str, build_root: Path | None = None) -> Path:
    """blob.c + the vector runner for a Cortex-M board (semihosting I/O)."""
    return _board_runner("blob-test", "blob_runner.elf", board, build_root)


def build_app(
    board: str,
    kernels: str,
    gen_dir: Path,
    third_party: ThirdParty,
    build_root: Path | None = None,
    jobs: int = 2,
    profile: bool = False,
    main: str = "main",
    extra_vars: list[str] | None = None,
) -> Path:
    """The TFLM application for `board` with `kernels`, embedding the generated sources in gen_dir.

    `profile`: a separate ELF that also prints per-op SysTick counts of each language's first inference.
    `main`: "main" (benchmark vectors), "stream_main" (PCM in, detections out; needs the
    frontend's sources in `extra_vars`, see polykws.firmware.streamcheck) or "step_main" (the
    int8 step graph's cost and exactness, polykws.firmware.stepbench).
    """
    require_tool("arm-none-eabi-gcc")
    root = Path(build_root) if build_root else default_build_root()
    gen_dir = Path(gen_dir).resolve()
    header = "pkw_step_data.h" if main == "step_main" else "pkw_model.h"
    if not (gen_dir / header).is_file():
        raise PolykwsError(f"{gen_dir}: no {header}; generate the model sources first (polykws firmware build --pack ..., "
                           f"or polykws.firmware.stepbench for step_main)")
    suffix = ("-profile" if profile else "") + ("" if main == "main" else f"-{main}")
    app_dir = gen_dir / f"app-{board}-{kernels}{suffix}"
    extra = [f"GEN_DIR={gen_dir}", f"APP_DIR={app_dir}", f"PROFILE={int(profile)}", f"APP_MAIN={main}"]
    run_make("app", board, kernels, root, extra + third_party.make_vars() + list(extra_vars or []), jobs=jobs)
    return app_dir / "pkw_app.elf"


@dataclass(frozen=True)
class ElfSize:
    """Section totals from `arm-none-eabi-size -A`: what goes to flash and what occupies RAM."""

    text: int  # code + read-only data + the model image, in flash
    data: int  # initialised data: stored in flash, copied to RAM
    bss: int  # zeroed RAM, including the tensor arena and the patched-model buffer
    heap_stack: int  # RAM reserved for heap and stack
    models: int  # the .pkw_models section (base + blobs), part of `text`
    bench: int  # the .pkw_bench test vectors: flashed with the benchmark build, not part of `text`

    @property
    def flash_bytes(self) -> int:
        """What the product needs in flash: code, read-only data, model image, .data's load image."""
        return self.text + self.data

    @property
    def ram_bytes(self) -> int:
        return self.data + self.bss + self.heap_stack


def elf_size(elf: Path) -> ElfSize:
    require_tool("arm-none-eabi-size")
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sections = {}
    for line in out.splitlines():
        m = re.match(r"^(\.\S+)\s+(\d+)\s+(\d+)", line)
        if m:
            sections[m.group(1)] = int(m.group(2))
    flash_ro = (".text", ".ARM.extab", ".ARM.exidx", ".preinit_array", ".init_array", ".fini_array", ".pkw_models")
    return ElfSize(
        text=sum(sections.get(s, 0) for s in flash_ro),
        data=sections.get(".data", 0),
        bss=sections.get(".bss", 0),
        heap_stack=sections.get(".heap", 0) + sections.get(".stack", 0),
        models=sections.get(".pkw_models", 0),
        bench=sections.get(".pkw_bench", 0),
    )


def elf_symbol(elf: Path, name: str) -> tuple[int, int] | None:
    """(address, size) of a symbol, via arm-none-eabi-nm; None when absent."""
    require_tool("arm-none-eabi-gcc")
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == name:
            return int(parts[0], 16), int(parts[1], 16)
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16), 0
    return None


def elf_word(elf: Path, address: int) -> int:
    """The little-endian 32-bit word the image holds at `address` (a loaded section's contents),
    read with pyelftools as `polykws.firmware.flash.elf_segments` reads the image."""
    from elftools.elf.elffile import ELFFile  # pyelftools comes with pyOCD

    with open(elf, "rb") as f:
        for sec in ELFFile(f).iter_sections():
            start = sec["sh_addr"]
            if sec["sh_type"] == "SHT_PROGBITS" and sec["sh_flags"] & 0x2 and start <= address and address + 4 <= start + sec["sh_size"]:
                return int.from_bytes(sec.data()[address - start : address - start + 4], "little")
    raise PolykwsError(f"{elf}: no loaded word at {address:#x}")
