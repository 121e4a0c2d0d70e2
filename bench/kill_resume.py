"""Kill-and-resume trials on `polykws run`: SIGKILL of the whole process group at a random moment
inside each stage kind, resume, compare every stage's content hash with an uninterrupted run.

    nice -n 10 .venv/bin/python bench/kill_resume.py --trials 3                 # export off: scan, features, base, adapt, report
    nice -n 10 .venv/bin/python bench/kill_resume.py --trials 1 --export        # + export_base, export, pack, tflm_eval

The corpus and config are the pipeline tests' fixture (tests/pipeline/corpus_fixture.py). Each
trial is a fresh store; where the kill landed is read from the store (`.work-<key>` folders).
Also runs the full-disk (tiny tmpfs store) and read-only-store checks when run as root.
Writes <out>/summary.json and prints a Markdown table per stage kind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

import faults  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=3, help="trials per stage kind")
    p.add_argument("--export", action="store_true", help="enable export (TensorFlow): adds export_base, export, pack, tflm_eval")
    p.add_argument("--kinds", help="comma-separated stage kinds (default: every kind of the run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=Path("/tmp/polykws-kill-resume"))
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "kill_resume")
    args = p.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    setup = faults.make_setup(args.work, export=args.export)
    ref = faults.reference_run(setup)
    print(f"reference run: {ref.wall_s:.1f} s, {len(ref.hashes)} stages", flush=True)
    kinds = args.kinds.split(",") if args.kinds else [k for k in ref.windows if k != "corpus"]
    rng = random.Random(args.seed)
    trials = []
    for kind in kinds:
        for i in range(args.trials):
            t = faults.kill_and_resume(setup, ref, kind, rng, f"trial-{kind}-{i}")
            faults.cleanup(setup, f"trial-{kind}-{i}")
            trials.append(asdict(t))
            print(json.dumps(asdict(t)), flush=True)
    extra = {}
    if faults.can_mount():
        line, identical = faults.full_disk_then_resume(setup, ref)
        extra["full_disk"] = {"error": line, "resume_identical": identical}
        extra["read_only"] = {"error": faults.read_only_output(setup)}
        print(json.dumps(extra), flush=True)
    summary = {"command": " ".join(sys.argv), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
               "host": os.uname().nodename, "cpus": os.cpu_count(), "reference_wall_s": round(ref.wall_s, 1),
               "trials": trials, **extra}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"summary{'-export' if args.export else ''}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n| stage kind | trials | kill landed in that kind | resumed to identical artifacts |")
    print("|---|---|---|---|")
    for kind in kinds:
        ts = [t for t in trials if t["kind"] == kind]
        print(f"| {kind} | {len(ts)} | {sum(kind in t['landed_in'] for t in ts)} | {sum(t['identical'] for t in ts)}/{len(ts)} |")
    return 0 if all(t["identical"] for t in trials) and extra.get("full_disk", {}).get("resume_identical", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
