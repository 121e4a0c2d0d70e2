"""Language-switch instructions on a Cortex-M4 under QEMU (-icount shift=0), blob format 1 vs 2.

    nice -n 5 .venv/bin/python bench/switch_cost.py --store artifacts/store --out runs/bench/switch_cost
    .venv/bin/python bench/switch_cost.py --models DIR --out OUT --v1-rev e4269ba --board mps2-an386

A switch is what the runtime does per SelectLanguage before TFLM sees the model: pkwf_blob
(parse, CRC) and pkwb_apply_prehashed (copy the base, patch, SHA-256 verify), timed with SysTick
by firmware/test/switch_bench.c. The same source is built twice: against this checkout's
firmware/lib/blob.c (format 2) and against `--v1-rev`'s (format 1, the last revision with it), and
each runs on flash images holding the base and one language blob encoded by the matching
revision's encoder (export/blob.py of that revision), for every language model found (see
bench/blob_v2.py for the discovery rules). Units are instructions, never cycles.

Outputs <out>/results.md, results.csv and summary.json (with run_context()).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from blob_v2 import find_jobs_dir, find_jobs_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _git_show(rev: str, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], check=True, capture_output=True).stdout


def _load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def build(board: str, blob_dir: Path, build_root: Path) -> Path:
    subprocess.run(["make", "-s", "-C", str(REPO / "firmware"), "switch-bench", f"BOARD={board}",
                    f"SWITCH_BLOB_DIR={blob_dir}", f"BUILD_ROOT={build_root}"], check=True, capture_output=True, text=True)
    return build_root / board / "switch_bench.elf"


def run(elf: Path, board: str, work: Path, images: list[str]) -> dict[str, int]:
    from polykws.firmware.qemu import run_elf

    (work / "switch_bench.txt").write_text("\n".join(images) + "\n")
    r = run_elf(elf, board, cwd=work, timeout_s=600)
    if r.returncode != 0 or "PKW_END status=ok" not in r.stdout:
        raise SystemExit(f"{elf}: {r.stdout[-2000:]}{r.stderr[-1000:]}")
    unit = re.search(r"unit=(\w+)", r.stdout).group(1)
    if unit != "instructions":
        raise SystemExit(f"{board} counts {unit}, not instructions")
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^SWITCH (\S+) \S+ ok (\d+)$", r.stdout, re.M)}


def main(argv: list[str] | None = None) -> int:
    from polykws.core import atomic_write_json, atomic_write_text, run_context
    from polykws.export import blob as v2

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", type=Path)
    src.add_argument("--models", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--v1-rev", default="e4269ba", help="a revision whose blob format is 1 (default: main before blob v2)")
    ap.add_argument("--board", default="mps2-an386", help="a QEMU Cortex-M4 board")
    args = ap.parse_args(argv)

    jobs = find_jobs_store(args.store) if args.store else find_jobs_dir(args.models)
    out = args.out.resolve()
    v1_dir = out / "v1-src"
    v1_dir.mkdir(parents=True, exist_ok=True)
    for f in ("firmware/blob.c", "firmware/blob.h", "firmware/sha256.c", "firmware/sha256.h", "export/blob.py"):
        (v1_dir / Path(f).name).write_bytes(_git_show(args.v1_rev, f))
    v1 = _load_module(v1_dir / "blob.py", "polykws_blob_v1")
    if v1.BLOB_FORMAT_VERSION != 1:
        raise SystemExit(f"{args.v1_rev}: export/blob.py writes format {v1.BLOB_FORMAT_VERSION}, not 1")
    work = {1: out / "work-v1", 2: out / "work-v2"}
    rows, images = [], {1: [], 2: []}
    for i, job in enumerate(jobs):
        base = Path(job["base"]).read_bytes()
        target = Path(job["model"]).read_bytes()
        lang = job["lang"][:8]
        row = {"method": job["method"], "budget": job["budget"], "lang": job["lang"], "seed": job["seed"], "image": f"img{i:03d}.bin"}
        for ver, mod in ((1, v1), (2, v2)):
            blob = mod.encode_blob(base, target, lang, job["labels"], {"method": job["method"]})
            work[ver].mkdir(parents=True, exist_ok=True)
            (work[ver] / row["image"]).write_bytes(mod.encode_flash_image(base, [blob]))
            images[ver].append(row["image"])
            row[f"v{ver}_blob_bytes"] = len(blob)
        rows.append(row)
    units = {}
    for ver, blob_dir in ((1, v1_dir), (2, REPO / "firmware" / "lib")):
        elf = build(args.board, blob_dir, out / f"build-v{ver}")
        units[ver] = run(elf, args.board, work[ver], images[ver])
    for r in rows:
        r["v1_instructions"] = units[1][r["image"]]
        r["v2_instructions"] = units[2][r["image"]]
        r["v2_over_v1"] = round(r["v2_instructions"] / r["v1_instructions"], 3)
    rows.sort(key=lambda r: (r["method"], str(r["budget"]), r["lang"], str(r["seed"])))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "results.csv", buf.getvalue())
    lines = [f"Board {args.board} under QEMU -icount shift=0 (instructions). v1: {args.v1_rev}.", "",
             "| method | lang | seed | v1 blob B | v1 switch instr | v2 blob B | v2 switch instr | v2 / v1 |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["method"] if r["budget"] in (None, "") else f"{r['method']}@{r['budget']}"
        lines.append(f"| {m} | {r['lang']} | {r['seed']} | {r['v1_blob_bytes']:,} | {r['v1_instructions']:,} | {r['v2_blob_bytes']:,} | "
                     f"{r['v2_instructions']:,} | {r['v2_over_v1']:.2f} |")
    ratios = [r["v2_over_v1"] for r in rows]
    summary = {"board": args.board, "v1_rev": args.v1_rev, "switches": len(rows), "median_v2_over_v1": statistics.median(ratios),
               "max_v2_over_v1": max(ratios), "context": run_context()}
    lines += ["", f"Median v2 / v1: {summary['median_v2_over_v1']:.2f}; largest: {summary['max_v2_over_v1']:.2f} over {len(rows)} switches."]
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    atomic_write_json(out / "summary.json", summary)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
