"""The device hears, end to end: the streaming firmware on QEMU against the host, on real speech.

    TFLM_DIR=... CMSIS_NN_DIR=... FLATBUFFERS_DIR=... GEMMLOWP_DIR=... KISSFFT_DIR=... POLYKWS_SHARED=../shared \\
      nice -n 5 .venv/bin/python bench/stream_device.py --config configs/shared-real-micro.yaml --pack <pack dir>

Per language of a micro-frontend pack: a stream of `--seconds` of the language's test speakers
(the positive stream of every test keyword clip at `--snr-db`, then negatives: unknown words,
other languages' words and noise alone; polykws.datasets.streams) as int16 PCM. The streaming
app (firmware/app/stream_main.cc: PCM over semihosting -> on-device micro frontend -> ring ->
model every stride -> detector) runs it on the board's QEMU machine; the host runs
`polykws.export.streaming.detect` over the tflite-micro runtime on the same samples. Two blobs
per language: the pack's own (the thresholds its streaming stage chose) and the same model with
every keyword threshold at 0 (the detector fires whenever a keyword is on top and the refractory
period allows, so the comparison has many events). Detections (class, model frame) must be equal,
event for event.

Also measured (QEMU -icount: instructions, not cycles): the frontend per 10 ms step, one
inference, the detector per inference, the duty cycle at 64 MHz (one instruction per cycle) for
strides 100, 240 and 500 ms (250 ms is not a multiple of the 20 ms model frame hop), and the
runtime's own memory report (polykws_memory: arena, patched-model RAM, frontend/ring/detector state).
Writes <out>/stream_device.json and <out>/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

DUTY_STRIDES_MS = (100, 240, 500)
CLOCK_HZ = 64_000_000
def add_stream_args(ap: argparse.ArgumentParser, board_help: str | None = None) -> None:
    """The arguments of the benches that run a pack on test streams (this one, bench/step_stream.py)."""
    ap.add_argument("--config", required=True)
    ap.add_argument("--pack", required=True, type=Path)
    ap.add_argument("--langs", default="")
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--snr-db", type=float, default=10.0)
    ap.add_argument("--board", default="mps2-an386", help=board_help)
    ap.add_argument("--kernels", default="cmsis-nn")
    ap.add_argument("--seed", type=int, default=0)


def stream_pcm_for(lang: str, cfg, records, noise, seconds: float, snr_db: float, seed: int) -> tuple[np.ndarray, int]:
    """(int16 PCM of `seconds`, keyword events inside it): the test positive stream, then negatives."""
    from polykws.datasets.streams import StreamConfig, iter_streams
    from polykws.export.streaming import stream_pcm

    task = cfg.data.tasks[lang].spec(lang)
    sr = 16000
    want = int(seconds * sr)
    parts, keywords, have = [], 0, 0
    for s in iter_streams(records, task, noise, "test", StreamConfig(snrs_db=(snr_db,), negative_s_per_snr=seconds, seed=seed)):
        take = min(want - have, s.audio.shape[0])
        parts.append(stream_pcm(s.audio[:take]))
        keywords += sum(1 for e in s.keyword_events if e.end_sample <= take)
        have += take
        if have >= want:
            break
    return np.concatenate(parts), keywords


def main() -> int:
    from streaming import load_data_config  # bench/streaming.py

    from polykws.core import atomic_write_json, atomic_write_text, run_context
    from polykws.datasets.frontend import FrontendConfig
    from polykws.export.blob import apply_blob, decode_blob, encode_blob, encode_flash_image
    from polykws.export.streaming import NEVER_FIRE
    from polykws.firmware.build import ThirdParty
    from polykws.firmware.frontendcheck import FrontendSources
    from polykws.firmware.streamcheck import build_stream_app, host_detections, run_stream
    from polykws.pipeline.streameval import config_noise, config_records

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_stream_args(ap)
    ap.add_argument("--stride-ms", type=int, default=0, help="detector stride in place of the config's (0: the config's)")
    ap.add_argument("--average-window-ms", type=int, default=0,
                    help="posterior average in place of the config's (0: the config's); a multiple of the stride")
    ap.add_argument("--step-graphs", action="store_true",
                    help="run the base's linked step and head graphs (a base without time padding) instead of the windowed graph")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/stream_device"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = load_data_config(args.config)
    man = json.loads((args.pack / "manifest.json").read_text())
    base = (args.pack / man["base"]["file"]).read_bytes()
    fe = FrontendConfig.from_dict(man["frontend"])
    if fe.kind != "micro":
        raise SystemExit(f"{args.pack}: the firmware computes the micro frontend; this pack's is {fe.kind}")
    det = cfg.streaming.detector
    if args.stride_ms or args.average_window_ms:
        det = replace(det, stride_ms=args.stride_ms or det.stride_ms, average_window_ms=args.average_window_ms or det.average_window_ms)
    third, sources = ThirdParty.from_env(args.kernels), FrontendSources.from_env()
    records = config_records(cfg)
    noise = config_noise(cfg, records)
    langs = [x for x in args.langs.split(",") if x] or list(man["languages"])
    result = {"context": run_context(), "board": args.board, "kernels": args.kernels, "detector": det.to_dict(), "seconds": args.seconds,
              "snr_db": args.snr_db, "pack": str(args.pack), "step_graphs": args.step_graphs, "languages": {}}
    for lang in langs:
        t0 = time.time()
        entry = man["languages"][lang]
        blob = (args.pack / entry["file"]).read_bytes()
        parsed = decode_blob(blob)
        labels = list(parsed.labels)
        pcm, keywords = stream_pcm_for(lang, cfg, records, noise, args.seconds, args.snr_db, args.seed)
        model = apply_blob(base, blob)
        variants = {"shipped": blob,
                    "zero": encode_blob(base, model, lang, labels, entry["blob_meta"],
                                        thresholds=bytes(255 if lb in NEVER_FIRE else 0 for lb in labels))}
        row = {"stream_s": len(pcm) / 16000, "keywords": keywords, "variants": {}}
        for name, b in variants.items():
            image = encode_flash_image(base, [b])
            thresholds = {lb: t for lb, t in zip(labels, decode_blob(b).thresholds) if lb not in NEVER_FIRE}
            host = host_detections(image, lang, pcm, fe, det, thresholds)
            elf = build_stream_app(args.out / "gen" / f"{lang}_{name}", image, base_lang=man["base"]["lang"],
                                   base_labels=man["base"]["labels"], lang=lang, thresholds=256, frontend=fe, detector=det,
                                   board=args.board, kernels=args.kernels, third_party=third, sources=sources,
                                   build_root=None, step_graphs=args.step_graphs)  # the default root keeps the compiled TFLM library between runs
            run = run_stream(elf, pcm, args.board)
            row["variants"][name] = {"thresholds": sorted(set(thresholds.values())), "threshold_source": run.threshold_source,
                                     "host_detections": len(host), "device_detections": len(run.detections),
                                     "identical": run.detections == host, "model_frames": run.model_frames, "inferences": run.inferences,
                                     "cost": run.instructions}
            row["memory"] = run.memory
            print(f"{lang} {name}: {len(host)} host / {len(run.detections)} device detections, identical {run.detections == host}, "
                  f"{run.instructions['frontend_per_step']:.0f} per step, {run.instructions['invoke_per_inference']:.0f} per inference", flush=True)
        row["wall_s"] = time.time() - t0
        result["languages"][lang] = row
        atomic_write_json(args.out / "stream_device.json", result)
    atomic_write_text(args.out / "results.md", report(result) + "\n")
    print(report(result))
    return 0 if all(v["identical"] for r in result["languages"].values() for v in r["variants"].values()) else 1


def report(result: dict) -> str:
    lines = ["| lang | stream s | keywords | shipped thr: host / device detections | thr 0: host / device detections | identical | "
             "frontend instr / 10 ms | instr / inference | detector instr / inference |", "|---|---|---|---|---|---|---|---|---|"]
    costs = []
    for lang, r in result["languages"].items():
        v = r["variants"]
        c = v["zero"]["cost"]
        costs.append(c)
        lines.append(f"| {lang} | {r['stream_s']:.0f} | {r['keywords']} | {v['shipped']['host_detections']} / {v['shipped']['device_detections']} | "
                     f"{v['zero']['host_detections']} / {v['zero']['device_detections']} | "
                     f"{'yes' if all(x['identical'] for x in v.values()) else 'NO'} | {c['frontend_per_step']:,.0f} | "
                     f"{c['invoke_per_inference']:,.0f} | {c['detector_per_inference']:,.0f} |")
    fe = float(np.median([c["frontend_per_step"] for c in costs]))
    inv = float(np.median([c["invoke_per_inference"] for c in costs]))
    dt = float(np.median([c["detector_per_inference"] for c in costs]))
    lines += ["", f"Duty cycle at {CLOCK_HZ / 1e6:.0f} MHz (one instruction per cycle; medians over languages): "
              "frontend every 10 ms + model and detector every stride.", "",
              "| stride ms | instructions / s | duty cycle |", "|---|---|---|"]
    # With step graphs an inference's count holds the steps that serve it, which depend on the
    # stride: only the stride the app ran at is measured.
    for stride in [result["detector"]["stride_ms"]] if result.get("step_graphs") else DUTY_STRIDES_MS:
        per_s = 100 * fe + (1000 / stride) * (inv + dt)
        lines.append(f"| {stride} | {per_s / 1e6:.2f} M | {100 * per_s / CLOCK_HZ:.1f} % |")
    mem = next(iter(result["languages"].values()))["memory"]
    lines += ["", "The runtime's memory report (polykws_memory): " + ", ".join(f"{k} {v:,} B" for k, v in sorted(mem.items()))]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
