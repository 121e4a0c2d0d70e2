"""Build the on-device micro frontend and hold it to the host's, frame by frame, under QEMU.

The device side is firmware/lib/frontend.cc (TFLM's microfrontend library compiled from TFLM_DIR,
state from host-generated tables) driven by firmware/test/frontend_runner.c, which streams a PCM
file through it without ever resetting. The host side is what training and the host evaluator
use: pymicro-features in one continuous stream (`polykws.datasets.frontend.stream_features`) and
the exporter's quantizer. Both the raw uint16 frames and the model's int8 frames are compared.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polykws.core import PolykwsError
from polykws.datasets.frontend import FrontendConfig, stream_features
from polykws.export.quantize import quantize_activations
from polykws.firmware.bench import require_clean_end
from polykws.firmware.build import TFLM_DOWNLOADS, default_build_root, require_tool, run_make
from polykws.firmware.frontendgen import InputQuant, frontend_state, write_frontend_sources
from polykws.firmware.qemu import run_elf


@dataclass(frozen=True)
class FrontendSources:
    """The checkouts the on-device frontend compiles from (never committed to this repo)."""

    tflm_dir: Path
    kissfft_dir: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "FrontendSources":
        env = dict(os.environ if env is None else env)
        if not env.get("TFLM_DIR"):
            raise PolykwsError("TFLM_DIR is unset; the on-device frontend compiles TFLM's microfrontend library (firmware/README.md)")
        tflm = Path(env["TFLM_DIR"]).expanduser().resolve()
        kiss = Path(env.get("KISSFFT_DIR") or tflm / TFLM_DOWNLOADS / "kissfft").expanduser().resolve()
        if not (tflm / "tensorflow/lite/experimental/microfrontend/lib/frontend.c").is_file():
            raise PolykwsError(f"TFLM_DIR={tflm} has no microfrontend library (tensorflow/lite/experimental/microfrontend/lib)")
        if not (kiss / "tools/kiss_fftr.c").is_file():
            raise PolykwsError(f"KISSFFT_DIR={kiss} has no kissfft v130 (tools/kiss_fftr.c); firmware/README.md says how to get it")
        return cls(tflm, kiss)

    def make_vars(self) -> list[str]:
        return [f"TFLM_DIR={self.tflm_dir}", f"KISSFFT_DIR={self.kissfft_dir}"]


def generate_frontend_tables(gen_dir: Path, frontend: FrontendConfig, quant: InputQuant, sources: FrontendSources,
                             board: str, build_root: Path) -> None:
    """Build the host tool, populate the state with it and write pkw_frontend_tables.{h,c} to gen_dir."""
    run_make("host-frontend-dump", board, build_root=build_root, extra_vars=sources.make_vars(), nice=False)
    write_frontend_sources(gen_dir, frontend, quant, frontend_state(build_root / "host" / "frontend_state_dump", frontend))


def build_frontend_runner(frontend: FrontendConfig, quant: InputQuant, sources: FrontendSources, gen_dir: Path,
                          board: str = "mps2-an386", build_root: Path | None = None, profile: bool = False) -> Path:
    """Host tool -> tables (gen_dir) -> the runner ELF for `board`. `profile`: a separate runner
    that also reports each frontend stage's instructions (FrontendCheck.stages)."""
    root = (Path(build_root) if build_root else default_build_root()).resolve()  # make runs in firmware/
    gen_dir = Path(gen_dir).resolve()
    generate_frontend_tables(gen_dir, frontend, quant, sources, board, root)
    require_tool("arm-none-eabi-gcc")
    run_make("frontend-test", board, build_root=root, nice=False,
             extra_vars=sources.make_vars() + [f"FE_GEN_DIR={gen_dir}", f"FE_PROFILE={int(profile)}"])
    return gen_dir / f"frontend-{board}{'-profile' if profile else ''}" / "frontend_runner.elf"


