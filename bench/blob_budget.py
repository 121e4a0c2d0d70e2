"""Blob bytes vs int8 accuracy: every transfer method x budget, exported against the shipped base.

    nice -n 10 .venv/bin/python bench/blob_budget.py --base artifacts/base/ds_cnn_s_mfcc.pt --seeds 0,1,2 --stop-after-min 48
    .venv/bin/python bench/blob_budget.py --base B --langs lt --only head_only,swr@1000     # a few rows
    .venv/bin/python bench/blob_budget.py --base B --seeds 0,1,2 --report-only               # re-aggregate finished rows
    nice -n 10 .venv/bin/python bench/blob_budget.py --base B --swr-budget-bytes 1000,3000    # validate SWR's byte estimate

Issue 5's size target is "each language blob <= 5 % of the base .tflite at the SWR budget that
meets the transfer accuracy target". Parameter budgets and blob bytes are different currencies: a
blob stores changed int8 *bytes* of the base flatbuffer, so this benchmark measures, per method,
family and budget, what a language actually costs in flash and what it scores under TFLM.

Per row (language x method x budget x seed; default seed 0): adapt the shipped base with the method registry
(`polykws.training.adapt.adapt`, the same harness and splits bench/transfer.py uses: tasks of
configs/shared-real.yaml on ../shared, speaker-disjoint), merge, export against the base int8
model with `polykws.export.api.export_language(scales="auto")` (the pipeline's default), check
base + blob == the language .tflite, score float (torch) and int8 (host TFLM) on the test split,
and split the blob's bytes by role with `polykws.export.breakdown.blob_breakdown`.

The base is quantized once (`export_base`, calibrated on its own training features, head slots =
max label count) and cached under <out>/base/. Each finished row is written atomically to
<out>/rows/, so an interrupted run resumes. `--stop-after-min` stops *starting* rows after that
many minutes; the report names the rows that did not run. One torch / TF thread (shared machine).
Outputs: results.csv, results.md (tables for docs/BENCHMARKS.md), summary.json and
acc_vs_blob_bytes.png (int8 TFLM accuracy vs blob bytes, a vertical line at 5 % of the base).
"""

from __future__ import annotations

import os

# One thread for TF (onnx2tf / converter) and BLAS as well as torch: the machine is shared.
for _var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402


LANGS = ("uk", "lt")
BUDGETS = (100, 300, 1000, 3000)
FAMILIES = ("scale", "bias", "lowrank", "dense", "diff_prune", "recast")
BASELINES = ("head_only", "bias_only", "bn_only", "full_ft")
# SWR restricted to the families whose deltas change few int8 bytes (no whole-tensor rewrites).
BYTE_FRIENDLY_FAMILIES = ("scale", "bias", "diff_prune")
BYTE_FRIENDLY_BUDGETS = (100, 300, 1000)  # 100: the only SWR budget whose blob could fit 5 % of the base
TARGET_PCT = 5.0  # issue 5: blob <= 5 % of the base .tflite
# Most informative first, so a partial run already answers the question; then the rest.
PRIORITY = [("head_only", None), ("swr", 1000), ("swr_bytes", 1000), ("diff_prune", 1000), ("bias", 1000), ("scale", 1000),
            ("full_ft", None), ("lowrank", 1000), ("recast", 1000), ("dense", 1000), ("swr_bytes", 300), ("swr", 300), ("swr_bytes", 100),
            ("bias_only", None), ("bn_only", None)]


def job_key(job: dict) -> str:
    b = "none" if job["budget"] is None else str(job["budget"])
    return f"{job['lang']}__{job['variant']}__{b}__s{job['seed']}"


def make_jobs(langs: list[str], seeds: list[int], budgets: list[int]) -> list[dict]:
    """(variant, budget) cells in priority order, each for every language (languages interleaved);
    seed-major, so a partial run covers every cell at the first seed."""
    cells = [(m, None) for m in BASELINES]
    cells += [("swr", b) for b in budgets]
    cells += [(f, b) for f in FAMILIES for b in budgets]
    cells += [("swr_bytes", b) for b in BYTE_FRIENDLY_BUDGETS]
    rank = {c: i for i, c in enumerate(PRIORITY)}
    cells.sort(key=lambda c: (rank.get(c, len(PRIORITY)), c[1] or 0))  # stable: the rest by budget
    return [{"lang": lang, "variant": v, "budget": b, "seed": seed} for seed in seeds for v, b in cells for lang in langs]


