"""The runtime as a package a product firmware links, and the example firmware that links it.

`build_sdk` writes a CMake package for one pack and one board's CPU: `include/polykws.h` (the
C API), the pack's generated headers, `lib/libpolykws.a` (runtime, C library, TFLM, CMSIS-NN,
microfrontend and the flash image) and `lib/cmake/polykws/polykwsConfig.cmake`. The Makefile owns
every compile line (`make -C firmware sdk`), so the package and the project's own apps are built
from the same objects with the same flags.

`build_example` then builds `firmware/examples/listen` with CMake against that package, exactly as
a user's firmware would; `run_example` runs it under QEMU on a PCM stream.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from polykws.firmware.boards import FIRMWARE_DIR
from polykws.firmware.build import (
    NrfxSources,
    ThirdParty,
    default_build_root,
    require_tool,
    run_make,
)
from polykws.firmware.frontendcheck import FrontendSources
from polykws.firmware.qemu import run_elf

from polykws.core import PolykwsError

EXAMPLE_DIR = FIRMWARE_DIR / "examples" / "listen"
TOOLCHAIN_FILE = FIRMWARE_DIR / "cmake" / "arm-none-eabi.cmake"


def build_sdk(gen_dir: Path, out_dir: Path, board: str, kernels: str, third_party: ThirdParty, sources: FrontendSources,
              build_root: Path | None = None, jobs: int = 2) -> Path:
    """The CMake package in `out_dir` for the sources generated in `gen_dir`
    (polykws.firmware.streamcheck.generate_stream_sources)."""
    gen_dir = Path(gen_dir).resolve()
    if not (gen_dir / "pkw_stream_config.h").is_file():
        raise PolykwsError(f"{gen_dir}: no pkw_stream_config.h; generate the runtime's sources first")
    out_dir = Path(out_dir).resolve()
    root = (Path(build_root) if build_root else default_build_root()).resolve()
    app_dir = gen_dir / f"sdk-{board}-{kernels}"
    run_make("sdk", board, kernels, root, [f"GEN_DIR={gen_dir}", f"APP_DIR={app_dir}", f"SDK_DIR={out_dir}"]
             + third_party.make_vars() + sources.make_vars(), jobs=jobs)
    config = out_dir / "lib" / "cmake" / "polykws" / "polykwsConfig.cmake"
    if not config.is_file():
        raise PolykwsError(f"make sdk wrote no {config}")
    return out_dir


def build_example(sdk_dir: Path, build_dir: Path, pcm: str | Path = "file", jobs: int = 2,
                  mic: NrfxSources | None = None) -> Path:
    """firmware/examples/listen built with CMake against the package in `sdk_dir`.

    `pcm`: "file" (stream.pcm over semihosting, the QEMU boards), "pdm" (the nRF52840-DK's PDM
    microphone; `mic` names the nrfx and CMSIS-Core checkouts) or a raw int16 clip to embed."""
    if (pcm == "pdm") != (mic is not None):
        raise PolykwsError("build_example: pcm='pdm' and the mic's sources go together")
    require_tool("cmake")
    require_tool("arm-none-eabi-gcc")
    build_dir = Path(build_dir).resolve()
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = ["cmake", "-S", str(EXAMPLE_DIR), "-B", str(build_dir), *generator,
                 f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN_FILE}", f"-DCMAKE_PREFIX_PATH={Path(sdk_dir).resolve()}",
                 f"-DLISTEN_PCM={pcm if pcm in ('file', 'pdm') else Path(pcm).resolve()}", "-DCMAKE_BUILD_TYPE=Release",
                 *(mic.cmake_defines() if mic else [])]
    for cmd in (configure, ["cmake", "--build", str(build_dir), "-j", str(jobs)]):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PolykwsError(f"example build failed: {' '.join(cmd[:2])} (exit {proc.returncode})\n"
                               f"{(proc.stdout + proc.stderr)[-4000:]}")
    elf = build_dir / "listen.elf"
    if not elf.is_file():
        raise PolykwsError(f"the example build wrote no {elf}")
    return elf


@dataclass(frozen=True)
class ExampleRun:
    detections: list[tuple[int, int]]  # (class, model frame)
    samples: int
    inferences: int
    arena_used_bytes: int
    state_bytes: int


def run_example(elf: Path, pcm: np.ndarray, board: str, timeout_s: float = 1800.0) -> ExampleRun:
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise PolykwsError(f"the stream must be 1-D int16 PCM, got {pcm.dtype} {pcm.shape}")
    with tempfile.TemporaryDirectory(prefix="pkw-listen-") as tmp:
        (Path(tmp) / "stream.pcm").write_bytes(pcm.astype("<i2").tobytes())
        run = run_elf(elf, board, cwd=Path(tmp), timeout_s=timeout_s)
    end = re.search(r"^LISTEN_END status=(\w+)(.*)$", run.stdout, re.MULTILINE)
    if end is None or end.group(1) != "ok":
        raise PolykwsError(f"{elf.name} on {board} did not end cleanly:\n{run.stdout[-1500:]}")
    facts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", end.group(2))}
    if facts.get("dropped", 0):
        raise PolykwsError(f"{elf.name} on {board}: {facts['dropped']} detections dropped")
    dets = [(int(c), int(f)) for c, f in re.findall(r"^DET label=(\d+) frame=(\d+)", run.stdout, re.MULTILINE)]
    return ExampleRun(dets, facts["samples"], facts["inferences"], facts["arena_used"], facts["state"])


def sdk_from_pack(pack_dir: Path, out_dir: Path, board: str, kernels: str, lang: str | None, detector,
                  third_party: ThirdParty, sources: FrontendSources, build_root: Path | None = None,
                  step_graphs: bool = False) -> Path:
    """The package for a pack (`polykws pack`'s folder): its flash image, `lang` (default: the first
    blob language) as the language the examples listen in, and `detector`
    (polykws.export.streaming.DetectorConfig) as the detection plan. `step_graphs`: the runtime
    runs the base's linked step and head graphs (a base without time padding, docs/STREAMING.md)."""
    import json

    from polykws.datasets.frontend import FrontendConfig
    from polykws.firmware.streamcheck import generate_stream_sources

    pack_dir = Path(pack_dir)
    manifest_path = pack_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        image = (pack_dir / manifest["flash_image"]["file"]).read_bytes()
        frontend = FrontendConfig.from_dict(manifest["frontend"])
        base = manifest["base"]
    except (OSError, ValueError, KeyError) as exc:
        raise PolykwsError(f"{manifest_path}: not a readable pack manifest ({exc})") from exc
    if frontend.kind != "micro":
        raise PolykwsError(f"{pack_dir}: the runtime computes the micro frontend on the device; this pack's is {frontend.kind!r}")
    blob_langs = list(manifest.get("languages", {}))
    lang = lang or (blob_langs[0] if blob_langs else None)
    if lang not in blob_langs:
        raise PolykwsError(f"{pack_dir}: the default language must be one of the pack's blob languages {blob_langs}, "
                           f"got {lang!r} (the base carries no detection thresholds)")
    gen_dir = Path(out_dir).resolve().parent / f".{Path(out_dir).name}-gen"
    # 256 never fires: the language's own thresholds (in its blob) are the ones it listens with.
    generate_stream_sources(gen_dir, image, base_lang=base["lang"], base_labels=base["labels"], lang=lang, thresholds=256,
                            frontend=frontend, detector=detector, board=board, sources=sources, build_root=build_root,
                            step_graphs=step_graphs)
    return build_sdk(gen_dir, out_dir, board, kernels, third_party, sources, build_root)
