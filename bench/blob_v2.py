"""Blob v2 against a generic embedded delta tool (detools), per exported language model.

    nice -n 5 .venv/bin/python bench/blob_v2.py --store artifacts/store --out runs/bench/blob_v2
    .venv/bin/python bench/blob_v2.py --store runs/bench/store_blob_real --head-weight-bits 6 --out runs/bench/blob_v2_h6
    .venv/bin/python bench/blob_v2.py --models DIR --out runs/bench/blob_v2_dir   # base.tflite + <name>.tflite (+ <name>.json)

For every language model exported against a base (a pipeline store's `export/*/<lang>.tflite`
with its `<lang>.json`, or a folder of `.tflite` files beside `base.tflite`), one row: method,
language, seed, budget; the v2 blob's bytes (`polykws.export.blob.encode_blob` from the base and
the language `.tflite`, labels from the export description); `detools.create_patch` with
heatshrink, lzma and crle compression (sequential bsdiff, the tool's defaults) and the smallest of
the three; their ratio; and a lower bound for the change: the bytes that differ and an order-0
entropy estimate of them (`polykws.core.patchcode.entropy_bound_bytes`: value-difference entropy
plus the information of which bytes changed), with the gap of the v2 blob to it. A store's exports
are taken at one head width (`--head-weight-bits`, the export's `head_weight_bits`; 8 by default).

Rows are cached one file each under <out>/rows/ (atomic writes), so an interrupted run resumes;
the outputs (results.csv, results.md, summary.json with `run_context()`) are sorted and depend
only on the inputs. Every blob is also applied (base + blob == the language model, byte for byte).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import statistics
import sys
from pathlib import Path

DETOOLS_COMPRESSIONS = ("heatshrink", "lzma", "crle")


def detools_sizes(base: bytes, target: bytes) -> dict[str, int]:
    try:
        import detools
    except ImportError:
        raise SystemExit("bench/blob_v2.py needs detools, the comparison tool: .venv/bin/pip install -e '.[bench]'") from None

    sizes = {}
    for comp in DETOOLS_COMPRESSIONS:
        out = io.BytesIO()
        detools.create_patch(io.BytesIO(base), io.BytesIO(target), out, compression=comp)
        sizes[comp] = len(out.getvalue())
    return sizes


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def find_jobs_store(store: Path) -> list[dict]:
    """Language exports in a pipeline store, each with the base export it was made against."""
    bases = {}
    for p in sorted(store.glob("export_base/*/*.tflite")):
        if p.name.endswith(".float.tflite"):
            continue
        bases[_sha(p.read_bytes())] = p
    jobs = []
    for js in sorted(store.glob("export/*/*.json")):
        d = json.loads(js.read_text())
        meta = d.get("meta") or {}
        if d.get("format") != "polykws-export" or meta.get("role") != "language":
            continue
        model = js.with_suffix(".tflite")
        base = bases.get(meta.get("base_sha256", ""))
        if base is None or not model.is_file():
            print(f"skip {js}: base {meta.get('base_sha256', '?')[:12]} or model not found", file=sys.stderr)
            continue
        jobs.append({"lang": d["lang"], "method": meta.get("method") or "?", "seed": meta.get("seed"),
                     "budget": _budget(meta), "labels": d["labels"], "model": str(model), "base": str(base),
                     "head_weight_bits": int(meta.get("head_weight_bits", 8))})
    return jobs


def _budget(meta: dict) -> str | None:
    """The export's budget as a table cell: parameters as a number, body blob bytes with a "B"."""
    if meta.get("budget_bytes") is not None:
        return f"{meta['budget_bytes']}B"
    return meta.get("budget_params")


def find_jobs_dir(folder: Path) -> list[dict]:
    base = folder / "base.tflite"
    if not base.is_file():
        raise SystemExit(f"{folder}: no base.tflite")
    jobs = []
    for p in sorted(folder.glob("*.tflite")):
        if p.name == "base.tflite" or p.name.endswith(".float.tflite"):
            continue
        desc = p.with_suffix(".json")
        d = json.loads(desc.read_text()) if desc.is_file() else {}
        meta = d.get("meta") or {}
        labels = d.get("labels") or [f"label{i}" for i in range(12)]
        jobs.append({"lang": d.get("lang") or p.stem, "method": meta.get("method") or p.stem, "seed": meta.get("seed"),
                     "budget": _budget(meta), "labels": labels, "model": str(p), "base": str(base)})
    return jobs


