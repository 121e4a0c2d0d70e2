"""Transfer benchmark: every method x budget x language x seed through the one harness.

    nice -n 10 .venv/bin/python bench/transfer.py --base artifacts/base/ds_cnn_s_mfcc.pt
    .venv/bin/python bench/transfer.py --base B --langs uk --methods swr,head_only --seeds 0 --budgets 1000
    .venv/bin/python bench/transfer.py --base B --time-swr          # SWR wall time per language (--threads, default 1)
    .venv/bin/python bench/transfer.py --base B --report-only       # re-aggregate finished rows

Languages and tasks come from configs/shared-real.yaml (uk/ar/bn/gu digits + _silence_, lt 10
commands + _silence_ + _unknown_), on the speaker-disjoint splits the pipeline uses; accuracy is
the merged model's top-1 on each language's test split. Budgeted methods (SWR and each delta
family fitted to the budget) run at every budget; fixed baselines (full FT, head-only, BN-only,
bias-only, LoRA r=4, scratch) once per language and seed. A budget a family cannot use at all
(e.g. `dense` below one depthwise kernel) is recorded as "infeasible", never dropped.

Every finished job is written atomically to <out>/rows/, so an interrupted run resumes where it
stopped. Workers run one torch thread each (the models are tiny; threads only contend).
Outputs: results.csv (one row per job), summary.json, results.md (tables for
docs/BENCHMARKS.md) and accuracy_vs_params.png (accuracy against updated parameters).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path

LANGS = ("uk", "ar", "bn", "gu", "lt")
BUDGETS = (100, 300, 1000, 3000)
TARGET_BUDGET = 1000  # the target: SWR with <= 1,000 body parameters + the head

_WORKER: dict = {}


def _job_key(job: dict) -> str:
    b = "none" if job["budget"] is None else str(job["budget"])
    return f"{job['lang']}__{job['method']}__{b}__s{job['seed']}"


def _worker_init(base_path: str, config: str, epochs: int | None) -> None:
    import torch

    torch.set_num_threads(1)
    from polykws.training.checkpoint import load_model

    _WORKER.update(base=load_model(base_path), config=config, epochs=epochs, splits={})


def _splits(lang: str):
    from polykws.pipeline.tasks import load_language_splits

    if lang not in _WORKER["splits"]:
        _WORKER["splits"][lang] = load_language_splits(lang, _WORKER["base"].frontend, config=_WORKER["config"])
    return _WORKER["splits"][lang]


def _run_job(job: dict) -> dict:
    from polykws.training.adapt import TransferConfig, adapt, get_method, method_config
    from polykws.core import PolykwsError

    splits = _splits(job["lang"])
    spec = get_method(job["method"])
    row = {**job, "status": "ok", "test_clips": len(splits["test"]), "train_clips": len(splits["train"])}
    tcfg = TransferConfig(seed=job["seed"], num_threads=1, **({"epochs": _WORKER["epochs"]} if _WORKER["epochs"] else {}))
    try:
        mcfg = method_config(job["method"], budget_params=job["budget"] if spec.budgeted else None)
        res = adapt(_WORKER["base"].model, splits, mcfg, tcfg)
    except PolykwsError as exc:
        if "no site fits" in str(exc):
            return {**row, "status": "infeasible", "reason": str(exc)}
        raise
    row.update(
        body_params=res.cost.body,
        head_params=res.cost.head,
        total_params=res.cost.total,
        val_acc=res.val_acc,
        test_acc=res.test_acc,
        wall_s=res.wall_s,
        selection=json.dumps(res.details.get("selection")) if "selection" in res.details else "",
        config=res.details.get("config", ""),
    )
    return row


def run_jobs(args, jobs: list[dict], rows_dir: Path) -> None:
    from polykws.core import atomic_write_json

    todo = [j for j in jobs if not (rows_dir / f"{_job_key(j)}.json").is_file()]
    print(f"{len(jobs)} jobs, {len(jobs) - len(todo)} already done, {len(todo)} to run with {args.workers} workers", flush=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_worker_init, initargs=(str(args.base), args.config, args.epochs)) as pool:
        futures = {pool.submit(_run_job, j): j for j in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            row = fut.result()
            atomic_write_json(rows_dir / f"{_job_key(row)}.json", row)
            acc = f"test {100 * row['test_acc']:.1f}% ({row['total_params']} params, {row['wall_s']:.0f} s)" if row["status"] == "ok" else row["status"]
            print(f"[{i}/{len(todo)} {time.perf_counter() - t0:.0f}s] {_job_key(row)}: {acc}", flush=True)


def make_jobs(args, methods: list[str]) -> list[dict]:
    from polykws.training.adapt import get_method

    jobs = []
    for seed in args.seeds:  # seed-major: a partial run already covers every method
        for lang in args.langs:
            for method in methods:
                budgets = args.budgets if get_method(method).budgeted else [None]
                jobs += [{"lang": lang, "method": method, "budget": b, "seed": seed} for b in budgets]
    # The jobs the target compares run first (all languages and seeds), then the rest.
    first = {("swr", TARGET_BUDGET), ("full_ft", None), ("head_only", None)}
    return sorted(jobs, key=lambda j: (j["method"], j["budget"]) not in first)


# ---------------------------------------------------------------------------------------------
# Aggregation


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(rows: list[dict], langs: list[str]) -> dict:
    """{(method, budget): {lang: {...}, "mean": ...}} over seeds; mean over languages per seed."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        if r["status"] != "ok":
            continue
        g = groups.setdefault((r["method"], r["budget"]), {})
        g.setdefault(r["lang"], []).append(r)
    out = {}
    for (method, budget), by_lang in groups.items():
        entry = {}
        for lang, rs in by_lang.items():
            m, sd = _mean_sd([r["test_acc"] for r in rs])
            entry[lang] = {
                "test_mean": m,
                "test_sd": sd,
                "val_mean": statistics.fmean(r["val_acc"] for r in rs),
                "params_mean": statistics.fmean(r["total_params"] for r in rs),
                "body_mean": statistics.fmean(r["body_params"] for r in rs),
                "seeds": len(rs),
                "wall_median_s": statistics.median(r["wall_s"] for r in rs),
            }
        if all(lang in entry for lang in langs):
            seeds = sorted(set.intersection(*[{r["seed"] for r in by_lang[lang]} for lang in langs]))
            per_seed = [statistics.fmean(next(r["test_acc"] for r in by_lang[lang] if r["seed"] == s) for lang in langs) for s in seeds]
            if per_seed:
                m, sd = _mean_sd(per_seed)
                entry["mean"] = {
                    "test_mean": m,
                    "test_sd": sd,
                    "seeds": len(per_seed),
                    "params_mean": statistics.fmean(entry[lang]["params_mean"] for lang in langs),
                    "body_mean": statistics.fmean(entry[lang]["body_mean"] for lang in langs),
                    "per_seed": per_seed,
                }
        out[(method, budget)] = entry
    return out