def method_cfg_of(job: dict):
    """The library method config of a row. `swr_bytes` is SWR with its options restricted to
    BYTE_FRIENDLY_FAMILIES through SWRConfig.with_families (the CLI's --families path)."""
    from polykws.training.adapt import get_method, method_config

    if job["variant"].startswith("swr_blob"):  # --swr-budget-bytes: SWR under SWRConfig.budget_bytes
        _, _, fams = job["variant"].partition("-")  # swr_blob-scale+bias: --swr-families
        if fams:
            from polykws.training.swr import SWRConfig

            return method_config("swr", budget_bytes=job["budget"], options=SWRConfig.with_families(fams.split("+")).options)
        return method_config("swr", budget_bytes=job["budget"])
    if job["variant"] == "swr_bytes":
        from polykws.training.swr import SWRConfig

        return method_config("swr", budget_params=job["budget"], options=SWRConfig.with_families(list(BYTE_FRIENDLY_FAMILIES)).options)
    spec = get_method(job["variant"])
    return method_config(job["variant"], budget_params=job["budget"] if spec.budgeted else None)


# ---------------------------------------------------------------------------------------------
# The base, exported once


def export_shipped_base(base_loaded, out: Path, head_slots: int, calibration: int):
    """The base int8 model (cached in <out>/base/ for resumed runs; rebuilt if the base changed)."""
    from polykws.export.api import ExportedModel, evaluate_export, export_base
    from polykws.training.config import DataConfig, from_dict
    from polykws.training.data import build_base_splits

    folder = out / "base"
    if (folder / "base.json").is_file():
        ex = ExportedModel.load(folder, "base")
        if ex.meta.get("base_state_sha256") == base_loaded.sha256 and ex.head_slots == head_slots:
            return ex
    train_cfg = base_loaded.meta.get("train_config") or {}
    if not train_cfg.get("data"):
        raise SystemExit("the base carries no train_config.data: cannot rebuild its calibration split")
    # The base's own task and speaker-disjoint splits, rebuilt from the config it was trained with.
    bs = build_base_splits(from_dict(DataConfig, train_cfg["data"]), base_loaded.frontend, seed=int(train_cfg.get("fit", {}).get("seed", 0)))
    if tuple(bs["train"].labels) != tuple(base_loaded.labels):
        raise SystemExit("the base's rebuilt task labels differ from its checkpoint's labels")
    t = time.perf_counter()
    ex = export_base(base_loaded.model, base_loaded.frontend, base_loaded.labels, bs["train"].x, lang="base", parity_x=bs["test"].x,
                     head_slots=head_slots, max_calibration=calibration,
                     meta={"model_name": base_loaded.model_name, "base_state_sha256": base_loaded.sha256})
    ex.meta["export_s"] = time.perf_counter() - t
    evaluate_export(ex, base_loaded.model, bs["test"].x, bs["test"].y)
    ex.save(folder)
    return ex


# ---------------------------------------------------------------------------------------------
# One row


def _roles(bd: dict) -> dict:
    """Blob bytes by role: fixed (header, labels, metadata, CRC), per-record overhead, head, body."""
    head = sum(v for k, v in bd["patched_bytes_by_field"].items() if k.startswith("head "))
    body = bd["patched_bytes"] - head
    changed_head = sum(v for k, v in bd["changed_bytes_by_field"].items() if k.startswith("head "))
    return {
        "fixed_bytes": bd["fixed_bytes"],
        "records": bd["records"],
        "stream_bytes": bd["stream_bytes"],
        "head_patched_bytes": head,
        "body_patched_bytes": body,
        "head_changed_bytes": changed_head,
        "body_changed_bytes": sum(bd["changed_bytes_by_field"].values()) - changed_head,
    }