def context_gain(base: bytes, target: bytes) -> dict[str, float]:
    """How much a context model could save on the int8 tensors' changes, before learning costs.

    Per int8 region of the base (`tflite_regions`, width 1) that changes: the empirical order-0
    entropy of its byte differences (zeros included: values and positions together), and the
    same conditioned on the previous element's difference magnitude (0, 1, 2-3, 4-7, 8-15, 16+).
    Their ratio bounds what a coder conditioning on the neighbouring change could gain.
    """
    import numpy as np

    from polykws.core.patchcode import tflite_regions

    def h(v: "np.ndarray") -> float:
        counts = np.unique(v, return_counts=True)[1]
        p = counts / len(v)
        return float(-(p * np.log2(p)).sum() * len(v))

    a, b = np.frombuffer(base, np.uint8), np.frombuffer(target, np.uint8)
    order0 = ctx = 0.0
    for s, e, w in tflite_regions(base):
        if w != 1 or np.array_equal(a[s:e], b[s:e]):
            continue
        d = ((b[s:e].astype(np.int64) - a[s:e]) + 128) % 256 - 128
        prev = np.digitize(np.abs(np.concatenate(([0], d[:-1]))), [1, 2, 4, 8, 16])
        order0 += h(d)
        ctx += sum(h(d[prev == k]) for k in np.unique(prev))
    return {"int8_order0_bytes": round(order0 / 8, 1), "int8_context_bytes": round(ctx / 8, 1)}


def job_key(job: dict) -> str:
    return f"{job['method']}__{job['budget']}__{job['lang']}__s{job['seed']}__{_sha(Path(job['model']).read_bytes())[:12]}"


def run_row(job: dict) -> dict:
    from polykws.core.patchcode import entropy_bound_bytes
    from polykws.export.blob import apply_blob, decode_blob, encode_blob

    base = Path(job["base"]).read_bytes()
    target = Path(job["model"]).read_bytes()
    lang = job["lang"] if len(job["lang"]) <= 8 else job["lang"][:8]
    blob = encode_blob(base, target, lang, job["labels"], {"method": job["method"]})
    if apply_blob(base, blob) != target:
        raise SystemExit(f"{job['model']}: base + blob differs from the model")
    parsed = decode_blob(blob)
    det = detools_sizes(base, target)
    best = min(det.values())
    bound = entropy_bound_bytes(base, target)
    gain = context_gain(base, target)
    return {
        "method": job["method"], "budget": job["budget"], "lang": job["lang"], "seed": job["seed"],
        "base_bytes": len(base), "v2_bytes": len(blob), "v2_stream_bytes": len(parsed.stream),
        "v2_fixed_bytes": len(blob) - len(parsed.stream), "records": len(parsed.records()),
        **{f"detools_{c}_bytes": n for c, n in det.items()},
        "detools_best_bytes": best, "detools_best": min(det, key=det.get),
        "ratio_v2_over_detools": len(blob) / best,
        "changed_bytes": bound["changed_bytes"], "entropy_bound_bytes": round(bound["entropy_bytes"], 1),
        "gap_v2_over_bound": round(len(blob) / bound["entropy_bytes"], 3) if bound["entropy_bytes"] else None,
        **gain,
        "model": job["model"],
    }


def _label(r: dict) -> str:
    return r["method"] if r["budget"] in (None, "") else f"{r['method']}@{r['budget']}"