def target_check(agg: dict) -> dict:
    """SWR at <= 1,000 body params vs full fine-tune and head-only (means over languages, paired by seed)."""
    swr, full, head = agg.get(("swr", TARGET_BUDGET), {}), agg.get(("full_ft", None), {}), agg.get(("head_only", None), {})
    if not all("mean" in e for e in (swr, full, head)):
        return {"status": "incomplete"}
    n = min(len(swr["mean"]["per_seed"]), len(full["mean"]["per_seed"]), len(head["mean"]["per_seed"]))
    d_full = [a - b for a, b in zip(swr["mean"]["per_seed"][:n], full["mean"]["per_seed"][:n])]
    d_head = [a - b for a, b in zip(swr["mean"]["per_seed"][:n], head["mean"]["per_seed"][:n])]
    gap_full, sd_full = _mean_sd(d_full)
    gap_head, sd_head = _mean_sd(d_head)
    return {
        "status": "ok",
        "seeds": n,
        "swr_mean": swr["mean"]["test_mean"],
        "swr_params_mean": swr["mean"]["params_mean"],
        "swr_body_mean": swr["mean"]["body_mean"],
        "full_ft_mean": full["mean"]["test_mean"],
        "head_only_mean": head["mean"]["test_mean"],
        "swr_minus_full_ft": gap_full,
        "swr_minus_full_ft_sd": sd_full,
        "swr_minus_head_only": gap_head,
        "swr_minus_head_only_sd": sd_head,
        "within_1pt_of_full_ft": gap_full >= -0.01,
        "at_least_5pt_over_head_only": gap_head >= 0.05,
    }