@dataclass(frozen=True)
class FrontendCheck:
    samples: int
    raw_frames: int
    model_frames: int
    raw_values_differing: int
    model_values_differing: int
    instructions_per_frame: float  # mean over the stream's pushes (QEMU -icount: instructions)
    max_instructions_per_push: int
    # Profile runners only: instructions per frame of each stage of FrontendProcessSamples, in its order.
    stages: tuple[tuple[str, float], ...] = ()

    @property
    def bit_exact(self) -> bool:
        return self.raw_values_differing == 0 and self.model_values_differing == 0 and self.raw_frames > 0


def host_raw_frames(pcm: np.ndarray, frontend: FrontendConfig) -> np.ndarray:
    """pymicro-features' uint16 values for every raw frame of one continuous stream."""
    from pymicro_features import MicroFrontend

    step = frontend.stride_samples
    fe = MicroFrontend()
    data = np.asarray(pcm, "<i2").tobytes()
    frames = []
    for i in range(len(pcm) // step):
        out = fe.process_samples(data[2 * step * i : 2 * step * (i + 1)])
        if out.features:
            frames.append(out.features)
    scale = frontend.micro_params["output_scale"]
    return np.rint(np.asarray(frames, np.float64).reshape(-1, frontend.num_features) / scale).astype(np.int64)


def check_stream(elf: Path, pcm: np.ndarray, frontend: FrontendConfig, quant: InputQuant, board: str = "mps2-an386",
                 timeout_s: float = 1800.0) -> FrontendCheck:
    """Run the runner on one continuous int16 stream and compare every frame with the host's."""
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise PolykwsError(f"the frontend check takes 1-D int16 PCM, got {pcm.dtype} {pcm.shape}")
    with tempfile.TemporaryDirectory(prefix="pkw-fe-") as tmp:
        work = Path(tmp)
        (work / "fe_in.pcm").write_bytes(pcm.astype("<i2").tobytes())
        run = run_elf(elf, board, cwd=work, timeout_s=timeout_s)
        require_clean_end(run.stdout, f"{elf.name} on {board}")
        m = re.search(r"PKW_FE raw_frames=(\d+) model_frames=(\d+) push_ticks=(\d+) max_push_ticks=(\d+) units_per_tick_milli=(\d+)", run.stdout)
        if not m:
            raise PolykwsError(f"{elf.name}: no PKW_FE line in its output:\n{run.stdout[-1500:]}")
        n_raw, n_model, ticks, max_ticks, milli = (int(g) for g in m.groups())
        dev_raw = np.frombuffer((work / "fe_raw.bin").read_bytes(), "<u2").reshape(-1, frontend.num_features).astype(np.int64)
        dev_model = np.frombuffer((work / "fe_model.bin").read_bytes(), np.int8).reshape(-1, frontend.num_features)
    host_raw = host_raw_frames(pcm, frontend)
    host_model = quantize_activations(stream_features(pcm, frontend), quant.scale, quant.zero_point)
    if dev_raw.shape != host_raw.shape or dev_model.shape != host_model.shape or dev_raw.shape[0] != n_raw or dev_model.shape[0] != n_model:
        raise PolykwsError(f"frame counts differ: device {dev_raw.shape[0]} raw / {dev_model.shape[0]} model "
                           f"(reported {n_raw} / {n_model}), host {host_raw.shape[0]} / {host_model.shape[0]}")
    pushes = len(pcm) // frontend.stride_samples
    per_tick = milli / 1000.0
    return FrontendCheck(
        samples=int(len(pcm)),
        raw_frames=n_raw,
        model_frames=n_model,
        raw_values_differing=int((dev_raw != host_raw).sum()),
        model_values_differing=int((dev_model != host_model).sum()),
        instructions_per_frame=ticks * per_tick / max(1, pushes),
        max_instructions_per_push=int(max_ticks * per_tick),
        stages=tuple((name, int(ticks) * per_tick / max(1, int(calls))) for name, calls, ticks in
                     re.findall(r"^PKW_FE_STAGE name=(\w+) calls=(\d+) ticks=(\d+)", run.stdout, re.MULTILINE)),
    )