def report(rows: list[dict]) -> tuple[str, dict]:
    by_method: dict[str, list[dict]] = {}
    for r in rows:
        by_method.setdefault(_label(r), []).append(r)
    lines = ["| method | jobs | v2 (mean B) | detools-best (mean B) | v2 / detools | max per-job ratio | changed bytes (mean) | entropy bound (mean B) | v2 / bound "
             "| int8 changes with a neighbour context / order-0 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    method_ratios = []
    for m in sorted(by_method, key=lambda k: statistics.mean(r["v2_bytes"] for r in by_method[k])):
        rs = by_method[m]
        v2 = statistics.mean(r["v2_bytes"] for r in rs)
        det = statistics.mean(r["detools_best_bytes"] for r in rs)
        ch = statistics.mean(r["changed_bytes"] for r in rs)
        eb = statistics.mean(r["entropy_bound_bytes"] for r in rs)
        method_ratios.append(v2 / det)
        o0 = sum(r.get("int8_order0_bytes", 0.0) for r in rs)
        cx = sum(r.get("int8_context_bytes", 0.0) for r in rs)
        ctx_cell = f"{cx / o0:.2f}" if o0 else "-"
        lines.append(f"| {m} | {len(rs)} | {v2:,.0f} | {det:,.0f} | {v2 / det:.2f} | {max(r['ratio_v2_over_detools'] for r in rs):.2f} | "
                     f"{ch:,.0f} | {eb:,.0f} | {v2 / eb:.2f} | {ctx_cell} |")
    job_ratios = [r["ratio_v2_over_detools"] for r in rows]
    summary = {
        "jobs": len(rows),
        "median_ratio_over_methods": round(statistics.median(method_ratios), 4) if method_ratios else None,
        "median_ratio_over_jobs": round(statistics.median(job_ratios), 4) if job_ratios else None,
        "max_ratio_over_jobs": round(max(job_ratios), 4) if job_ratios else None,
        "jobs_v2_above_detools": sum(x > 1 for x in job_ratios),
        "head_only_max_bytes": max((r["v2_bytes"] for r in rows if r["method"] == "head_only"), default=None),
    }
    lines += ["", f"Median v2 / detools-best: {summary['median_ratio_over_methods']} over methods, "
              f"{summary['median_ratio_over_jobs']} over {len(rows)} jobs; largest per-job ratio {summary['max_ratio_over_jobs']}; "
              f"jobs where v2 > detools-best: {summary['jobs_v2_above_detools']}; largest head_only blob: {summary['head_only_max_bytes']} B."]
    return "\n".join(lines) + "\n", summary


def main(argv: list[str] | None = None) -> int:
    from polykws.core import atomic_write_json, atomic_write_text, run_context

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", type=Path, help="pipeline artifact store (export/ and export_base/)")
    src.add_argument("--models", type=Path, help="folder with base.tflite and language .tflite files")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--head-weight-bits", type=int, default=8, help="with --store: the exports whose head uses this many bits")
    args = ap.parse_args(argv)

    if args.store:
        found = find_jobs_store(args.store)
        jobs = [j for j in found if j["head_weight_bits"] == args.head_weight_bits]
        if len(jobs) < len(found):
            print(f"{len(found) - len(jobs)} exports with another head width left out", file=sys.stderr)
    else:
        jobs = find_jobs_dir(args.models)
    if not jobs:
        raise SystemExit("no language models found")
    rows_dir = args.out / "rows"
    rows = []
    for i, job in enumerate(jobs):
        key = job_key(job)
        path = rows_dir / f"{key}.json"
        if path.is_file():
            row = json.loads(path.read_text())
        else:
            row = run_row(job)
            atomic_write_json(path, row)
        rows.append(row)
        print(f"[{i + 1}/{len(jobs)}] {key}: v2 {row['v2_bytes']} B, detools-best {row['detools_best_bytes']} B "
              f"({row['ratio_v2_over_detools']:.2f}), bound {row['entropy_bound_bytes']} B", flush=True)
    rows.sort(key=lambda r: (r["method"], str(r["budget"]), r["lang"], str(r["seed"]), r["model"]))
    fields = [k for k in rows[0] if k != "model"] + ["model"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(args.out / "results.csv", buf.getvalue())
    md, summary = report(rows)
    atomic_write_text(args.out / "results.md", md)
    atomic_write_json(args.out / "summary.json", {**summary, "rows": len(rows), "context": run_context()})
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
