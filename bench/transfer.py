"""Transfer benchmark: every method x budget x language x seed as fan-out stages of the pipeline engine.

    nice -n 10 .venv/bin/python bench/transfer.py --base artifacts/base/ds_cnn_s_mfcc.pt
    .venv/bin/python bench/transfer.py --base B --langs uk --methods swr,head_only --seeds 0 --budgets 1000
    .venv/bin/python bench/transfer.py --base B --time-swr          # SWR wall time per language (--threads, default 1)
    .venv/bin/python bench/transfer.py --config configs/demo.yaml --langs de --methods swr,head_only --budgets 1000 --seeds 0

Languages and tasks come from a pipeline config (default configs/shared-real.yaml: uk/ar/bn/gu
digits + _silence_, lt 10 commands + _silence_ + _unknown_), on the pipeline's speaker-disjoint
splits; accuracy is the merged model's top-1 on each language's test split. Budgeted methods
(SWR and every registered delta family fitted to the budget) run at every budget; fixed
baselines once per language and seed. A budget a family cannot use at all is reported as
"infeasible", never dropped. `--base` replaces the config's base (default: the config's own).

Each row is a stage in the config's artifact store (polykws.pipeline.grid): a second run reuses
finished rows, a killed run resumes, and `--executor ray` fans out on a cluster. Outputs in
--out: results.csv, summary.json, results.md (tables for docs/BENCHMARKS.md) and
accuracy_vs_params.png (accuracy against updated parameters, one shared log-x axis).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
from datetime import datetime, timezone
from pathlib import Path

LANGS = ("uk", "ar", "bn", "gu", "lt")
TARGET_BUDGET = 1000  # SWR with <= 1,000 body parameters + the head
CSV_COLS = ["lang", "cell", "method", "budget", "seed", "status", "body_params", "head_params", "updated_params", "val_acc", "test_acc",
            "test_clips", "adapt_wall_s", "selection", "reason"]


def cells(methods: list[str], budgets: list[int]):
    from polykws.pipeline.grid import GridCell
    from polykws.training.adapt import get_method

    out = []
    for m in methods:
        out += [GridCell(m, m, b) for b in budgets] if get_method(m).budgeted else [GridCell(m, m)]
    return out


def target_check(agg: dict, langs: list[str]) -> dict:
    """SWR at <= 1,000 body params vs full fine-tune and head-only: means over languages, paired by seed."""
    from polykws.pipeline.grid import mean_sd

    def per_seed(cell: str) -> dict[int, float]:
        entries = [agg.get((cell, lang)) for lang in langs]
        if not all(entries):
            return {}
        seeds = set.intersection(*[set(e["per_seed"]) for e in entries])
        return {s: statistics.fmean(e["per_seed"][s] for e in entries) for s in sorted(seeds)}

    swr, full, head = per_seed(f"swr@{TARGET_BUDGET}"), per_seed("full_ft"), per_seed("head_only")
    seeds = sorted(set(swr) & set(full) & set(head))
    if not seeds:
        return {"status": "incomplete"}
    gap_full, sd_full = mean_sd([swr[s] - full[s] for s in seeds])
    gap_head, sd_head = mean_sd([swr[s] - head[s] for s in seeds])
    return {"status": "ok", "seeds": len(seeds), "swr_mean": statistics.fmean(swr[s] for s in seeds),
            "full_ft_mean": statistics.fmean(full[s] for s in seeds), "head_only_mean": statistics.fmean(head[s] for s in seeds),
            "swr_minus_full_ft": gap_full, "swr_minus_full_ft_sd": sd_full, "swr_minus_head_only": gap_head,
            "swr_minus_head_only_sd": sd_head, "within_1pt_of_full_ft": gap_full >= -0.01, "at_least_5pt_over_head_only": gap_head >= 0.05}


def markdown(agg: dict, grid_cells, langs: list[str], target: dict) -> str:
    from polykws.pipeline.grid import mean_sd

    def cell(e: dict | None) -> str:
        if not e:
            return "-"
        # A single seed has no spread: print no "± 0.0" that would read as a measured one.
        return f"{100 * e['mean']:.1f} ± {100 * e['sd']:.1f}" if e["seeds"] > 1 else f"{100 * e['mean']:.1f}"

    lines = [f"| method | budget (body) | updated params (median, body + head) | seeds | {' | '.join(langs)} | mean over languages |",
             "|---|---|---|---|" + "---|" * len(langs) + "---|"]
    for c in sorted(grid_cells, key=lambda c: (c.method != "swr", c.method, c.budget or 0)):
        es = [agg.get((c.name, lang)) for lang in langs]
        if not any(es):
            continue
        common = set.intersection(*[set(e["per_seed"]) for e in es]) if all(es) else set()
        mean = None
        if common:
            m, sd = mean_sd([statistics.fmean(e["per_seed"][s] for e in es) for s in sorted(common)])
            mean = {"mean": m, "sd": sd, "seeds": len(common)}
        params = statistics.fmean(e["updated_params"] for e in es if e)
        seeds = sorted({e["seeds"] for e in es if e})
        lines.append(f"| {c.method} | {c.budget if c.budget is not None else '-'} | {params:,.0f} | "
                     f"{seeds[0] if len(seeds) == 1 else f'{seeds[0]}-{seeds[-1]}'} | " + " | ".join(cell(e) for e in es) + f" | {cell(mean)} |")
    out = "\n".join(lines)
    if target.get("status") == "ok":
        out += (f"\n\nTarget (SWR, budget {TARGET_BUDGET} body params; {target['seeds']} seeds, paired): SWR {100 * target['swr_mean']:.1f}%, "
                f"full fine-tune {100 * target['full_ft_mean']:.1f}%, head-only {100 * target['head_only_mean']:.1f}%. "
                f"SWR − full FT = {100 * target['swr_minus_full_ft']:+.1f} ± {100 * target['swr_minus_full_ft_sd']:.1f} pt "
                f"(target ≥ −1: {'met' if target['within_1pt_of_full_ft'] else 'NOT met'}); SWR − head-only = "
                f"{100 * target['swr_minus_head_only']:+.1f} ± {100 * target['swr_minus_head_only_sd']:.1f} pt "
                f"(target ≥ +5: {'met' if target['at_least_5pt_over_head_only'] else 'NOT met'}).")
    return out


def write_outputs(out: Path, rows: list[dict], grid_cells, langs: list[str], meta: dict) -> str:
    from polykws.core import atomic_path, atomic_write_json, atomic_write_text
    from polykws.pipeline.grid import aggregate, plot_accuracy

    with atomic_path(out / "results.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLS, extrasaction="ignore")
        w.writeheader()
        w.writerows(sorted(rows, key=lambda r: (r["lang"], r["cell"], r["seed"])))
    agg = aggregate(rows, "test_acc")
    target = target_check(agg, langs)
    infeasible = sorted({r["cell"] for r in rows if r["status"] == "infeasible"})
    md = markdown(agg, grid_cells, langs, target)
    if infeasible:
        md += "\n\nInfeasible (no site of the family fits the budget): " + ", ".join(infeasible) + "."
    atomic_write_json(out / "summary.json", {**meta, "rows": len(rows), "infeasible": infeasible, "target": target,
                                             "results": {f"{c}:{lg}": e for (c, lg), e in agg.items()}})
    atomic_write_text(out / "results.md", md + "\n")
    plot_accuracy(agg, x="updated_params", xlabel="updated parameters (body + head, log)", ylabel="top-1 accuracy, test split (%)",
                  path=out / "accuracy_vs_params.png")
    return md


def time_swr(args) -> None:
    """Wall time of one SWR adaptation per language (features already cached).

    `--threads` torch threads (default 1): on a shared 2-core machine two intra-op threads spin
    against other jobs and run several times slower than one; on an idle 2-core machine use 2.
    """
    import time

    import torch

    from polykws.core import atomic_write_json
    from polykws.training.adapt import TransferConfig, adapt, method_config
    from polykws.training.checkpoint import load_model
    from polykws.pipeline.tasks import load_language_splits

    torch.set_num_threads(args.threads)
    base = load_model(args.base)
    results = {}
    for lang in args.langs:
        splits = load_language_splits(lang, base.frontend, config=args.config)
        walls, loads = [], []
        for rep in range(args.repeats):
            loads.append(os.getloadavg()[0])
            cpu0 = time.process_time()
            res = adapt(base.model, splits, method_config("swr", budget_params=TARGET_BUDGET),
                        TransferConfig(seed=rep, num_threads=args.threads, **({"epochs": args.epochs} if args.epochs else {})))
            walls.append(res.wall_s)
        results[lang] = {"wall_median_s": statistics.median(walls), "walls_s": walls, "cpu_s_last": time.process_time() - cpu0,
                         "load_avg_1min": loads, "train_clips": len(splits["train"])}
        print(f"{lang}: SWR@{TARGET_BUDGET} median {statistics.median(walls):.1f} s wall over {len(walls)} runs "
              f"(load avg {statistics.fmean(loads):.1f}; {len(splits['train'])} train clips)", flush=True)
    atomic_write_json(args.out / "swr_timing.json", {"threads": args.threads, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                                      "machine": f"{platform.machine()}, {os.cpu_count()} cores", "results": results})


def main() -> None:
    from gridargs import add_grid_args, parse_list, run_grid_from_args

    from polykws.training.adapt import list_methods

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grid_args(ap, "runs/bench_transfer", LANGS, "0,1,2")
    ap.add_argument("--methods", default="all", help="comma-separated, or 'all' (every registered method and delta family)")
    ap.add_argument("--time-swr", action="store_true", help="only time SWR (budget 1000) per language (needs --base)")
    ap.add_argument("--repeats", type=int, default=3, help="--time-swr repetitions per language")
    ap.add_argument("--threads", type=int, default=1, help="--time-swr torch threads")
    args = ap.parse_args()
    args.langs = parse_list(args.langs)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.time_swr:
        if args.base is None:
            ap.error("--time-swr needs --base (the model file to adapt)")
        time_swr(args)
        return
    methods = list_methods() if args.methods == "all" else parse_list(args.methods)
    grid_cells = cells(methods, parse_list(args.budgets, int))
    rows, meta = run_grid_from_args(args, grid_cells, export=False)
    print(write_outputs(args.out, rows, grid_cells, args.langs, {**meta, "methods": methods}))


if __name__ == "__main__":
    main()
