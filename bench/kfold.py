"""Accuracy per blob byte on unseen speakers: every method, speaker 5-fold cross-validation.

    nice -n 5 .venv/bin/python bench/kfold.py --seeds 0,1                       # the full grid (hours; resumable)
    .venv/bin/python bench/kfold.py --langs lt --folds-run 0 --only head_only,swr@2000B --seeds 0
    nice -n 5 .venv/bin/python bench/kfold.py --seeds 0,1 --only head_only,swr@2000B   # a rerun reuses finished rows
    nice -n 5 .venv/bin/python bench/kfold.py --seeds 0,1 --budgets fill               # body budgets that fill 2-20 KB blobs
    .venv/bin/python bench/kfold.py --compare runs/bench_kfold/A,runs/bench_kfold/B --out runs/bench_kfold/A_vs_B

Each transfer language's speakers are dealt into 5 folds (datasets.SpeakerFolds); fold f is the
test set, fold f+1 validation, the rest train, so every speaker is tested exactly once. The base
and its int8 export are the same for every fold (the base language is never re-split). Every
row is an adapt stage plus an export stage of the pipeline engine (polykws.pipeline.grid) in
the artifact store, so the grid resumes after a kill and a rerun reuses finished rows. The x
axis is the real exported blob's bytes; accuracy is int8 under the host TFLM runtime.

Confidence intervals: each (method, language, fold, seed) row is one accuracy; a method's mean
over languages is taken per (fold, seed) pair, and the 95 % interval is the t interval over those
pairs. Differences between methods are paired on the same (language, fold, seed) rows.
Every method trains with the config's adapt.fit (its recipe: epochs, class balance), the same for
every method; `--epochs` overrides the epochs (SWR's phases split them).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402

LANGS = ("uk", "ar", "bn", "gu", "lt")
FOLDS = 5
BASELINES = ("head_only", "bias_only", "bn_only", "lora", "full_ft")
# Body byte budgets. The head, header, digest and labels add 0.7-0.9 KB (an 11- or 12-class 6-bit
# head), so every blob fits within 2, 3, 5, 10 and 20 KB.
BODY_BUDGETS = (1000, 2000, 4000, 9000, 19000)
# The body budgets that fill those blob budgets: each less 880 B, a little over the most the head,
# header, digest and labels take on the micro base's tasks (853 B). A method that holds its
# budget in exact bytes fits each blob budget with them; one that overshoots its budget may not.
FILL_BUDGETS = (1120, 2120, 4120, 9120, 19120)
ABLATION_BUDGET = 2000
# Blob budgets of the by-budget table: a method fits one when its largest blob over every
# (language, fold, seed) does.
BLOB_BUDGETS_KB = (2, 3, 5, 10, 20)
CSV_COLS = ["lang", "fold", "cell", "method", "budget", "seed", "status", "body_params", "updated_params", "float_acc", "int8_acc",
            "blob_bytes", "estimated_body_blob_bytes", "body_changed_bytes", "head_patched_bytes", "test_clips", "adapt_wall_s",
            "selection", "reason"]


def ablation(search: str, **settings) -> dict:
    """SWR's method options for an ablation search (training/swr/ablations/) with its settings."""
    return {"search": search, "ablation": settings}


