"""Structure-aware fuzzing of the Python file readers, at scale: pack manifest, export folder,
model file, training checkpoint (the targets of tests/reliability/filefuzz.py).

    nice -n 10 .venv/bin/python bench/fuzz_files.py --inputs 1000000 --targets pack_manifest,export_meta
    nice -n 10 .venv/bin/python bench/fuzz_files.py --inputs 50000 --targets model_file,train_state --workers 2

--max-minutes stops a target early on a busy machine; the table then says how many inputs ran.
Per target: inputs run, refused with a named error, accepted (and then checked against the
recorded hashes), crashes (anything else: the run stops and names the seed), and line coverage
of the reader's module, traced over the first --coverage-inputs inputs (coverage.py is not a
dependency: a sys.settrace tracer counts executed lines of the reader's source file against the
lines its code objects hold). Writes <out>/summary.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

READER_FILES = {
    "pack_manifest": ["firmware/packreader.py"],
    "export_meta": ["export/api.py"],
    "model_file": ["training/checkpoint.py"],
    "train_state": ["training/checkpoint.py"],
}
READER_FUNCS = {
    "pack_manifest": {"load_pack", "_pack_image", "_verified", "_read_json", "_base_description", "_check_models_against_manifest"},
    "export_meta": {"load", "verified", "_frontend_of"},
    "model_file": {"load_model", "_equals"},
    "train_state": {"load_training_state", "_equals"},
}


def _code_lines(path: Path, funcs: set[str]) -> set[int]:
    code = compile(path.read_text(), str(path), "exec")
    lines: set[int] = set()

    def walk(c: types.CodeType) -> None:
        if c.co_name in funcs:
            lines.update(ln for _, _, ln in c.co_lines() if ln is not None)
            for k in c.co_consts:
                if isinstance(k, types.CodeType):
                    walk_all(k)
        for k in c.co_consts:
            if isinstance(k, types.CodeType):
                walk(k)

    def walk_all(c: types.CodeType) -> None:
        lines.update(ln for _, _, ln in c.co_lines() if ln is not None)
        for k in c.co_consts:
            if isinstance(k, types.CodeType):
                walk_all(k)

    walk(code)
    return lines


def _worker(args: tuple) -> dict:
    name, seed0, count, coverage_inputs, max_s = args
    import warnings

    warnings.filterwarnings("ignore")
    import filefuzz

    marker = Path(tempfile.mkdtemp()) / "code-ran"
    target = filefuzz.all_targets(marker)[name] if name in ("pack_manifest", "export_meta") else {
        "model_file": filefuzz.model_target, "train_state": filefuzz.train_state_target}[name](marker)
    files = {str((ROOT / f).resolve()) for f in READER_FILES[name]}
    hit: set[tuple[str, int]] = set()

    def tracer(frame, event, arg):
        if frame.f_code.co_filename in files:
            if event == "line":
                hit.add((frame.f_code.co_filename, frame.f_lineno))
            return tracer
        return None

    crash = None
    t0 = time.perf_counter()
    done = 0
    try:
        if coverage_inputs:
            sys.settrace(tracer)
            try:
                filefuzz.run(target, seed0, min(coverage_inputs, count))
            finally:
                sys.settrace(None)
            done = min(coverage_inputs, count)
        step = 1000
        while done < count and time.perf_counter() - t0 < max_s:
            n = min(step, count - done)
            filefuzz.run(target, seed0 + 1 + done // step, n)
            done += n
    except AssertionError as exc:
        crash = f"{type(exc).__name__}: {exc}"
    return {"name": name, "stats": target.stats, "seconds": time.perf_counter() - t0, "crash": crash,
            "hit": sorted(hit), "code_ran": marker.exists()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target")
    p.add_argument("--targets", default="pack_manifest,export_meta,model_file,train_state")
    p.add_argument("--workers", type=int, default=1, help="processes per target (inputs are split between them)")
    p.add_argument("--coverage-inputs", type=int, default=5000, help="inputs traced for line coverage (per worker 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=float("inf"), help="stop a target after this long (the inputs run are reported)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "fuzz_files")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.targets.split(","):
        per = [args.inputs // args.workers + (1 if i < args.inputs % args.workers else 0) for i in range(args.workers)]
        jobs = [(name, args.seed + 10_000_000 * i, n, args.coverage_inputs if i == 0 else 0, args.max_minutes * 60) for i, n in enumerate(per)]
        t0 = time.perf_counter()
        if args.workers > 1:
            with mp.get_context("spawn").Pool(args.workers) as pool:
                parts = pool.map(_worker, jobs)
        else:
            parts = [_worker(jobs[0])]
        wall = time.perf_counter() - t0
        stats = {k: sum(pt["stats"][k] for pt in parts) for k in ("inputs", "accepted", "refused")}
        crashes = [pt["crash"] for pt in parts if pt["crash"]]
        lines = set()
        for f in READER_FILES[name]:
            lines |= {(str((ROOT / f).resolve()), ln) for ln in _code_lines(ROOT / f, READER_FUNCS[name])}
        hit = {tuple(h) for pt in parts for h in pt["hit"]} & lines
        row = {"target": name, **stats, "crashes": len(crashes), "crash_messages": crashes[:3],
               "code_ran": any(pt["code_ran"] for pt in parts), "wall_s": round(wall, 1),
               "inputs_per_s": round(stats["inputs"] / wall, 1), "reader_lines": len(lines), "reader_lines_hit": len(hit),
               "line_coverage_pct": round(100.0 * len(hit) / max(1, len(lines)), 1),
               "missed_lines": sorted(ln for _, ln in lines - hit)}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "missed_lines"}), flush=True)
    summary = {"command": " ".join(sys.argv), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
               "host": os.uname().nodename, "cpus": os.cpu_count(), "rows": rows}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n| reader | inputs | refused (named error) | accepted (hashes match) | crashes | reader line coverage |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']} | {r['inputs']:,} | {r['refused']:,} | {r['accepted']:,} | {r['crashes']} | "
              f"{r['reader_lines_hit']}/{r['reader_lines']} ({r['line_coverage_pct']}%) |")
    return 1 if any(r["crashes"] or r["code_ran"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