def run_row(job: dict, base_loaded, base_ex, splits: dict, args) -> dict:
    from polykws.export.api import evaluate_export, export_language
    from polykws.export.blob import apply_blob
    from polykws.export.breakdown import blob_breakdown
    from polykws.training.adapt import TrainConfig, adapt
    from polykws.training.checkpoint import state_sha256
    from polykws.core import PolykwsError

    row = {**job, "status": "ok", "test_clips": len(splits["test"]), "train_clips": len(splits["train"])}
    tcfg = TrainConfig(seed=job["seed"], num_threads=1, **({"epochs": args.epochs} if args.epochs else {}))
    mcfg = method_cfg_of(job)
    try:
        res = adapt(base_loaded.model, splits, mcfg, tcfg)
    except PolykwsError as exc:
        if "no site fits" in str(exc):  # a family that cannot use this budget at all
            return {**row, "status": "infeasible", "reason": str(exc)}
        raise
    test = splits["test"]
    t = time.perf_counter()
    # The blob metadata the pipeline's export_language_stage writes (method, budget, seed, model
    # hash): its size is part of every blob, so the bytes measured here are the shipped ones.
    ex = export_language(base_ex, res.model, res.labels, splits["train"].x, lang=job["lang"], scales="auto", parity_x=test.x,
                         max_calibration=args.calibration,
                         meta={"method": res.method, "seed": job["seed"], "model_sha256": state_sha256(res.model),
                               **({"budget_params": None, "budget_bytes": job["budget"]} if job["variant"].startswith("swr_blob") else {"budget_params": job["budget"]})})
    export_s = time.perf_counter() - t
    if apply_blob(base_ex.tflite, ex.blob) != ex.tflite:
        raise PolykwsError(f"{job_key(job)}: base + blob is not byte-identical to the exported model")
    ev = evaluate_export(ex, res.model, test.x, test.y)
    bd = blob_breakdown(base_ex.tflite, ex.blob)
    rq = ex.meta["requant"]
    row.update(
        method=res.method,
        body_params=res.cost.body,
        head_params=res.cost.head,
        total_params=res.cost.total,
        val_acc=res.val_acc,
        adapt_test_acc=res.test_acc,
        float_acc=ev["float_acc"],
        int8_acc=ev["int8_acc"],
        float_int8_agreement=ev["float_int8_agreement"],
        tflm_vs_ref_mismatched_samples=ev["tflm_vs_ref_mismatched_samples"],
        blob_bytes=len(ex.blob),
        base_tflite_bytes=len(base_ex.tflite),
        blob_pct_of_base=100.0 * len(ex.blob) / len(base_ex.tflite),
        changed_weight_bytes=rq.get("changed_weight_bytes"),
        channels_refit=rq.get("channels_refit"),
        clamped_weights=rq.get("clamped_weights"),
        adapt_wall_s=res.wall_s,
        export_s=export_s,
        selection=json.dumps(res.details.get("selection")) if "selection" in res.details else "",
        delta_config=res.details.get("config", ""),
        estimated_body_blob_bytes=res.details.get("estimated_body_blob_bytes"),
        breakdown=bd,
        **_roles(bd),
    )
    return row


def run_jobs(args, jobs: list[dict], rows_dir: Path, base_loaded, base_ex, splits: dict) -> list[dict]:
    from polykws.core import atomic_write_json

    todo = [j for j in jobs if not (rows_dir / f"{job_key(j)}.json").is_file()]
    print(f"{len(jobs)} rows, {len(jobs) - len(todo)} already done, {len(todo)} to run", flush=True)
    t0 = time.perf_counter()
    not_started = []
    for i, job in enumerate(todo, 1):
        if args.stop_after_min is not None and time.perf_counter() - t0 > 60 * args.stop_after_min:
            not_started = todo[i - 1:]
            print(f"stopping after {args.stop_after_min} min: {len(not_started)} rows not started", flush=True)
            break
        row = run_row(job, base_loaded, base_ex, splits[job["lang"]], args)
        atomic_write_json(rows_dir / f"{job_key(job)}.json", row)
        msg = (f"int8 {100 * row['int8_acc']:.1f}% (float {100 * row['float_acc']:.1f}%), blob {row['blob_bytes']} B "
               f"({row['blob_pct_of_base']:.2f}%), body {row['body_params']} params, adapt {row['adapt_wall_s']:.0f} s, export {row['export_s']:.0f} s"
               if row["status"] == "ok" else row["status"])
        print(f"[{i}/{len(todo)} {time.perf_counter() - t0:.0f}s] {job_key(job)}: {msg}", flush=True)
    return not_started


