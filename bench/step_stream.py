"""Streaming against windowed inference on real streams: the same detections, on the host and on QEMU.

For each language of a pack of the no-time-padding base (`ds_cnn_s_fb40_valid`), builds the
language's model from its blob, its step and head graphs for the detector's stride
(polykws.export.stepgraph.detector_schedule), and a test stream as bench/stream_device.py does
(test speakers, one SNR, keywords then negatives). On the host it compares, window by window, the
head's int8 outputs with the windowed graph's on the tflite-micro runtime, and the detections the
two give with the language's shipped thresholds. On QEMU (app/step_main.cc) the graphs run in the
linked form the runtime would use: the base's prefix (polykws.export.stepgraph.link_graphs) in front
of the language's patched model, so the step and head graphs read the blob's weights and scales.
Every head output is compared with the host's and with the windowed graph's on the device, so the
device's detections, computed by the same detector, are the host's.
Writes <out>/step_stream.json and <out>/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def main() -> int:
    from polykws.datasets.frontend import FrontendConfig, stream_features
    from polykws.export.blob import apply_blob, decode_blob
    from polykws.export.evaluate import input_qparams, quantize_activations, run_tflm
    from polykws.export.stepgraph import (
        detector_schedule,
        link_graphs,
        stream_outputs,
        streaming_graphs,
    )
    from polykws.export.streaming import NEVER_FIRE, decide, score_stream, smooth
    from polykws.firmware.build import ThirdParty
    from polykws.firmware.stepbench import generate_step_sources, run_step_bench
    from stream_device import add_stream_args, stream_pcm_for  # bench/stream_device.py
    from streaming import load_data_config  # bench/streaming.py

    from polykws.core import atomic_write_json, atomic_write_text, run_context
    from polykws.pipeline.streameval import config_noise, config_records

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_stream_args(ap, board_help="QEMU board; 'none' runs the host comparison only")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/step_stream"))
    args = ap.parse_args()
    cfg = load_data_config(args.config)
    man = json.loads((args.pack / "manifest.json").read_text())
    base = (args.pack / man["base"]["file"]).read_bytes()
    fe = FrontendConfig.from_dict(man["frontend"])
    det = cfg.streaming.detector
    plan = det.plan(fe)
    records = config_records(cfg)
    noise = config_noise(cfg, records)
    third = None if args.board == "none" else ThirdParty.from_env(args.kernels)
    langs = [x for x in args.langs.split(",") if x] or list(man["languages"])
    # One prefix per base: every language's blob patches the windowed bytes it reads.
    linked = link_graphs(streaming_graphs(base, stride_frames=plan.stride_frames), base)
    result = {"context": run_context(), "pack": str(args.pack), "detector": det.to_dict(), "seconds": args.seconds,
              "snr_db": args.snr_db, "board": args.board, "linked_prefix_bytes": len(linked.prefix), "languages": {}}
    for lang in langs:
        t0 = time.time()
        blob = (args.pack / man["languages"][lang]["file"]).read_bytes()
        labels = list(decode_blob(blob).labels)
        thresholds = {lb: t for lb, t in zip(labels, decode_blob(blob).thresholds) if lb not in NEVER_FIRE}
        model = apply_blob(base, blob)
        graphs = streaming_graphs(model, stride_frames=plan.stride_frames)
        pcm, keywords = stream_pcm_for(lang, cfg, records, noise, args.seconds, args.snr_db, args.seed)
        frames = quantize_activations(stream_features(pcm, fe), *input_qparams(model))
        schedule = detector_schedule(graphs, frames.shape[0], plan.stride_frames)
        streamed = stream_outputs(graphs, frames, schedule)
        # The windowed path as the product runs it: the same windows, the detector over them.
        trace = score_stream(model, labels, pcm, fe, det)
        windowed = dict(zip(trace.frames.tolist(), trace.outputs))
        ends = sorted(streamed)
        missing = sorted(set(windowed) - set(streamed))
        equal = all(np.array_equal(streamed[n][: len(labels)], windowed[n]) for n in ends)
        direct = run_tflm(model, np.stack([frames[n - plan.window_frames + 1 : n + 1] for n in ends])[..., None])
        equal_tflm = bool(np.array_equal(np.stack([streamed[n] for n in ends]), direct))
        keep = np.isin(trace.frames, ends)
        outs = np.stack([streamed[n][: len(labels)] for n in ends])
        sums, counts = smooth(outs, len(labels), plan.average_inferences)
        s_trace = replace(trace, frames=trace.frames[keep], sums=sums, counts=counts, outputs=outs, logits=None)
        w_trace = replace(trace, frames=trace.frames[keep], outputs=trace.outputs[keep], logits=None,
                          sums=smooth(trace.outputs[keep], len(labels), plan.average_inferences)[0], counts=counts)
        s_det = [(d.keyword, d.frame) for d in decide(s_trace, thresholds, plan.refractory_frames)]
        w_det = [(d.keyword, d.frame) for d in decide(w_trace, thresholds, plan.refractory_frames)]
        z_s = [(d.keyword, d.frame) for d in decide(s_trace, 0, plan.refractory_frames)]
        z_w = [(d.keyword, d.frame) for d in decide(w_trace, 0, plan.refractory_frames)]
        row = {"stream_s": len(pcm) / 16000, "keywords": keywords, "windows": len(ends), "windows_not_served": missing,
               "outputs_equal": bool(equal and equal_tflm), "detections": len(w_det), "detections_equal": s_det == w_det,
               "detections_at_0": len(z_w), "detections_at_0_equal": z_s == z_w, "rows_per_step": graphs.rows_per_step,
               "steps": len(schedule)}
        if third is not None:
            gen = generate_step_sources(args.out / "gen" / lang, model, graphs, frames, schedule, linked=linked)
            bench = run_step_bench(gen, args.board, args.kernels, third, timeout_s=3600.0)
            row["device"] = {"heads": bench.heads, "host_mismatches": bench.host_mismatches,
                             "window_mismatches": bench.window_mismatches, "per_step": bench.instructions_per_step,
                             "per_head": bench.instructions_per_head, "per_window": bench.instructions_per_window}
        row["wall_s"] = time.time() - t0
        result["languages"][lang] = row
        print(f"{lang}: {len(ends)} windows, outputs equal {row['outputs_equal']}, detections {len(w_det)} equal "
              f"{row['detections_equal']}, at threshold 0 {len(z_w)} equal {row['detections_at_0_equal']}"
              + (f", device mismatches {row['device']['host_mismatches']}/{row['device']['window_mismatches']}" if third else ""),
              flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out / "step_stream.json", result)
    atomic_write_text(args.out / "results.md", report(result) + "\n")
    print(report(result))
    ok = all(r["outputs_equal"] and r["detections_equal"] and r["detections_at_0_equal"]
             and (r.get("device") is None or r["device"]["host_mismatches"] == r["device"]["window_mismatches"] == 0)
             for r in result["languages"].values())
    return 0 if ok else 1


def report(result: dict) -> str:
    lines = [("| lang | stream s | keywords | windows | int8 outputs equal | detections (shipped thr.) equal | detections (thr. 0) equal | "
             "device: head = host, = windowed |"), "|---|---|---|---|---|---|---|---|"]
    for lang, r in result["languages"].items():
        dev = r.get("device")
        d = f"{r['windows'] - dev['host_mismatches']}/{r['windows']}, {r['windows'] - dev['window_mismatches']}/{r['windows']}" if dev else "-"
        lines.append(f"| {lang} | {r['stream_s']:.0f} | {r['keywords']} | {r['windows']} | {'yes' if r['outputs_equal'] else 'NO'} | "
                     f"{r['detections']}, {'yes' if r['detections_equal'] else 'NO'} | {r['detections_at_0']}, "
                     f"{'yes' if r['detections_at_0_equal'] else 'NO'} | {d} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
