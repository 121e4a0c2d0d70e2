"""The int8 step graph on the device: instructions per second of audio, against the windowed graph.

For a windowed int8 export of the no-time-padding base (`ds_cnn_s_fb40_valid`), builds the step and
head graphs (polykws.export.stepgraph) for each schedule, runs them under QEMU on a stream of int8
model frames (app/step_main.cc) beside the windowed graph on the same windows, and checks every head
output against the host's and the windowed graph's. Schedules:
  - `stride 20 ms, every row`: one row per step, both chains of stem rows, a head after each step (every window);
  - one per detector stride (`--strides`, in model frames): each chain steps once per window it
    serves, with the rows per step that takes (polykws.export.stepgraph.detector_schedule).

The model's cost per second of audio is steps/s x step + windows/s x head; the windowed graph's is
windows/s x one inference. `--profile` adds per-op instructions (a separate build, so the totals
above never include the profiler's cost). The frontend's cost is not run here (`--frontend-per-step`, from the
stream bench, adds it: 100 steps per second). QEMU -icount: instructions, not cycles. The frames are
seeded random int8 (the kernels' work does not depend on the values); exactness on real features is
in tests/export/test_export.py. Writes <out>/step_device.json and <out>/results.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

FRAME_MS = 20  # one model frame of the micro frontend (10 ms window stride x decimation 2)


def main() -> int:
    from polykws.export.stepgraph import (
        detector_schedule,
        every_row_schedule,
        streaming_graphs,
    )
    from polykws.export.tflite_graph import TfliteGraph
    from polykws.firmware.build import ThirdParty
    from polykws.firmware.stepbench import generate_step_sources, run_step_bench

    from polykws.core import atomic_write_json, atomic_write_text, run_context

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tflite", required=True, type=Path, help="windowed int8 export of the no-time-padding base")
    ap.add_argument("--frames", type=int, default=300, help="model frames in the stream (20 ms each)")
    ap.add_argument("--strides", default="5,10", help="detector strides in model frames (5 = 100 ms)")
    ap.add_argument("--board", default="mps2-an386")
    ap.add_argument("--kernels", default="cmsis-nn")
    ap.add_argument("--frontend-per-step", type=float, default=0.0, help="measured frontend instructions per 10 ms step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true",
                    help="a second build per schedule that reports the last step's and the last head's instructions per op")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/step_device"))
    args = ap.parse_args()
    window = args.tflite.read_bytes()
    features = int(TfliteGraph(window).input_tensor().shape[2])
    frames = np.random.default_rng(args.seed).integers(-128, 128, size=(args.frames, features), dtype=np.int8)
    third = ThirdParty.from_env(args.kernels)
    rows = []
    plans = [("stride 20 ms, every row", None)] + [(f"stride {s * FRAME_MS} ms", s) for s in (int(x) for x in args.strides.split(","))]
    for name, stride in plans:
        graphs = streaming_graphs(window, stride_frames=stride)
        rows_per_step = graphs.rows_per_step
        schedule = every_row_schedule(graphs, args.frames) if stride is None else detector_schedule(graphs, args.frames, stride)
        gen = generate_step_sources(args.out / "gen" / re.sub(r"\W+", "_", name), window, graphs, frames, schedule)
        r = run_step_bench(gen, args.board, args.kernels, third)
        profile = run_step_bench(gen, args.board, args.kernels, third, profile=True) if args.profile else None
        seconds = args.frames * FRAME_MS / 1000.0
        # In steady state each chain that serves windows steps once per rows_per_step rows.
        chains = len({t % graphs.stem_stride for t, head in schedule if head})
        steps_per_s = chains * 1000.0 / (FRAME_MS * graphs.stem_stride * rows_per_step)
        windows_per_s = 1000.0 / (FRAME_MS * (stride or 1))
        model_per_s = steps_per_s * r.instructions_per_step + windows_per_s * r.instructions_per_head
        row = {"schedule": name, "rows_per_step": rows_per_step, "steps": r.steps, "heads": r.heads,
               "host_mismatches": r.host_mismatches, "window_mismatches": r.window_mismatches,
               "per_step": r.instructions_per_step, "per_head": r.instructions_per_head, "per_window": r.instructions_per_window,
               "steps_per_s": steps_per_s, "windows_per_s": windows_per_s, "model_per_s": model_per_s,
               "windowed_per_s": windows_per_s * r.instructions_per_window,
               "frontend_per_s": 100.0 * args.frontend_per_step, "arena_used": r.arena_used, "stream_s": seconds}
        if profile is not None:
            row["profile"] = {"step": [list(p) for p in profile.profile], "head": [list(p) for p in profile.head_profile]}
        rows.append(row)
        print(f"{name}: {r.steps} steps, {r.heads} heads, mismatches host {r.host_mismatches} / windowed {r.window_mismatches}; "
              f"{r.instructions_per_step:,.0f} per step, {r.instructions_per_head:,.0f} per head; model {model_per_s / 1e6:.2f}M/s "
              f"against windowed {row['windowed_per_s'] / 1e6:.2f}M/s", flush=True)
    result = {"context": run_context(), "tflite": str(args.tflite), "board": args.board, "kernels": args.kernels,
              "frames": args.frames, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "step_device.json", result)
    atomic_write_text(args.out / "results.md", report(result) + "\n")
    print(report(result))
    return 0 if all(r["host_mismatches"] == 0 and r["window_mismatches"] == 0 for r in rows) else 1


def report(result: dict) -> str:
    lines = [("| schedule | rows / step | steps / s | instr / step | instr / head | model instr / s | windowed instr / s | "
             "+ frontend: streaming / windowed | exact (host, windowed) |"), "|---|---|---|---|---|---|---|---|---|"]
    profiles = []
    for r in result["rows"]:
        fe = r["frontend_per_s"]
        if "profile" in r:
            profiles.append(f"{r['schedule']}: " + "; ".join(
                f"{graph} " + ", ".join(f"{tag} {n:,.0f}" for tag, n in ops) for graph, ops in r["profile"].items()))
        lines.append(f"| {r['schedule']} | {r['rows_per_step']} | {r['steps_per_s']:.3g} | {r['per_step']:,.0f} | {r['per_head']:,.0f} | "
                     f"{r['model_per_s'] / 1e6:.2f}M | {r['windowed_per_s'] / 1e6:.2f}M | "
                     f"{(r['model_per_s'] + fe) / 1e6:.2f}M / {(r['windowed_per_s'] + fe) / 1e6:.2f}M | "
                     f"{r['heads'] - r['host_mismatches']}/{r['heads']}, {r['heads'] - r['window_mismatches']}/{r['heads']} |")
    return "\n".join(lines + ([""] + [f"- {p}" for p in profiles] if profiles else []))


if __name__ == "__main__":
    sys.exit(main())