def write_csv(rows: list[dict], path: Path) -> None:
    from polykws.core import atomic_path

    cols = ["lang", "method", "budget", "seed", "status", "body_params", "head_params", "total_params", "val_acc", "test_acc",
            "test_clips", "train_clips", "wall_s", "selection", "config", "reason"]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in sorted(rows, key=lambda r: (r["lang"], r["method"], r["budget"] or 0, r["seed"])):
                w.writerow({c: r.get(c, "") for c in cols})


def plot(agg: dict, langs: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polykws.core import atomic_path

    panels = [*langs, "mean"]
    cols = 3
    fig, axes = plt.subplots(math.ceil(len(panels) / cols), cols, figsize=(5 * cols, 3.8 * math.ceil(len(panels) / cols)), squeeze=False)
    methods = sorted({m for m, _ in agg})
    cmap = plt.get_cmap("tab20")
    style = {m: cmap(i % 20) for i, m in enumerate(methods)}
    for ax, panel in zip(axes.flat, panels):
        for method in methods:
            pts = sorted(
                (e[panel]["params_mean"], 100 * e[panel]["test_mean"], 100 * e[panel]["test_sd"])
                for (m, _), e in agg.items()
                if m == method and panel in e
            )
            if not pts:
                continue
            xs, ys, sds = zip(*pts)
            lw, ms = (2.5, 7) if method == "swr" else (1.0, 4)
            ax.errorbar(xs, ys, yerr=sds, label=method, color=style[method], marker="o", lw=lw, ms=ms, capsize=2,
                        ls="-" if len(pts) > 1 else "none")
        ax.set_xscale("log")
        ax.set_title(f"{panel} (test split)" if panel != "mean" else "mean over languages")
        ax.set_xlabel("updated parameters (body + head)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def markdown(agg: dict, langs: list[str], target: dict, meta: dict) -> str:
    def cell(e: dict | None) -> str:
        if not e:
            return "-"
        # A single seed has no spread: print no "± 0.0" that would read as a measured one.
        return f"{100 * e['test_mean']:.1f} ± {100 * e['test_sd']:.1f}" if e["seeds"] > 1 else f"{100 * e['test_mean']:.1f}"

    def seeds(e: dict) -> str:
        n = sorted({v["seeds"] for k, v in e.items() if k != "mean"})
        return str(n[0]) if len(n) == 1 else f"{n[0]}-{n[-1]}"

    keys = sorted(agg, key=lambda k: (k[0] != "swr", k[0], k[1] or 0))
    lines = [
        f"| method | budget (body) | updated params (mean, body + head) | seeds | {' | '.join(langs)} | mean over languages |",
        "|---|---|---|---|" + "---|" * len(langs) + "---|",
    ]
    for method, budget in keys:
        e = agg[(method, budget)]
        params = e.get("mean", {}).get("params_mean") or statistics.fmean(v["params_mean"] for k, v in e.items() if k != "mean")
        lines.append(
            f"| {method} | {budget if budget is not None else '-'} | {params:,.0f} | {seeds(e)} | "
            + " | ".join(cell(e.get(lang)) for lang in langs)
            + f" | {cell(e.get('mean'))} |"
        )
    out = "\n".join(lines)
    if target.get("status") == "ok":
        out += (
            f"\n\nTarget (SWR, budget {TARGET_BUDGET} body params, mean {target['swr_body_mean']:.0f} body / "
            f"{target['swr_params_mean']:.0f} total; {target['seeds']} seeds, paired): "
            f"SWR {100 * target['swr_mean']:.1f}%, full fine-tune {100 * target['full_ft_mean']:.1f}%, head-only "
            f"{100 * target['head_only_mean']:.1f}%. SWR − full FT = {100 * target['swr_minus_full_ft']:+.1f} ± "
            f"{100 * target['swr_minus_full_ft_sd']:.1f} pt (target ≥ −1: {'met' if target['within_1pt_of_full_ft'] else 'NOT met'}); "
            f"SWR − head-only = {100 * target['swr_minus_head_only']:+.1f} ± {100 * target['swr_minus_head_only_sd']:.1f} pt "
            f"(target ≥ +5: {'met' if target['at_least_5pt_over_head_only'] else 'NOT met'})."
        )
    return out


def report(out: Path, langs: list[str], meta: dict) -> dict:
    from polykws.core import atomic_write_json, atomic_write_text

    rows = [json.loads(p.read_text()) for p in sorted((out / "rows").glob("*.json"))]
    rows = [r for r in rows if r["lang"] in langs]
    write_csv(rows, out / "results.csv")
    agg = aggregate(rows, langs)
    target = target_check(agg)
    infeasible = sorted({(r["method"], r["budget"]) for r in rows if r["status"] == "infeasible"})
    summary = {
        **meta,
        "rows": len(rows),
        "infeasible": [f"{m}@{b}" for m, b in infeasible],
        "target": target,
        "results": {f"{m}@{b}": e for (m, b), e in agg.items()},
    }
    atomic_write_json(out / "summary.json", summary)
    md = markdown(agg, langs, target, meta)
    if infeasible:
        md += "\n\nInfeasible (no site of the family fits the budget): " + ", ".join(f"{m}@{b}" for m, b in infeasible) + "."
    atomic_write_text(out / "results.md", md + "\n")
    plot(agg, langs, out / "accuracy_vs_params.png")
    print(md)
    return summary


# ---------------------------------------------------------------------------------------------
# SWR timing


def time_swr(args) -> None:
    """Wall time of one SWR adaptation per language (features already cached).

    `--threads` torch threads (default 1): on this shared 2-core machine two intra-op threads
    spin against the other helpers' jobs and run several times slower than one; on an idle
    2-core machine use 2.
    """
    import torch

    from polykws.training.adapt import TransferConfig, adapt, method_config
    from polykws.training.checkpoint import load_model
    from polykws.pipeline.tasks import load_language_splits
    from polykws.core import atomic_write_json

    torch.set_num_threads(args.threads)
    base = load_model(args.base)
    results = {}
    for lang in args.langs:
        splits = load_language_splits(lang, base.frontend, config=args.config)  # cached features
        walls, loads = [], []
        for rep in range(args.repeats):
            loads.append(os.getloadavg()[0])
            cpu0 = time.process_time()
            res = adapt(base.model, splits, method_config("swr", budget_params=TARGET_BUDGET),
                        TransferConfig(seed=rep, num_threads=args.threads, **({"epochs": args.epochs} if args.epochs else {})))
            walls.append(res.wall_s)
            cpu = time.process_time() - cpu0
        results[lang] = {"wall_median_s": statistics.median(walls), "walls_s": walls, "cpu_s_last": cpu,
                         "load_avg_1min": loads, "train_clips": len(splits["train"])}
        print(f"{lang}: SWR@{TARGET_BUDGET} median {statistics.median(walls):.1f} s wall over {len(walls)} runs "
              f"(load avg {statistics.fmean(loads):.1f}; {len(splits['train'])} train clips)", flush=True)
    atomic_write_json(args.out / "swr_timing.json", {"threads": args.threads, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                                      "machine": f"{platform.machine()}, {os.cpu_count()} cores", "results": results})


def main() -> None:
    from polykws.training.adapt import list_methods

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="the shipped base model file")
    ap.add_argument("--config", default="configs/shared-real.yaml", help="pipeline config with the corpus and tasks")
    ap.add_argument("--langs", default=",".join(LANGS))
    ap.add_argument("--methods", default="all", help="comma-separated, or 'all' (every registered method)")
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=None, help="method epochs (default: TransferConfig's)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench_transfer"))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--time-swr", action="store_true", help="only time SWR (budget 1000) per language")
    ap.add_argument("--repeats", type=int, default=3, help="--time-swr repetitions per language")
    ap.add_argument("--threads", type=int, default=1, help="--time-swr torch threads")
    args = ap.parse_args()
    args.langs = [s for s in args.langs.split(",") if s]
    args.budgets = [int(b) for b in args.budgets.split(",") if b]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    methods = list_methods() if args.methods == "all" else [m for m in args.methods.split(",") if m]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.time_swr:
        time_swr(args)
        return
    from polykws.training.checkpoint import load_model
    from polykws.core import run_context

    base = load_model(args.base)
    meta = {
        **run_context(),
        "base": str(args.base),
        "base_sha256": base.sha256,
        "base_meta": base.meta,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "budgets": args.budgets,
        "methods": methods,
    }
    rows_dir = args.out / "rows"
    rows_dir.mkdir(exist_ok=True)
    stamp = args.out / "base_sha256.txt"
    if stamp.is_file() and stamp.read_text().strip() != base.sha256:
        raise SystemExit(f"{args.out} holds rows for another base ({stamp.read_text().strip()[:12]}); use another --out")
    stamp.write_text(base.sha256 + "\n")
    if not args.report_only:
        run_jobs(args, make_jobs(args, methods), rows_dir)
    report(args.out, args.langs, meta)


if __name__ == "__main__":
    main()