# ---------------------------------------------------------------------------------------------
# Report


def label_of(variant: str, budget) -> str:
    name = "swr[scale,bias,diff_prune]" if variant == "swr_bytes" else variant
    return name if budget is None else f"{name}@{budget}"


CSV_COLS = ["lang", "variant", "budget", "seed", "status", "body_params", "head_params", "total_params", "float_acc", "int8_acc",
            "float_int8_agreement", "blob_bytes", "base_tflite_bytes", "blob_pct_of_base", "fixed_bytes", "records",
            "stream_bytes", "head_patched_bytes", "body_patched_bytes", "head_changed_bytes", "body_changed_bytes",
            "changed_weight_bytes", "channels_refit", "clamped_weights", "val_acc", "adapt_test_acc", "tflm_vs_ref_mismatched_samples",
            "test_clips", "train_clips", "adapt_wall_s", "export_s", "selection", "delta_config", "reason"]


def write_csv(rows: list[dict], path: Path) -> None:
    from polykws.core import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLS, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({c: r.get(c, "") for c in CSV_COLS})


def body_bytes_per_param(r: dict, head_only: dict | None) -> float | None:
    """Blob bytes beyond the same language's (and seed's) head-only blob, per updated body parameter."""
    if not head_only or not r.get("body_params") or r["status"] != "ok":
        return None
    return (r["blob_bytes"] - head_only["blob_bytes"]) / r["body_params"]


def aggregate(rows: list[dict]) -> dict:
    """{(lang, variant, budget): means over seeds of accuracy, medians of bytes}, ok rows only."""
    head = {(r["lang"], r["seed"]): r for r in rows if r["variant"] == "head_only" and r["status"] == "ok"}
    groups: dict = defaultdict(list)
    for r in rows:
        if r["status"] == "ok":
            groups[(r["lang"], r["variant"], r["budget"])].append(r)
    out = {}
    for key, rs in groups.items():
        bpp = [v for v in (body_bytes_per_param(r, head.get((r["lang"], r["seed"]))) for r in rs) if v is not None]
        out[key] = {
            "seeds": len(rs),
            "int8_mean": statistics.fmean(r["int8_acc"] for r in rs),
            "int8_sd": statistics.stdev(r["int8_acc"] for r in rs) if len(rs) > 1 else 0.0,
            "float_mean": statistics.fmean(r["float_acc"] for r in rs),
            "blob_median": statistics.median(r["blob_bytes"] for r in rs),
            "blob_min": min(r["blob_bytes"] for r in rs),
            "blob_max": max(r["blob_bytes"] for r in rs),
            "pct_median": statistics.median(r["blob_pct_of_base"] for r in rs),
            "body_median": statistics.median(r["body_params"] for r in rs),
            "bpp_median": statistics.median(bpp) if bpp else None,
            "test_clips": rs[0]["test_clips"],
            **{f"{k}_median": statistics.median(r[k] for r in rs)
               for k in ("fixed_bytes", "records", "stream_bytes", "head_patched_bytes", "body_patched_bytes", "body_changed_bytes")},
        }
    return out


