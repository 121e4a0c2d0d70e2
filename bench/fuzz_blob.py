"""1,000,000-input structure-aware fuzz runs of the C blob decoder and flash image reader (ASan/UBSan).

    nice -n 5 .venv/bin/python bench/fuzz_blob.py --out runs/bench/fuzz_blob                 # 1,000,000 per parser
    .venv/bin/python bench/fuzz_blob.py --out OUT_A --targets blob & .venv/bin/python bench/fuzz_blob.py --out OUT_B --targets image
    .venv/bin/python bench/fuzz_blob.py --out OUT --runs 50000 --engine mutation-loop         # gcc fallback

The driver is firmware/test/fuzz_blob.c (see there for the properties and how inputs land behind a
valid header and CRC); libFuzzer when clang links it, else the driver's seeded mutation loop.
Writes <out>/summary-<targets>.json (per parser: inputs run, libFuzzer's final cov:/ft: counts, wall time,
run_context()) and keeps each run's log; a crash leaves libFuzzer's reproducer in <out>/seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from polykws.core import atomic_write_json, atomic_write_text, run_context
    from polykws.firmware import fuzz

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--engine", choices=("libfuzzer", "mutation-loop"), default=None)
    ap.add_argument("--targets", default=",".join(("blob", "image")), help="comma-separated: blob, image")
    args = ap.parse_args(argv)

    out = args.out.resolve()
    seeds = fuzz.write_seeds(out / "seeds")
    exe, engine = fuzz.build(out / "build", args.engine)
    results = {}
    ok = True
    for target in args.targets.split(","):
        t0 = time.monotonic()
        r = fuzz.run(exe, engine, seeds, target, args.runs, seed=args.seed, timeout_s=6 * 3600)
        wall = time.monotonic() - t0
        atomic_write_text(out / f"{target}.log", r.log[-200_000:])
        results[target] = {"engine": engine, "inputs": r.runs, "ok": r.ok, "cov": r.coverage, "ft": r.features,
                           "wall_s": round(wall, 1), "inputs_per_s": round(r.runs / wall, 1) if wall else None}
        ok &= r.ok and r.runs == args.runs
        print(f"{target}: {engine}, {r.runs:,} inputs, ok={r.ok}, cov={r.coverage}, ft={r.features}, {wall:.0f} s", flush=True)
    atomic_write_json(out / f"summary-{'-'.join(results)}.json", {"runs_requested": args.runs, "seed": args.seed, "targets": results, "context": run_context()})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
