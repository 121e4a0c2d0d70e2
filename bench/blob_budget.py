"""Blob bytes vs int8 accuracy: every transfer method x budget, exported against the shipped base.

    nice -n 10 .venv/bin/python bench/blob_budget.py --base artifacts/base/ds_cnn_s_mfcc.pt --seeds 0,1,2
    .venv/bin/python bench/blob_budget.py --base B --langs lt --only head_only,swr@1000          # a few cells
    nice -n 10 .venv/bin/python bench/blob_budget.py --base B --swr-budget-bytes 1000,3000        # validate SWR's byte estimate
    .venv/bin/python bench/blob_budget.py --config configs/demo.yaml --langs de --only head_only,swr@1000 --seeds 0

The size target is "each language blob <= 5 % of the base .tflite at the SWR budget that meets
the transfer accuracy target". Parameter budgets and blob bytes are different currencies: a blob
stores changed int8 *bytes* of the base flatbuffer, so this benchmark measures, per method,
family and budget, what a language actually costs in flash and what it scores under TFLM.

Each row (language x method x budget x seed; default seed 0) is two fan-out stages of the
pipeline engine (polykws.pipeline.grid): the pipeline's adapt stage, then its language export
against the base int8 model (the config's `export.scales`, `auto` in configs/shared-real.yaml),
which checks base + blob == the language .tflite and scores int8 under host TFLM; the row adds
the blob's bytes by role (`polykws.export.breakdown.blob_breakdown`). The base is quantized once
by the pipeline's export_base stage (calibrated on the config's base-language training features,
head slots = the largest label count). Rows live in the config's artifact store: a second run
reuses them, a killed run resumes. Budgeted cells are SWR and every registered delta family
(`list_deltas()`), so a new family is benchmarked with no edit here.
Outputs: results.csv, results.md (tables for docs/BENCHMARKS.md), summary.json and
acc_vs_blob_bytes.png (int8 TFLM accuracy vs blob bytes, one shared log-x axis, a line at 5 %).
"""

from __future__ import annotations

import os

# One thread for TF (onnx2tf / converter) and BLAS as well as torch: the machine is shared.
for _var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402

LANGS = ("uk", "lt")
BASELINES = ("head_only", "bias_only", "bn_only", "full_ft")
# SWR restricted to the families whose deltas change few int8 bytes (no whole-tensor rewrites).
BYTE_FRIENDLY_FAMILIES = ("scale", "bias", "diff_prune")
BYTE_FRIENDLY_BUDGETS = (100, 300, 1000)  # 100: the only SWR budget whose blob could fit 5 % of the base
BYTE_FRIENDLY_LABEL = "swr[" + "+".join(BYTE_FRIENDLY_FAMILIES) + "]"
TARGET_PCT = 5.0  # blob <= 5 % of the base .tflite
# Most informative first, so a partial run already answers the question; then the rest by budget.
PRIORITY = ["head_only", "swr@1000", f"{BYTE_FRIENDLY_LABEL}@1000", "diff_prune@1000", "bias@1000", "scale@1000", "full_ft",
            "lowrank@1000", "recast@1000", "dense@1000", f"{BYTE_FRIENDLY_LABEL}@300", "swr@300", f"{BYTE_FRIENDLY_LABEL}@100",
            "bias_only", "bn_only"]
CSV_COLS = ["lang", "cell", "method", "budget", "seed", "status", "body_params", "head_params", "updated_params", "float_acc", "int8_acc",
            "blob_bytes", "base_tflite_bytes", "blob_pct_of_base", "fixed_bytes", "records", "stream_bytes",
            "head_patched_bytes", "body_patched_bytes", "head_changed_bytes", "body_changed_bytes", "estimated_body_blob_bytes",
            "val_acc", "test_clips", "adapt_wall_s", "selection", "reason"]


def main_cells(budgets: list[int]):
    from polykws.pipeline.grid import GridCell, swr_options
    from polykws.training.deltas import list_deltas

    cells = [GridCell(m, m) for m in BASELINES] + [GridCell("swr", "swr", b) for b in budgets]
    cells += [GridCell(f, f, b) for f in list_deltas() for b in budgets]
    options = {"search": "greedy", "ablation": {"options": swr_options(BYTE_FRIENDLY_FAMILIES)}}
    cells += [GridCell(BYTE_FRIENDLY_LABEL, "swr", b, method_options=options) for b in BYTE_FRIENDLY_BUDGETS]
    rank = {name: i for i, name in enumerate(PRIORITY)}
    return sorted(cells, key=lambda c: (rank.get(c.name, len(PRIORITY)), c.budget or 0))