def markdown(rows: list[dict], jobs: list[dict], langs: list[str], base_bytes: int, meta: dict) -> str:
    agg = aggregate(rows)
    status = {(r["lang"], r["variant"], r["budget"]): r["status"] for r in rows}
    cells = list(dict.fromkeys((j["variant"], j["budget"]) for j in jobs))
    limit = TARGET_PCT / 100 * base_bytes
    seeds = sorted({j["seed"] for j in jobs})
    acc_hdr = "int8 (float) %" if len(seeds) == 1 else f"int8 mean ± sd (float) %, {len(seeds)} seeds"
    head = "| method | " + " | ".join(f"{lg}: body params | {lg}: blob B (% base) | {lg}: B / body param | {lg}: {acc_hdr}" for lg in langs) + " |"
    lines = [head, "|---|" + "---|---|---|---|" * len(langs)]
    for v, b in cells:
        parts = []
        for lg in langs:
            a = agg.get((lg, v, b))
            if a is None:
                st = status.get((lg, v, b))
                parts += [st or "not run", "-", "-", "-"]
                continue
            ok = "**" if a["blob_max"] <= limit else ""
            rng = "" if a["blob_min"] == a["blob_max"] else f" [{a['blob_min']:,}-{a['blob_max']:,}]"
            acc = f"{100 * a['int8_mean']:.1f}" + (f" ± {100 * a['int8_sd']:.1f}" if len(seeds) > 1 else "") + f" ({100 * a['float_mean']:.1f})"
            if a["seeds"] < len(seeds):
                acc += f" [{a['seeds']} seed{'s' if a['seeds'] > 1 else ''}]"
            parts += [f"{a['body_median']:,.0f}", f"{ok}{a['blob_median']:,.0f} ({a['pct_median']:.2f}%){ok}{rng}",
                      "-" if a["bpp_median"] is None else f"{a['bpp_median']:.1f}", acc]
        lines.append(f"| {label_of(v, b)} | " + " | ".join(parts) + " |")
    out = "\n".join(lines)
    out += (f"\n\nBold: blob <= {TARGET_PCT:.0f} % of the base .tflite ({base_bytes:,} B -> {limit:,.0f} B) at every seed. Blob bytes and "
            "params are medians over seeds ([min-max] where they differ). B / body param = (blob - the same language's head-only "
            "blob) / updated body parameters.")
    # Where the bytes go, medians over seeds.
    lines = ["", "", "| method | lang | blob B | fixed (header+digest+labels+CRC) | records | stream | head patched | body patched | body changed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for v, b in cells:
        for lg in langs:
            a = agg.get((lg, v, b))
            if a is None:
                continue
            lines.append(f"| {label_of(v, b)} | {lg} | {a['blob_median']:,.0f} | {a['fixed_bytes_median']:,.0f} | {a['records_median']:,.0f} | "
                         f"{a['stream_bytes_median']:,.0f} | {a['head_patched_bytes_median']:,.0f} | {a['body_patched_bytes_median']:,.0f} | "
                         f"{a['body_changed_bytes_median']:,.0f} |")
    return out + "\n".join(lines)


def plot(rows: list[dict], langs: list[str], base_bytes: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polykws.core import atomic_path

    agg = aggregate(rows)
    group_of = {k: label_of(k[1], None) for k in agg}
    groups = sorted(set(group_of.values()))
    cmap = plt.get_cmap("tab20")
    color = {g: cmap(i % 20) for i, g in enumerate(groups)}
    seeds = len({r["seed"] for r in rows})
    fig, axes = plt.subplots(1, len(langs), figsize=(6.5 * len(langs), 4.8), squeeze=False)
    for ax, lg in zip(axes.flat, langs):
        for g in groups:
            pts = sorted((a["blob_median"], 100 * a["int8_mean"], 100 * a["int8_sd"], k[2]) for k, a in agg.items() if k[0] == lg and group_of[k] == g)
            if not pts:
                continue
            xs, ys, sds, bs = zip(*pts)
            ax.errorbar(xs, ys, yerr=sds if seeds > 1 else None, marker="o" if len(pts) > 1 else "s", ls="-" if len(pts) > 1 else "none",
                        color=color[g], label=g, lw=2.2 if g.startswith("swr") else 1.0, capsize=2, ms=5)
            for x, y, b in zip(xs, ys, bs):
                if b is not None:
                    ax.annotate(str(b), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.axvline(TARGET_PCT / 100 * base_bytes, color="k", ls="--", lw=1)
        ax.text(TARGET_PCT / 100 * base_bytes, ax.get_ylim()[0], f" {TARGET_PCT:.0f}% of base", fontsize=7, va="bottom")
        ax.set_xscale("log")
        ax.set_xlabel("blob bytes (log; median over seeds)")
        ax.set_ylabel(f"int8 TFLM test top-1 (%){', mean ± sd over seeds' if seeds > 1 else ''}")
        n = next((a["test_clips"] for k, a in agg.items() if k[0] == lg), 0)
        ax.set_title(f"{lg} ({n} test clips; point labels = body budget)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def report(out: Path, jobs: list[dict], langs: list[str], base_ex, meta: dict) -> None:
    from polykws.core import atomic_write_json, atomic_write_text

    keys = {job_key(j) for j in jobs}
    rows = [json.loads(p.read_text()) for p in sorted((out / "rows").glob("*.json")) if p.stem in keys]
    order = {job_key(j): i for i, j in enumerate(jobs)}
    rows.sort(key=lambda r: order[job_key(r)])
    base_bytes = len(base_ex.tflite)
    limit = TARGET_PCT / 100 * base_bytes
    write_csv(rows, out / "results.csv")
    done = {job_key(r) for r in rows}
    missing = [job_key(j) for j in jobs if job_key(j) not in done]
    agg = aggregate(rows)
    summary = {
        **meta,
        "base_tflite_bytes": base_bytes,
        "target_bytes": limit,
        "base_eval": base_ex.meta.get("eval"),
        "rows": len(rows),
        "missing": missing,
        "infeasible": [job_key(r) for r in rows if r["status"] == "infeasible"],
        "meeting_target": sorted({f"{k[0]}:{label_of(k[1], k[2])}" for k, a in agg.items() if a["blob_max"] <= limit}),
        "cells": {f"{k[0]}:{label_of(k[1], k[2])}": a for k, a in agg.items()},
    }
    atomic_write_json(out / "summary.json", summary)
    md = markdown(rows, jobs, langs, base_bytes, meta)
    be = base_ex.meta.get("eval") or {}
    md = (f"Base: {meta['base']} (sha256 {meta['base_sha256'][:12]}), int8 .tflite {base_bytes:,} B, head slots {base_ex.head_slots}"
          + (f", base-task int8 TFLM {100 * be['int8_acc']:.1f}% (float {100 * be['float_acc']:.1f}%, {be['test_clips']} clips)" if be else "")
          + f". Seeds {meta['seeds']}; export scales {meta['scales']}.\n\n" + md)
    if missing:
        md += "\n\nNot run: " + ", ".join(missing) + "."
    atomic_write_text(out / "results.md", md + "\n")
    plot(rows, langs, base_bytes, out / "acc_vs_blob_bytes.png")
    print(md)


def swr_budget_bytes_report(out: Path, langs: list[str], seeds: list[int], budgets: list[int], meta: dict, variant: str = "swr_blob") -> None:
    """--swr-budget-bytes: SWR's estimated body blob bytes against the exporter's, per row.

    Actual body bytes = blob - the same language's and seed's head-only blob, with the difference
    in metadata size taken out (the two blobs' JSON metadata differ in length)."""
    from polykws.core import atomic_write_json, atomic_write_text

    rows = []
    for lg in langs:
        for seed in seeds:
            ho = json.loads((out / "rows" / f"{lg}__head_only__none__s{seed}.json").read_text())
            for b in budgets:
                r = json.loads((out / "rows" / f"{lg}__{variant}__{b}__s{seed}.json").read_text())
                diff = r["blob_bytes"] - ho["blob_bytes"]
                actual = diff  # metadata is referenced by hash: both blobs carry the same fixed fields
                est = r["estimated_body_blob_bytes"]
                rows.append({"lang": lg, "seed": seed, "budget_bytes": b, "estimated_body_bytes": est, "blob_bytes": r["blob_bytes"],
                             "head_only_blob_bytes": ho["blob_bytes"], "blob_minus_head_only": diff, "actual_body_bytes": actual,
                             "estimate_over_actual": est / actual if actual > 0 else None, "body_params": r["body_params"],
                             "int8_acc": r["int8_acc"], "float_acc": r["float_acc"], "head_only_int8_acc": ho["int8_acc"],
                             "selection": r["selection"]})
    lines = ["| lang | seed | budget B | selection | body params | estimated body B | blob B | blob - head-only B | actual body B (meta-corrected) "
             "| estimate / actual | int8 % (float) | head-only int8 % |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "-" if r["estimate_over_actual"] is None else f"{r['estimate_over_actual']:.2f}"
        lines.append(f"| {r['lang']} | {r['seed']} | {r['budget_bytes']:,} | {r['selection']} | {r['body_params']:,} | {r['estimated_body_bytes']:,} | "
                     f"{r['blob_bytes']:,} | {r['blob_minus_head_only']:,} | {r['actual_body_bytes']:,} | {ratio} | "
                     f"{100 * r['int8_acc']:.1f} ({100 * r['float_acc']:.1f}) | {100 * r['head_only_int8_acc']:.1f} |")
    md = "\n".join(lines)
    atomic_write_json(out / f"{variant}.json", {**meta, "rows": rows})
    atomic_write_text(out / f"{variant}.md", md + "\n")
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="the shipped base model file")
    ap.add_argument("--config", default="configs/shared-real.yaml", help="pipeline config with the corpus and tasks")
    ap.add_argument("--langs", default=",".join(LANGS))
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    ap.add_argument("--seeds", default="0", help="comma-separated; the report gives the mean over seeds")
    ap.add_argument("--epochs", type=int, default=None, help="method epochs (default: TrainConfig's)")
    ap.add_argument("--calibration", type=int, default=300, help="calibration samples (configs/shared-real.yaml export.calibration_samples)")
    ap.add_argument("--only", default=None, help="comma-separated cells, e.g. head_only,swr@1000,swr_bytes@300")
    ap.add_argument("--stop-after-min", type=float, default=None, help="start no new row after this many minutes")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_blob"))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--swr-budget-bytes", default=None,
                    help="comma-separated byte budgets: run only head-only and SWR with SWRConfig.budget_bytes, and write "
                         "swr_blob.md/json (estimated vs exported body bytes) instead of the main report")
    ap.add_argument("--swr-families", default=None, help="with --swr-budget-bytes: restrict SWR's options to these families "
                    "(SWRConfig.with_families); rows and report are named swr_blob-<fam>+<fam>")
    args = ap.parse_args()
    langs = [s for s in args.langs.split(",") if s]
    budgets = [int(b) for b in args.budgets.split(",") if b]

    import torch

    torch.set_num_threads(1)
    from polykws.training.checkpoint import load_model
    from polykws.training.cli_adapt import load_language_splits
    from polykws.core import run_context

    seeds = [int(s) for s in args.seeds.split(",") if s]
    jobs = make_jobs(langs, seeds, budgets)
    byte_budgets = [int(b) for b in args.swr_budget_bytes.split(",") if b] if args.swr_budget_bytes else []
    blob_variant = "swr_blob" + ("-" + "+".join(f for f in args.swr_families.split(",") if f) if args.swr_families else "")
    if byte_budgets:
        jobs = [{"lang": lg, "variant": v, "budget": b, "seed": s} for s in seeds
                for v, b in [("head_only", None)] + [(blob_variant, b) for b in byte_budgets] for lg in langs]
    if args.only:
        want = {c.strip() for c in args.only.split(",") if c.strip()}
        jobs = [j for j in jobs if (j["variant"] if j["budget"] is None else f"{j['variant']}@{j['budget']}") in want]
    base_loaded = load_model(args.base)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = args.out / "base_sha256.txt"
    if stamp.is_file() and stamp.read_text().strip() != base_loaded.sha256:
        raise SystemExit(f"{args.out} holds rows for another base ({stamp.read_text().strip()[:12]}); use another --out")
    stamp.write_text(base_loaded.sha256 + "\n")
    # Cached features: the same splits bench/transfer.py and `polykws adapt` use.
    splits = {lg: load_language_splits(lg, base_loaded.frontend, config=args.config) for lg in langs}
    # Head slots as the pipeline sets them: the base's label count or the largest language's.
    head_slots = max([len(base_loaded.labels)] + [len(s["train"].labels) for s in splits.values()])
    base_ex = export_shipped_base(base_loaded, args.out, head_slots, args.calibration)
    meta = {
        **run_context(),
        "base": str(args.base),
        "base_sha256": base_loaded.sha256,
        "scales": "auto",
        "seeds": seeds,
        "epochs": args.epochs,
    }
    rows_dir = args.out / "rows"
    rows_dir.mkdir(exist_ok=True)
    if not args.report_only:
        run_jobs(args, jobs, rows_dir, base_loaded, base_ex, splits)
    if byte_budgets:
        swr_budget_bytes_report(args.out, langs, seeds, byte_budgets, meta, blob_variant)
        return
    report(args.out, jobs, langs, base_ex, meta)


if __name__ == "__main__":
    main()