def cells(budgets: list[int], ablation_budget: int):
    from polykws.pipeline.grid import GridCell

    out = [GridCell(m, m) for m in BASELINES]
    for b in budgets:
        out.append(GridCell("swr", "swr", b, "bytes"))  # the default search (l0)
        out.append(GridCell("diff_prune", "diff_prune", b, "bytes"))
    # The l0 search with diff_prune's one-shot projection instead of gradual pruning.
    out += [GridCell("swr_one_shot", "swr", b, "bytes", {"l0_pruning": "one_shot"}) for b in budgets]
    # The per-site greedy search over several families: what the l0 search is measured against.
    out += [GridCell("swr_greedy", "swr", b, "bytes", {"search": "greedy"}) for b in budgets]
    # Ablations and the other single families at one budget: the policy network with features
    # from before and after the warm-up, a random policy, a uniform allocation.
    out += [GridCell("swr_policy", "swr", ablation_budget, "bytes", {"search": "policy"}),
            GridCell("swr_policy_warm_features", "swr", ablation_budget, "bytes", ablation("policy", warmup_features=True)),
            GridCell("swr_random", "swr", ablation_budget, "bytes", {"search": "random"}),
            GridCell("swr_uniform", "swr", ablation_budget, "bytes", {"search": "uniform"})]
    out += [GridCell(fam, fam, ablation_budget, "bytes") for fam in ("scale", "lowrank", "dense")]
    # SWR over the sparse options only (bias and the diff_prune ladder, up to whole pointwise
    # tensors): is the choice between families worth anything over the choice of sizes?
    sparse = ["bias", *(f"diff_prune:k={k}" for k in (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096))]
    out += [GridCell("swr_sparse", "swr", b, "bytes", ablation("greedy", options=sparse)) for b in budgets]
    # A longer warm-up (half the epochs instead of a quarter): do better-trained search states
    # choose better positions?
    warm50 = {"warmup_fraction": 0.5, "search_fraction": 0.25, "finetune_fraction": 0.25}
    out += [GridCell("swr_warm50", "swr", b, "bytes", ablation("greedy", **warm50)) for b in budgets]
    out += [GridCell("swr_warm75", "swr", b, "bytes", ablation("greedy", warmup_fraction=0.75, search_fraction=0.125, finetune_fraction=0.125))
            for b in budgets]
    # The warm-up without "none" draws: every site trains jointly, as in diff_prune's search.
    out += [GridCell("swr_joint", "swr", b, "bytes", ablation("greedy", warmup_none=False)) for b in budgets]
    out += [GridCell("swr_joint_warm50", "swr", b, "bytes", ablation("greedy", warmup_none=False, **warm50)) for b in budgets]
    out += [GridCell("swr_support", "swr", b, "bytes", ablation("greedy", finetune_positions="support")) for b in budgets]
    out += [GridCell("swr_sparse_support", "swr", b, "bytes", ablation("greedy", options=sparse, finetune_positions="support"))
            for b in budgets]
    out += [GridCell("swr_measured", "swr", b, "bytes", {"search": "measured"}) for b in budgets]
    # SWR on the sites diff_prune's global magnitude projection fills (conv0 and the pointwise convs).
    out += [GridCell("swr_no_dw", "swr", b, "bytes", {"search": "greedy", "targets": ["conv0", "blocks.*.pw"]}) for b in budgets]
    return out


