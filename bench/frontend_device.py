"""The on-device micro frontend against the host's, on real speech, under QEMU.

    TFLM_DIR=... KISSFFT_DIR=... POLYKWS_SHARED=../shared nice -n 5 .venv/bin/python bench/frontend_device.py --config configs/shared-real.yaml

Clips: --clips-per-lang seeded test-split keyword clips per language (the same pick as
bench/frontend_warm.py), loaded as the feature cache loads them (1 s), as int16. Two continuous
streams, each run once through the firmware's frontend (firmware/lib/frontend.cc on the board's
QEMU machine, never reset) and through pymicro-features + the host quantizer:
- clean: the clips back to back;
- noisy: each clip mixed with the config's test-split background noise at 10 dB SNR over its
  active speech (`polykws.datasets.augment.mix_at_snr`; the noise
  reduction and PCAN state then track a real noise floor).
Every raw uint16 frame and every int8 model frame is compared (the model input quantization is
the range the exporter pins for the micro frontend, [0, 26]). Also reported: instructions per
10 ms frame (QEMU -icount: instructions, not cycles), the duty cycle at 64 MHz, and the
frontend's RAM and flash from the object files. `--stages` adds a profile build (the firmware
Makefile's FE_PROFILE=1) run on the noisy stream: instructions per frame of each stage of TFLM's
FrontendProcessSamples (window, FFT, energy, filterbank, sqrt, noise reduction, PCAN, log), its
frames still compared with the host's. Writes <out>/frontend_device.json and results.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def object_sizes(app_dir: Path) -> dict:
    """text/bss of the frontend's objects (arm-none-eabi-size): code, tables, state."""
    def size(paths: list[Path]) -> tuple[int, int]:
        out = subprocess.run(["arm-none-eabi-size", *map(str, paths)], capture_output=True, text=True, check=True).stdout
        rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
        return sum(int(r[0]) for r in rows), sum(int(r[2]) for r in rows)

    lib_text, _ = size(sorted((app_dir / "lib").glob("*.o")))
    glue_text, state_bss = size([app_dir / "frontend.o"])
    tables_text, _ = size([app_dir / "tables.o"])
    return {"library_code_bytes": lib_text, "glue_code_bytes": glue_text, "tables_flash_bytes": tables_text, "state_ram_bytes": state_bss}


def noisy(clips: list[np.ndarray], noise: list[np.ndarray], snr_db: float, seed: int) -> list[np.ndarray]:
    """Each clip mixed with a random stretch of a random noise recording at `snr_db` (active speech)."""
    from polykws.datasets.augment import mix_at_snr, random_crop

    rng = np.random.default_rng(seed)
    return [mix_at_snr(c, random_crop(noise[int(rng.integers(len(noise)))], len(c), rng), snr_db) for c in clips]


def main() -> int:
    from frontend_warm import pick_clips  # bench/frontend_warm.py
    from streaming import load_data_config  # bench/streaming.py

    from polykws.pipeline.streameval import config_records
    from polykws.core import atomic_write_json, atomic_write_text, run_context
    from polykws.datasets.features import noise_files
    from polykws.datasets.frontend import audio_to_pcm16, micro_frontend
    from polykws.datasets.streams import split_noise_waves
    from polykws.firmware.frontendcheck import FrontendSources, build_frontend_runner, check_stream
    from polykws.firmware.frontendgen import InputQuant
    from polykws.pipeline.config import resolve_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--langs", default="uk,ar,bn,gu,lt")
    ap.add_argument("--clips-per-lang", type=int, default=50)
    ap.add_argument("--board", default="mps2-an386")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stages", action="store_true",
                    help="also run a profile build on the noisy stream: instructions per frame of each frontend stage")
    ap.add_argument("--out", default="runs/bench/frontend_device")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    cfg = load_data_config(args.config)
    fe = micro_frontend()
    quant = InputQuant.pinned(fe.value_range)
    clips = pick_clips(cfg, config_records(cfg), args)
    noise = split_noise_waves(noise_files(resolve_path(cfg.data.noise_dir)), "test", fe.sample_rate_hz)
    elf = build_frontend_runner(fe, quant, FrontendSources.from_env(), out / "gen", board=args.board, build_root=out / "build")
    result = {"context": run_context(), "board": args.board, "clips": len(clips), "langs": args.langs.split(","),
              "input_quant": {"scale": quant.scale, "zero_point": quant.zero_point}, "streams": {}}
    for name, waves in (("clean", clips), ("noisy_10db", noisy(clips, noise, 10.0, args.seed))):
        pcm = np.concatenate([audio_to_pcm16(np.clip(w, -1.0, 1.0)) for w in waves])
        check = check_stream(elf, pcm, fe, quant, board=args.board)
        result["streams"][name] = {**check.__dict__, "bit_exact": check.bit_exact, "raw_values": check.raw_frames * fe.num_features,
                                   "model_values": check.model_frames * fe.num_features}
        print(name, json.dumps(result["streams"][name]), flush=True)
    if args.stages:
        prof = build_frontend_runner(fe, quant, FrontendSources.from_env(), out / "gen", board=args.board, build_root=out / "build",
                                     profile=True)
        staged = check_stream(prof, pcm, fe, quant, board=args.board)
        if not staged.bit_exact or not staged.stages:
            raise SystemExit(f"{prof}: the profile build is not bit-exact or reported no stages")
        result["stages"] = {"stream": name, "per_frame": dict(staged.stages), "total_per_frame": staged.instructions_per_frame}
    result["sizes"] = object_sizes(elf.parent)
    ipf = float(np.mean([s["instructions_per_frame"] for s in result["streams"].values()]))
    result["duty_cycle_64mhz_pct"] = 100.0 * ipf / (64e6 * fe.window_stride_ms / 1000.0)
    result["wall_s"] = time.time() - t0
    atomic_write_json(out / "frontend_device.json", result)
    lines = ["| stream | clips | raw frames | raw values differing | model frames | int8 values differing | instructions / frame (mean) | max per push |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in result["streams"].items():
        lines.append(f"| {name} | {len(clips)} | {s['raw_frames']:,} | {s['raw_values_differing']} of {s['raw_values']:,} | {s['model_frames']:,} | "
                     f"{s['model_values_differing']} of {s['model_values']:,} | {s['instructions_per_frame']:,.0f} | {s['max_instructions_per_push']:,} |")
    sz = result["sizes"]
    lines += ["", f"Frontend on {args.board}: {ipf:,.0f} instructions per 10 ms frame = {result['duty_cycle_64mhz_pct']:.1f} % of a 64 MHz core "
              f"(if one instruction took one cycle); RAM {sz['state_ram_bytes']:,} B of state; flash {sz['tables_flash_bytes']:,} B of tables, "
              f"{sz['library_code_bytes'] + sz['glue_code_bytes']:,} B of code (before --gc-sections)."]
    if "stages" in result:
        st = result["stages"]
        lines += ["", (f"Where a frame's instructions go ({st['stream']} stream, profile build: {st['total_per_frame']:,.0f} per frame "
                       "with the wrappers' own reads):"), "", "| stage | instructions / frame | share |", "|---|---|---|"]
        lines += [f"| {k} | {v:,.0f} | {100.0 * v / st['total_per_frame']:.1f} % |" for k, v in st["per_frame"].items()]
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(s["bit_exact"] for s in result["streams"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
