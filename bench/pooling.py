"""Global pooling as AVERAGE_POOL_2D (as exported) against MEAN: bit-exact on the device, and cheaper?

    TFLM_DIR=... CMSIS_NN_DIR=... FLATBUFFERS_DIR=... GEMMLOWP_DIR=... POLYKWS_SHARED=../shared \\
      nice -n 5 .venv/bin/python bench/pooling.py --out runs/bench/pooling [--board mps3-an547]

The shipped base's float checkpoint (frontend, English head) is exported twice with the project's
exporter: as it ships (`export.convert.Deployable` pools with one average pool over the map, so
TFLite gets AVERAGE_POOL_2D) and with the pooling written as the model's `mean` (the Deployable is
swapped inside this process only), which TFLite gets as MEAN. Each int8 base is scored on the host
TFLM runtime on the `en` test split, then packed alone and run by the benchmark firmware under QEMU
on the first `--per-lang` vectors: device and host accuracy, whether every output vector is equal
(`firmware bench` compares predictions and a CRC of all int8 outputs), and instructions per
inference. The firmware runs MEAN through its own fast kernel (runtime/fast_mean.cc) on CMSIS-NN
builds; AVERAGE_POOL_2D through CMSIS-NN's. Writes <out>/pooling.json and <out>/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def mean_deployable():
    """The exporter's Deployable with the pooling as the model's own `mean` (TFLite: MEAN)."""
    import torch

    from polykws.export import convert

    class MeanDeployable(convert.Deployable):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.model(x), dim=-1)

    return MeanDeployable


def main() -> int:
    from polykws.core import atomic_write_json, atomic_write_text, run_context
    from polykws.core.assets import shipped_base
    from polykws.export import convert
    from polykws.export.api import export_base
    from polykws.export.evaluate import evaluate_tflm
    from polykws.export.pack import pack
    from polykws.export.tflite_graph import TfliteGraph
    from polykws.firmware.workflow import FirmwareConfig, bench_firmware, build_firmware
    from polykws.pipeline.stages.packing import write_vectors_npz
    from polykws.pipeline.tasks import load_language_splits
    from polykws.training.checkpoint import load_base

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench/pooling"))
    ap.add_argument("--board", default="mps2-an386")
    ap.add_argument("--per-lang", type=int, default=200, help="test vectors run on the device")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sb = shipped_base()
    base = load_base()
    splits = load_language_splits("en", base.frontend, config=sb.manifest["config"], seed=0)
    test, cal = splits["test"], splits["train"].x[:500]
    vectors = write_vectors_npz(args.out / "vectors.npz", {"en_x": test.x, "en_y": test.y})
    result = {"context": run_context(), "board": args.board, "variants": {}}
    original = convert.Deployable
    for name, deployable in (("AVERAGE_POOL_2D (as exported)", original), ("MEAN", mean_deployable())):
        convert.Deployable = deployable
        try:
            ex = export_base(base.model, base.frontend, base.labels, cal, args.out / f"export_{deployable.__name__}", lang="en",
                             parity_x=test.x[:64], head_slots=sb.head_slots, meta={"model_name": base.model_name})
        finally:
            convert.Deployable = original
        ops = TfliteGraph(ex.tflite).opcodes()
        host = evaluate_tflm(ex.tflite, test.x, test.y, num_labels=len(base.labels))
        pack_dir = args.out / f"pack_{deployable.__name__}"
        pack(ex, [], pack_dir)
        cfg = FirmwareConfig(board=args.board, kernels="cmsis-nn", per_lang=args.per_lang,
                             build_root=None)
        app = build_firmware(cfg, pack_dir, vectors)
        bench = bench_firmware(app)
        row = next(r for r in bench.rows if r.lang == "en")
        result["variants"][name] = {
            "ops": ops, "tflite_bytes": len(ex.tflite), "host_acc_all": host.accuracy, "test_clips": int(len(test.y)),
            "device_n": row.n, "device_correct": row.device_correct, "host_correct": row.host_correct,
            "device_equals_host": not bench.mismatches, "mismatches": bench.mismatches, "mean_kernel": bench.mean_kernel,
            "instructions_per_inference": row.per_inference,
        }
        print(name, json.dumps(result["variants"][name]), flush=True)
        atomic_write_json(args.out / "pooling.json", result)
    lines = ["| pooling | ops | int8 bytes | host TFLM acc (all test clips) | device: correct / host correct (n) | instructions / inference |",
             "|---|---|---|---|---|---|"]
    for name, v in result["variants"].items():
        lines.append(f"| {name} | {', '.join(v['ops'])} | {v['tflite_bytes']:,} | {100 * v['host_acc_all']:.1f} % ({v['test_clips']}) | "
                     f"{v['device_correct']} / {v['host_correct']} ({v['device_n']}) | {v['instructions_per_inference']:,.0f} |")
    atomic_write_text(args.out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