def t95(n: int) -> float:
    """Two-sided 95 % Student t quantile for n - 1 degrees of freedom (n >= 2)."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
             12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}
    df = n - 1
    return table.get(df) or table[max(k for k in table if k <= df)] if df >= 1 else float("nan")


def mean_ci(values: list[float]) -> tuple[float, float]:
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, float("nan")
    return m, t95(len(values)) * statistics.stdev(values) / math.sqrt(len(values))


def summarize(rows: list[dict], langs: list[str]) -> list[dict]:
    """Per cell: mean int8 accuracy over languages per (fold, seed), its 95 % CI, median blob bytes."""
    by_cell: dict[str, dict[tuple, dict[str, dict]]] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("int8_acc") is not None:
            by_cell.setdefault(r["cell"], {}).setdefault((r["fold"], r["seed"]), {})[r["lang"]] = r
    out = []
    for cell, pairs in by_cell.items():
        complete = {k: v for k, v in pairs.items() if all(lg in v for lg in langs)}
        if not complete:
            continue
        accs = [statistics.fmean(v[lg]["int8_acc"] for lg in langs) for v in complete.values()]
        blobs = [v[lg]["blob_bytes"] for v in complete.values() for lg in langs]
        m, ci = mean_ci(accs)
        out.append({"cell": cell, "pairs": len(complete), "mean_acc": m, "ci95": ci, "median_blob_bytes": statistics.median(blobs),
                    "mean_blob_bytes": statistics.fmean(blobs), "max_blob_bytes": max(blobs),
                    "per_lang": {lg: statistics.fmean(v[lg]["int8_acc"] for v in complete.values()) for lg in langs},
                    "keys": sorted(complete)})
    return sorted(out, key=lambda e: e["median_blob_bytes"])


def paired_diff(rows: list[dict], a: str, b: str) -> tuple[float, float, int] | None:
    """Mean and 95 % CI of (a - b) over matching (lang, fold, seed) rows, averaged per (fold, seed)."""
    idx = {(r["cell"], r["lang"], r["fold"], r["seed"]): r["int8_acc"] for r in rows if r.get("status") == "ok" and r.get("int8_acc") is not None}
    pairs: dict[tuple, list[float]] = {}
    for (cell, lang, fold, seed), acc in idx.items():
        if cell == a and (b, lang, fold, seed) in idx:
            pairs.setdefault((fold, seed), []).append(acc - idx[(b, lang, fold, seed)])
    diffs = [statistics.fmean(v) for v in pairs.values()]
    if not diffs:
        return None
    m, ci = mean_ci(diffs)
    return m, ci, len(diffs)


def markdown(summary: list[dict], rows: list[dict], langs: list[str], meta: dict) -> str:
    lines = [f"Languages {', '.join(langs)}; speaker {FOLDS}-fold; seeds {meta['seeds']}; folds run {meta['folds']}. "
             f"Base sha256 {str(meta.get('base_sha256'))[:12]}; int8 base {meta.get('base_tflite_bytes', 0):,} B.", "",
             "| method | (fold, seed) pairs | blob B median (max) | mean int8 acc % [95 % CI] | " + " | ".join(langs) + " |",
             "|---|---|---|---|" + "---|" * len(langs)]
    for e in summary:
        ci = "" if math.isnan(e["ci95"]) else f" ± {100 * e['ci95']:.1f}"
        lines.append(f"| {e['cell']} | {e['pairs']} | {e['median_blob_bytes']:,.0f} ({e['max_blob_bytes']:,}) | {100 * e['mean_acc']:.1f}{ci} | "
                     + " | ".join(f"{100 * e['per_lang'][lg]:.1f}" for lg in langs) + " |")
    return "\n".join(lines)


def fmt_diff(x: tuple[float, float, int] | None, digits: int) -> str:
    """A paired difference (mean, 95 % CI, pairs) in points: "+0.4 ± 0.6, 10"; "-" when none."""
    if x is None:
        return "-"
    ci = "" if math.isnan(x[1]) else f" ± {100 * x[1]:.{digits}f}"
    return f"{100 * x[0]:+.{digits}f}{ci}, {x[2]}"


def comparisons(summary: list[dict], rows: list[dict]) -> str:
    """For each SWR cell: the best other method whose median blob is no larger, and the paired
    difference (SWR minus it) with its 95 % CI over (fold, seed) pairs; and SWR against full FT."""
    swr = [e for e in summary if e["cell"].split("@")[0] == "swr"]
    others = [e for e in summary if not e["cell"].startswith("swr")]
    lines = ["| SWR cell | its blob B (median) | best other method within those bytes | its blob B | SWR − it, pt [95 % CI], pairs | "
             "SWR − diff_prune at the same budget | SWR − full_ft, pt [95 % CI], pairs |", "|---|---|---|---|---|---|---|"]
    for e in swr:
        fits = [o for o in others if o["median_blob_bytes"] <= e["median_blob_bytes"]]
        best = max(fits, key=lambda o: o["mean_acc"]) if fits else None
        d = paired_diff(rows, e["cell"], best["cell"]) if best else None
        f = paired_diff(rows, e["cell"], "full_ft")
        same = paired_diff(rows, e["cell"], "diff_prune@" + e["cell"].split("@", 1)[1]) if "@" in e["cell"] else None
        lines.append(f"| {e['cell']} | {e['median_blob_bytes']:,.0f} | {best['cell'] if best else '-'} | "
                     f"{best['median_blob_bytes']:,.0f} | {fmt_diff(d, 1)} | {fmt_diff(same, 1)} | {fmt_diff(f, 1)} |" if best else
                     f"| {e['cell']} | {e['median_blob_bytes']:,.0f} | - | - | - | {fmt_diff(same, 1)} | {fmt_diff(f, 1)} |")
    return "\n".join(lines)


def by_blob_budget(summary: list[dict], rows: list[dict], budgets_kb=BLOB_BUDGETS_KB) -> str:
    """Per blob budget: the best SWR cell and the best other method whose largest blob fits it
    (every row, not the median, so no language's blob overflows), and their paired difference."""
    lines = ["| blob budget | best SWR cell (largest blob) | its acc % | best other method (largest blob) | its acc % | "
             "SWR − it, pt [95 % CI], pairs | SWR − full_ft, pt [95 % CI], pairs |", "|---|---|---|---|---|---|---|"]
    for kb in budgets_kb:
        fits = [e for e in summary if e["max_blob_bytes"] <= 1000 * kb]
        swr = [e for e in fits if e["cell"].split("@")[0] == "swr"]
        others = [e for e in fits if not e["cell"].startswith("swr")]
        if not swr or not others:
            continue
        s, o = max(swr, key=lambda e: e["mean_acc"]), max(others, key=lambda e: e["mean_acc"])
        lines.append(f"| {kb} KB | {s['cell']} ({s['max_blob_bytes']:,}) | {100 * s['mean_acc']:.2f} | {o['cell']} ({o['max_blob_bytes']:,}) | "
                     f"{100 * o['mean_acc']:.2f} | {fmt_diff(paired_diff(rows, s['cell'], o['cell']), 2)} | {fmt_diff(paired_diff(rows, s['cell'], 'full_ft'), 2)} |")
    return "\n".join(lines)


def compare(a_dir: Path, b_dir: Path, out: Path, langs: list[str]) -> None:
    """Two runs of the grid on the same folds (e.g. two frontends): per cell in both, each side's
    mean and median blob, and B - A paired over (language, fold, seed), averaged per (fold, seed)."""
    from polykws.core import atomic_write_json, atomic_write_text

    sides = []
    for d in (a_dir, b_dir):
        rows = json.loads((d / "summary.json").read_text())["rows"]
        sides.append([r for r in rows if r["lang"] in langs])
    a_sum = {e["cell"]: e for e in summarize(sides[0], langs)}
    b_sum = {e["cell"]: e for e in summarize(sides[1], langs)}
    lines = [f"A = {a_dir}, B = {b_dir}; languages {', '.join(langs)}.", "",
             "| method | A: blob B median, mean int8 acc % | B: blob B median, mean int8 acc % | B − A, pt [95 % CI], (fold, seed) pairs | "
             + " | ".join(f"B − A {lg}" for lg in langs) + " |", "|---|---|---|---|" + "---|" * len(langs)]
    out_rows = []
    for cell in [c for c in b_sum if c in a_sum]:
        tagged = [{**r, "cell": "A"} for r in sides[0] if r["cell"] == cell] + [{**r, "cell": "B"} for r in sides[1] if r["cell"] == cell]
        d = paired_diff(tagged, "B", "A")
        if d is None:
            continue
        per_lang = {lg: paired_diff([r for r in tagged if r["lang"] == lg], "B", "A") for lg in langs}
        ea, eb = a_sum[cell], b_sum[cell]
        ci = "" if math.isnan(d[1]) else f" ± {100 * d[1]:.1f}"
        lines.append(f"| {cell} | {ea['median_blob_bytes']:,.0f}, {100 * ea['mean_acc']:.1f} | {eb['median_blob_bytes']:,.0f}, {100 * eb['mean_acc']:.1f} | "
                     f"{100 * d[0]:+.1f}{ci}, {d[2]} | " + " | ".join("-" if v is None else f"{100 * v[0]:+.1f}" for v in per_lang.values()) + " |")
        out_rows.append({"cell": cell, "a": ea, "b": eb, "b_minus_a": d, "per_lang": per_lang})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    atomic_write_json(out / "compare.json", {"a": str(a_dir), "b": str(b_dir), "cells": out_rows})
    print("\n".join(lines))


def merge(sources: list[str], out: Path, langs: list[str]) -> None:
    """One report from several runs' summary.json (rows deduplicated by cell, language, fold, seed;
    a later run's row wins). A source "DIR:old=new" renames that run's cells old@... to new@...,
    e.g. one SWR search's rows beside another's under the same cell names."""
    from polykws.core import atomic_write_json, atomic_write_text
    from polykws.pipeline.grid import plot_accuracy

    rows, metas, dirs = {}, [], []
    for source in sources:
        d, _, rename = source.partition(":")
        old, _, new = rename.partition("=")
        dirs.append(Path(d))
        data = json.loads((Path(d) / "summary.json").read_text())
        metas.append({k: data.get(k) for k in ("seeds", "folds", "cells", "base_sha256", "base_tflite_bytes", "host", "date")})
        for r in data["rows"]:
            name, at, budget = r["cell"].partition("@")
            r = {**r, "cell": new + at + budget} if rename and name == old else r
            rows[(r["cell"], r["lang"], r["fold"], r["seed"])] = r
    rows_l = [rows[k] for k in sorted(rows)]
    summary = summarize(rows_l, langs)
    meta = {"seeds": sorted({r["seed"] for r in rows_l}), "folds": sorted({r["fold"] for r in rows_l}),
            "base_sha256": metas[0]["base_sha256"], "base_tflite_bytes": metas[0]["base_tflite_bytes"]}
    md = markdown(summary, rows_l, langs, meta) + "\n\n" + comparisons(summary, rows_l) + "\n\n" + by_blob_budget(summary, rows_l)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.md", md + "\n")
    atomic_write_json(out / "summary.json", {"sources": [str(d) for d in dirs], "runs": metas, "summary": summary, "rows": rows_l})
    points = {(e["cell"], "mean of " + "+".join(langs)): {"blob_bytes": e["median_blob_bytes"], "mean": e["mean_acc"],
                                                           "sd": 0.0 if math.isnan(e["ci95"]) else e["ci95"]} for e in summary}
    plot_accuracy(points, x="blob_bytes", xlabel="exported blob bytes (log; median)", ylabel="int8 TFLM accuracy, unseen speakers (%)",
                  path=out / "acc_vs_blob_bytes.png")
    print(md)


def collect_models(store: Path, fold: int, seed: int, out: Path) -> int:
    """Copy every exported language model of one (fold, seed) in the grid's store, named
    `<lang>__<cell>.tflite` with its description (method = the cell), beside the base export as
    `base.tflite`: the folder layout `bench/blob_v2.py --models` reads. Rows of older code in
    the same store (a different `code_digest`) are left out, head-only aside (no delta)."""
    import shutil
    from collections import Counter

    from polykws.core import sha256_file

    fold_of = {}
    for sj in store.glob("features/*/stage.json"):
        d = json.loads(sj.read_text())
        fold_of[d["content_hash"]] = (d["config"].get("speaker_folds") or {}).get("fold")
    adapt_code = {}
    for sj in store.glob("bench_adapt/*/stage.json"):
        d = json.loads(sj.read_text())
        adapt_code[d["key"]] = d.get("code_digest")
    current = Counter(adapt_code.values()).most_common(1)[0][0]
    bases = {sha256_file(p) for p in store.glob("export_base/*/*.tflite") if not p.name.endswith(".float.tflite")}
    if len(bases) != 1:
        raise SystemExit(f"{store}: {len(bases)} different base exports; the models would not share one base")
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for sj in sorted(store.glob("bench_export/*/stage.json")):
        d = json.loads(sj.read_text())
        name = d["config"]["adapt_stage"]  # bench_adapt/<lang>/<cell>/s<seed>
        _, lang, cell, s = name.split("/")
        folds = {fold_of.get(v["content_hash"]) for k, v in d["inputs"].items() if k.startswith("features/")}
        if int(s[1:]) != seed or fold not in folds or (adapt_code.get(d["inputs"][name]["key"]) != current and cell != "head_only"):
            continue
        model = sj.parent / f"{lang}.tflite"
        if not model.is_file():
            continue
        desc = json.loads((sj.parent / f"{lang}.json").read_text())
        desc.setdefault("meta", {}).update(method=cell, seed=seed)
        shutil.copy(model, out / f"{lang}__{cell}.tflite")
        (out / f"{lang}__{cell}.json").write_text(json.dumps(desc))
        n += 1
    base = next(p for p in sorted(store.glob("export_base/*/*.tflite")) if not p.name.endswith(".float.tflite"))
    shutil.copy(base, out / "base.tflite")
    return n


def main() -> None:
    from gridargs import add_grid_args, grid_config, parse_list

    from polykws.core import atomic_path, atomic_write_json, atomic_write_text, run_context
    from polykws.pipeline.grid import grid_fit, grid_rows, grid_stages, plot_accuracy, run_grid
    from polykws.pipeline.store import ArtifactStore

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grid_args(ap, "runs/bench_kfold", LANGS, "0,1")
    ap.add_argument("--folds-run", default=",".join(map(str, range(FOLDS))), help="which folds to run (default all)")
    ap.add_argument("--only", default=None, help="comma-separated cell names, e.g. head_only,swr@2000B")
    ap.add_argument("--ablation-budget", type=int, default=ABLATION_BUDGET)
    ap.add_argument("--merge", default=None, help="comma-separated output folders of earlier runs: one report from their rows, no "
                    "training; DIR:old=new renames that run's cells old@... to new@...")
    ap.add_argument("--compare", default=None, help="A,B: two output folders (e.g. two frontends on the same folds): B - A per method, paired")
    ap.add_argument("--collect-models", type=Path, default=None,
                    help="copy the exported models of --folds-run's first fold and --seeds' first seed into this folder (for bench/blob_v2.py --models)")
    args = ap.parse_args()
    args.langs = parse_list(args.langs)
    if args.collect_models:
        store = Path(args.artifacts or "runs/bench_kfold/store")
        n = collect_models(store, parse_list(args.folds_run, int)[0], parse_list(args.seeds, int)[0], args.collect_models)
        print(f"{n} models in {args.collect_models}")
        return
    if args.merge:
        merge(parse_list(args.merge), args.out, args.langs)
        return
    if args.compare:
        a, b = (Path(d) for d in parse_list(args.compare))
        compare(a, b, args.out, args.langs)
        return
    if args.budgets == ",".join(map(str, (100, 300, 1000, 3000))):  # gridargs' parameter default
        args.budgets = ",".join(map(str, BODY_BUDGETS))
    if args.budgets == "fill":
        args.budgets = ",".join(map(str, FILL_BUDGETS))
    grid_cells = cells(parse_list(args.budgets, int), args.ablation_budget)
    if args.only:
        want = set(parse_list(args.only))
        grid_cells = [c for c in grid_cells if c.name in want]
    seeds, folds = parse_list(args.seeds, int), parse_list(args.folds_run, int)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    meta: dict = {**run_context(), "config": args.config, "seeds": seeds, "folds": folds, "cells": [c.name for c in grid_cells]}
    for fold in folds:  # fold-major: a partial run already covers every method on the first folds
        cfg = grid_config(args, {"export.enabled": True, "data.speaker_folds": {"folds": FOLDS, "fold": fold}})
        stages = grid_stages(cfg, grid_cells, seeds=seeds, fit=grid_fit(cfg, args.epochs), export=True,
                             progress=not args.no_progress)
        result = run_grid(stages, ArtifactStore(cfg.artifacts_uri), executor=args.executor, workers=args.workers,
                          ray_address=args.ray_address, show_progress=not args.no_progress)
        meta["base_sha256"] = result["base"].summary.get("state_sha256")
        meta["base_tflite_bytes"] = result["export_base"].summary.get("tflite_bytes")
        rows += [{**r, "fold": fold} for r in grid_rows(result)]
        summary = summarize(rows, args.langs)
        with atomic_path(args.out / "results.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        md = markdown(summary, rows, args.langs, meta) + "\n\n" + comparisons(summary, rows) + "\n\n" + by_blob_budget(summary, rows)
        atomic_write_text(args.out / "results.md", md + "\n")
        atomic_write_json(args.out / "summary.json", {**meta, "summary": summary,
                                                      "rows": [{k: r.get(k) for k in CSV_COLS} for r in rows]})
        print(md, flush=True)
    # One line per method through its budgets (plot_accuracy joins cells by the name before "@").
    points = {}
    for e in summarize(rows, args.langs):
        points[(e["cell"], "mean of " + "+".join(args.langs))] = {"blob_bytes": e["median_blob_bytes"], "mean": e["mean_acc"],
                                                                  "sd": 0.0 if math.isnan(e["ci95"]) else e["ci95"]}
    plot_accuracy(points, x="blob_bytes", xlabel="exported blob bytes (log; median)", ylabel="int8 TFLM accuracy, unseen speakers (%)",
                  path=args.out / "acc_vs_blob_bytes.png")
    print(json.dumps({"rows": len(rows), "out": str(args.out)}))


if __name__ == "__main__":
    main()