def byte_budget_cells(byte_budgets: list[int], families: list[str]):
    """head-only and SWR under SWRConfig.budget_bytes (optionally restricted to `families`)."""
    from polykws.pipeline.grid import GridCell, swr_options

    label = "swr_blob" + ("-" + "+".join(families) if families else "")
    options = {"search": "greedy", "ablation": {"options": swr_options(families)}} if families else {}
    return [GridCell("head_only", "head_only")] + [GridCell(label, "swr", b, "bytes", options) for b in byte_budgets]


def head_only_of(rows: list[dict]) -> dict:
    return {(r["lang"], r["seed"]): r for r in rows if r["cell"] == "head_only" and r["status"] == "ok"}


def bytes_per_body_param(rows: list[dict]) -> dict:
    """{(cell, lang): median (blob - the same language's and seed's head-only blob) / updated body params}."""
    head = head_only_of(rows)
    out: dict = {}
    for r in rows:
        h = head.get((r["lang"], r["seed"]))
        if r["status"] == "ok" and h and r.get("body_params"):
            out.setdefault((r["cell"], r["lang"]), []).append((r["blob_bytes"] - h["blob_bytes"]) / r["body_params"])
    return {k: statistics.median(v) for k, v in out.items()}


def markdown(rows: list[dict], cells, langs: list[str], seeds: list[int], base_bytes: int) -> str:
    from polykws.pipeline.grid import aggregate

    agg, bpp, limit = aggregate(rows, "int8_acc"), bytes_per_body_param(rows), TARGET_PCT / 100 * base_bytes
    status = {(r["cell"], r["lang"]): r["status"] for r in rows}
    acc_hdr = "int8 (float) %" if len(seeds) == 1 else f"int8 mean ± sd (float) %, {len(seeds)} seeds"
    lines = ["| method | " + " | ".join(f"{lg}: body params | {lg}: blob B (% base) | {lg}: B / body param | {lg}: {acc_hdr}" for lg in langs) + " |",
             "|---|" + "---|---|---|---|" * len(langs)]
    roles = ["", "", "| method | lang | blob B | fixed (header+digest+labels+CRC) | records | record stream B | head patched | body patched | body changed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        parts = []
        for lg in langs:
            a = agg.get((c.name, lg))
            if a is None:
                parts += [status.get((c.name, lg), "not run"), "-", "-", "-"]
                continue
            ok = "**" if a["blob_range"][1] <= limit else ""
            rng = "" if a["blob_range"][0] == a["blob_range"][1] else f" [{a['blob_range'][0]:,}-{a['blob_range'][1]:,}]"
            acc = f"{100 * a['mean']:.1f}" + (f" ± {100 * a['sd']:.1f}" if len(seeds) > 1 else "") + f" ({100 * a['float_mean']:.1f})"
            acc += f" [{a['seeds']} seed{'s' if a['seeds'] > 1 else ''}]" if a["seeds"] < len(seeds) else ""
            b = bpp.get((c.name, lg))
            parts += [f"{a['body_params']:,.0f}", f"{ok}{a['blob_bytes']:,.0f} ({a['blob_pct_of_base']:.2f}%){ok}{rng}",
                      "-" if b is None else f"{b:.1f}", acc]
            roles.append(f"| {c.name} | {lg} | {a['blob_bytes']:,.0f} | {a['fixed_bytes']:,.0f} | {a['records']:,.0f} | "
                         f"{a['stream_bytes']:,.0f} | {a['head_patched_bytes']:,.0f} | {a['body_patched_bytes']:,.0f} | "
                         f"{a['body_changed_bytes']:,.0f} |")
        lines.append(f"| {c.name} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + (
        f"\n\nBold: blob <= {TARGET_PCT:.0f} % of the base .tflite ({base_bytes:,} B -> {limit:,.0f} B) at every seed. Blob bytes and "
        "params are medians over seeds ([min-max] where they differ). B / body param = (blob - the same language's head-only "
        "blob) / updated body parameters.") + "\n".join(roles)


def byte_budget_markdown(rows: list[dict]) -> tuple[str, list[dict]]:
    """SWR's estimated body blob bytes against the exporter's, per row.

    Actual body bytes = blob - the same language's and seed's head-only blob (metadata is referenced
    by hash, so both blobs carry the same fixed bytes for the same labels)."""
    head, out = head_only_of(rows), []
    for r in rows:
        ho = head.get((r["lang"], r["seed"]))
        if r["cell"] == "head_only" or r["status"] != "ok" or ho is None:
            continue
        diff = r["blob_bytes"] - ho["blob_bytes"]
        actual = diff - (r["fixed_bytes"] - ho["fixed_bytes"])
        est = r["estimated_body_blob_bytes"]
        out.append({"lang": r["lang"], "seed": r["seed"], "budget_bytes": r["budget"], "selection": r.get("selection"),
                    "body_params": r["body_params"], "estimated_body_bytes": est, "blob_bytes": r["blob_bytes"],
                    "blob_minus_head_only": diff, "actual_body_bytes": actual, "estimate_over_actual": est / actual if actual > 0 else None,
                    "int8_acc": r["int8_acc"], "float_acc": r["float_acc"], "head_only_int8_acc": ho["int8_acc"]})
    lines = ["| lang | seed | budget B | selection | body params | estimated body B | blob B | blob - head-only B | actual body B (meta-corrected) "
             "| estimate / actual | int8 % (float) | head-only int8 % |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out:
        ratio = "-" if r["estimate_over_actual"] is None else f"{r['estimate_over_actual']:.2f}"
        lines.append(f"| {r['lang']} | {r['seed']} | {r['budget_bytes']:,} | {r['selection']} | {r['body_params']:,} | {r['estimated_body_bytes']:,} | "
                     f"{r['blob_bytes']:,} | {r['blob_minus_head_only']:,} | {r['actual_body_bytes']:,} | {ratio} | "
                     f"{100 * r['int8_acc']:.1f} ({100 * r['float_acc']:.1f}) | {100 * r['head_only_int8_acc']:.1f} |")
    return "\n".join(lines), out


def write_outputs(out: Path, rows: list[dict], cells, langs: list[str], meta: dict, byte_budgets: bool) -> str:
    from polykws.core import atomic_path, atomic_write_json, atomic_write_text
    from polykws.pipeline.grid import aggregate, plot_accuracy

    with atomic_path(out / "results.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    if byte_budgets:
        md, table = byte_budget_markdown(rows)
        name = cells[-1].label
        atomic_write_json(out / f"{name}.json", {**meta, "rows": table})
        atomic_write_text(out / f"{name}.md", md + "\n")
        return md
    eb = meta["export_base"]
    base_bytes = eb["tflite_bytes"]
    agg = aggregate(rows, "int8_acc")
    md = (f"Base: {meta['base']} (sha256 {str(meta['base_sha256'])[:12]}), int8 .tflite {base_bytes:,} B, head slots {eb['head_slots']}"
          + (f", base-task int8 TFLM {100 * eb['int8_acc']:.1f}% ({eb['test_clips']} clips)" if eb.get("int8_acc") is not None else "")
          + f". Seeds {meta['seeds']}; export scales {meta['scales']}.\n\n" + markdown(rows, cells, langs, meta["seeds"], base_bytes))
    limit = TARGET_PCT / 100 * base_bytes
    atomic_write_json(out / "summary.json", {**meta, "rows": len(rows), "infeasible": sorted({f"{r['lang']}:{r['cell']}" for r in rows if r["status"] == "infeasible"}),
                                             "meeting_target": sorted(f"{lg}:{c}" for (c, lg), a in agg.items() if a["blob_range"][1] <= limit),
                                             "cells": {f"{lg}:{c}": a for (c, lg), a in agg.items()}})
    atomic_write_text(out / "results.md", md + "\n")
    plot_accuracy(agg, x="blob_bytes", xlabel="blob bytes (log; median over seeds)", ylabel="int8 TFLM test top-1 (%)",
                  path=out / "acc_vs_blob_bytes.png", vline=(limit, f"{TARGET_PCT:.0f}% of base"))
    return md


def main() -> None:
    from gridargs import add_grid_args, parse_list, run_grid_from_args

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grid_args(ap, "runs/bench_blob", LANGS, "0")
    ap.add_argument("--only", default=None, help="comma-separated cells, e.g. head_only,swr@1000,swr[scale+bias+diff_prune]@300")
    ap.add_argument("--swr-budget-bytes", default=None,
                    help="comma-separated byte budgets: run only head-only and SWR with SWRConfig.budget_bytes, and write "
                         "swr_blob.md/json (estimated vs exported body bytes) instead of the main report")
    ap.add_argument("--swr-families", default=None, help="with --swr-budget-bytes: restrict SWR's options to these families; "
                    "the report is named swr_blob-<fam>+<fam>")
    args = ap.parse_args()
    args.langs = parse_list(args.langs)
    byte_budgets = parse_list(args.swr_budget_bytes or "", int)
    cells = byte_budget_cells(byte_budgets, parse_list(args.swr_families or "")) if byte_budgets else main_cells(parse_list(args.budgets, int))
    if args.only:
        want = set(parse_list(args.only))
        cells = [c for c in cells if c.name in want]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, meta = run_grid_from_args(args, cells, export=True)
    print(write_outputs(args.out, rows, cells, args.langs, meta, bool(byte_budgets)))


if __name__ == "__main__":
    main()
