"""Export benchmark: per language, float accuracy vs int8 TFLM accuracy, .tflite bytes, blob bytes
(and % of the base), tensor arena - for each way of quantizing touched tensors.

    # models trained by the pipeline / training helpers (languages without --lang get the stand-in):
    python bench/export.py --base artifacts/base/base.pt --lang uk=path/uk.pt --lang ar=path/ar.pt ... --out runs/bench-export
    # or a self-contained run: quick base + stand-in adapted languages trained here
    python bench/export.py --quick --out runs/bench-export

Tasks and splits are those of configs/shared-real.yaml (speaker-disjoint test splits built by
polykws.datasets from ../shared). `--quick` trains the base with training.fit and adapts each
language with a stand-in transfer (new head + per-channel scale on the pointwise convs and bias
on conv0 / the depthwise convs, merged) - it exists to exercise export on realistic weights before SWR models exist, and its
rows say so. Targets (docs/BENCHMARKS.md): int8 loss <= 0.5 pt per language; blob <= 5 % of
the base .tflite at the SWR budget that meets the transfer target.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from polykws.core import atomic_write_json, atomic_write_text, repo_root, shared_dir

REPO = repo_root()


def _task_specs(config_path: Path) -> tuple[str, dict]:
    cfg = yaml.safe_load(config_path.read_text())
    return cfg["base"]["language"], cfg["data"]["tasks"]


def _features(records, lang: str, task_cfg: dict, frontend, cache: Path, noise: Path | None):
    from polykws.datasets.features import load_task_features
    from polykws.datasets.task import TaskSpec

    opts = {k: tuple(v) if isinstance(v, list) else v for k, v in task_cfg.items() if k != "keywords"}
    task = TaskSpec(lang, tuple(str(k) for k in task_cfg["keywords"]), **opts)
    return load_task_features(records, task, frontend, cache_dir=cache, noise_dir=noise, progress=False)


def _accuracy(model, x, y) -> float:
    from polykws.export.convert import torch_logits

    return float(np.mean(torch_logits(model, x).argmax(1) == y))


def _quick_base(splits, frontend, run_dir: Path, epochs: int):
    from polykws.training.config import FitConfig, OptimConfig
    from polykws.training.data import loaders_from_splits
    from polykws.training.fit import fit
    from polykws.training.models import ds_cnn_s

    from polykws.training.checkpoint import load_model

    if (run_dir / "best.pt").is_file():  # a finished quick base is reused (delete the folder to retrain)
        return load_model(run_dir / "best.pt").model
    torch.manual_seed(0)
    labels = tuple(splits["train"].labels)
    model = ds_cnn_s(num_classes=len(labels), input_shape=frontend.input_shape)
    loaders = loaders_from_splits(splits, batch_size=128, seed=0)
    cfg = FitConfig(epochs=epochs, batch_size=128, optim=OptimConfig(lr=3e-3), label_smoothing=0.05, num_threads=1, progress=False)
    fit(model, loaders, cfg, run_dir=run_dir, frontend=frontend, labels=labels)
    return load_model(run_dir / "best.pt").model


def _stand_in_adapt(base_model, splits, epochs: int, seed: int = 0):
    """New head + per-channel scale deltas on the pointwise convs and bias deltas on conv0 and the
    depthwise convs (one delta per site), trained on the language, merged."""
    from polykws.training.deltas import BiasConfig, ScaleConfig, attach

    torch.manual_seed(seed)
    n = len(splits["train"].labels)
    dm = attach(base_model, [ScaleConfig(targets=("blocks.*.pw",)), BiasConfig(targets=("conv0", "blocks.*.dw"))], head="new", num_classes=n)
    params = dm.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=5e-3, weight_decay=0.0)
    x = torch.from_numpy(splits["train"].x)[:, None]
    y = torch.from_numpy(splits["train"].y)
    g = torch.Generator().manual_seed(seed)
    best, best_acc = None, -1.0
    for _ in range(epochs):
        dm.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(dm(x[idx]), y[idx], label_smoothing=0.05).backward()
            opt.step()
        dm.eval()
        acc = _accuracy(dm, splits["val"].x, splits["val"].y)
        if acc > best_acc:
            best_acc, best = acc, {k: v.clone() for k, v in dm.state_dict().items()}
    dm.load_state_dict(best)
    merged = dm.eval().merge_and_unload().eval()
    cost = dm.cost()
    return merged, f"{cost.body} body + {cost.head} head"


def _fidelity(tflite: bytes, model, splits, num_labels: int) -> dict:
    """int8 vs float on every clip of the task (train + val + test): a label-free fidelity figure
    with 8-10x the samples of the small test splits, where one clip is 1-4 points."""
    from polykws.export.convert import torch_logits
    from polykws.export.evaluate import argmax_first, quantize_features, run_tflm

    x = np.concatenate([splits[k].x for k in ("train", "val", "test")])
    y = np.concatenate([splits[k].y for k in ("train", "val", "test")])
    fp = torch_logits(model, x).argmax(1)
    ip = argmax_first(run_tflm(tflite, quantize_features(tflite, x)), num_labels)
    return {"all_clips": int(len(y)), "agreement_all": float(np.mean(fp == ip)),
            "int8_loss_all_pt": 100 * float(np.mean(fp == y) - np.mean(ip == y))}


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", help="base model file (training.checkpoint format)")
    ap.add_argument("--lang", action="append", default=[], metavar="CODE=MODEL", help="merged language model file; repeatable")
    ap.add_argument("--quick", action="store_true", help="train a base and stand-in adapted languages here")
    ap.add_argument("--langs", nargs="*", default=["uk", "ar", "bn", "gu", "lt"], help="languages; those without --lang get the stand-in transfer")
    ap.add_argument("--config", default=str(REPO / "configs" / "shared-real.yaml"), help="tasks (data.tasks) and the base language")
    ap.add_argument("--data", default=str(shared_dir() / "data" / "kws"))
    ap.add_argument("--noise", default=str(shared_dir() / "data" / "noise" / "lt_background_noise"))
    ap.add_argument("--cache", default=None, help="feature cache folder (default <out>/cache)")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench-export"))
    ap.add_argument("--scales", nargs="+", default=["frozen", "refit", "auto"], choices=["frozen", "refit", "auto"])
    ap.add_argument("--head-variants", action="store_true", help="also measure frozen head scales / frozen head output range")
    ap.add_argument("--base-epochs", type=int, default=25)
    ap.add_argument("--adapt-epochs", type=int, default=30)
    ap.add_argument("--calibration", type=int, default=300)
    args = ap.parse_args(argv)
    if not args.quick and not args.base:
        ap.error("give --base (and --lang CODE=MODEL for real language models), or --quick")
    return args


def _all_splits(args, base_lang: str, tasks: dict, base_loaded, cache: Path) -> tuple[dict, dict]:
    """({language: model file or None}, {language: splits}), the base language's included."""
    from polykws.datasets.frontend import mfcc_frontend
    from polykws.training.data import scan_corpus_cached

    records = scan_corpus_cached(Path(args.data), val_pct=10.0, test_pct=10.0, manifest_dir=cache / "manifests")
    noise = Path(args.noise) if Path(args.noise).is_dir() else None
    # Languages given as --lang CODE=MODEL use that model; the rest of --langs get the stand-in transfer.
    given = dict(item.split("=", 1) for item in args.lang)
    langs = {code: given.get(code) for code in dict.fromkeys([*args.langs, *given])}
    splits = {code: _features(records, code, tasks[code], mfcc_frontend(), cache, noise) for code in langs}
    train_cfg = (base_loaded.meta.get("train_config") or {}) if base_loaded else {}
    if train_cfg.get("data"):
        # The base's own task and speaker-disjoint splits, rebuilt from the config it was trained with.
        from polykws.core import from_dict
        from polykws.training.config import DataConfig
        from polykws.training.data import build_base_splits

        splits[base_lang] = build_base_splits(from_dict(DataConfig, train_cfg["data"]), base_loaded.frontend, seed=int(train_cfg.get("fit", {}).get("seed", 0)))
    else:
        splits[base_lang] = _features(records, base_lang, tasks[base_lang], mfcc_frontend(), cache, noise)
    return langs, splits


def _export_base_row(args, base_lang: str, base_model, frontend, base_labels, base_note: str, bs, head_slots: int, out: Path):
    from polykws.export.api import evaluate_export, export_base

    t = time.time()
    base = export_base(base_model, frontend, base_labels, bs["train"].x, out / "export", lang="base",
                       parity_x=bs["test"].x, head_slots=head_slots, max_calibration=args.calibration, meta={"model_name": "ds_cnn_s"})
    base_export_s = time.time() - t
    ev = evaluate_export(base, base_model, bs["test"].x, bs["test"].y)
    base_fid = _fidelity(base.tflite, base_model, bs, len(base_labels))
    base.save(out / "export")
    print(f"base: {len(base.tflite)} B, float {ev['float_acc']:.4f}, int8 {ev['int8_acc']:.4f}, arena {ev['arena_bytes']}", flush=True)
    return base, {
        "lang": f"{base_lang} (base)", "model": base_note, "scales": "converter", "float_acc": ev["float_acc"], "int8_acc": ev["int8_acc"],
        "int8_loss_pt": 100 * (ev["float_acc"] - ev["int8_acc"]), "tflite_bytes": len(base.tflite), "blob_bytes": None, "blob_pct": None,
        "arena_bytes": ev["arena_bytes"], "test_clips": ev["test_clips"], "ref_mismatch": ev["tflm_vs_ref_mismatched_samples"],
        "ref_max_lsb": ev["tflm_vs_ref_max_abs_diff_lsb"], "export_s": base_export_s, **base_fid,
    }


def _language_rows(args, base, code: str, model, note: str, sp, out: Path, breakdowns: dict) -> list[dict]:
    """One row per scales variant of one language's export against the base."""
    from polykws.export.api import evaluate_export, export_language
    from polykws.export.breakdown import blob_breakdown

    variants = [(s, "refit", "refit") for s in args.scales]
    if args.head_variants:
        variants += [("auto", "frozen", "refit"), ("auto", "refit", "frozen")]
    labels = tuple(sp["train"].labels)
    rows = []
    for scales, head_scales, head_range in variants:
        t = time.time()
        ex = export_language(base, model, labels, sp["train"].x, lang=code, scales=scales,
                             head_scales=head_scales, head_range=head_range, parity_x=sp["test"].x, max_calibration=args.calibration)
        dt = time.time() - t
        ev = evaluate_export(ex, model, sp["test"].x, sp["test"].y)
        fid = _fidelity(ex.tflite, model, sp, len(labels))
        tag = scales + ("" if (head_scales, head_range) == ("refit", "refit") else f" (head scales {head_scales}, head range {head_range})")
        rq = ex.meta["requant"]
        rows.append({
            "lang": code, "model": note, "scales": tag, "float_acc": ev["float_acc"], "int8_acc": ev["int8_acc"],
            "int8_loss_pt": 100 * (ev["float_acc"] - ev["int8_acc"]), "tflite_bytes": len(ex.tflite), "blob_bytes": len(ex.blob),
            "blob_pct": 100 * len(ex.blob) / len(base.tflite), "arena_bytes": ev["arena_bytes"], "test_clips": ev["test_clips"],
            "ref_mismatch": ev["tflm_vs_ref_mismatched_samples"], "ref_max_lsb": ev["tflm_vs_ref_max_abs_diff_lsb"], "export_s": dt,
            **fid, "clamped_weights": rq["clamped_weights"], "changed_weight_bytes": rq["changed_weight_bytes"], "channels_refit": rq["channels_refit"],
        })
        if (scales, head_scales, head_range) == ("auto", "refit", "refit"):
            ex.save(out / "export")
            breakdowns[code] = blob_breakdown(base.tflite, ex.blob)
        r = rows[-1]
        print(f"{code} {tag}: float {r['float_acc']:.4f} int8 {r['int8_acc']:.4f} blob {r['blob_bytes']} B ({r['blob_pct']:.2f}%)", flush=True)
    return rows


def main(argv=None) -> int:
    from polykws.datasets.frontend import mfcc_frontend
    from polykws.training.checkpoint import load_model

    args = _parse(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else out / "cache"
    base_lang, tasks = _task_specs(Path(args.config))
    t0 = time.time()
    base_loaded = None if args.quick else load_model(args.base)
    langs, splits = _all_splits(args, base_lang, tasks, base_loaded, cache)
    print(f"features ready in {time.time() - t0:.0f} s", flush=True)
    if args.quick:
        base_model = _quick_base(splits[base_lang], mfcc_frontend(), out / "base_fit", args.base_epochs)
        frontend, base_labels = mfcc_frontend(), tuple(splits[base_lang]["train"].labels)
        base_note = f"quick base (training.fit, {args.base_epochs} epochs)"
    else:
        base_model, frontend, base_labels, base_note = base_loaded.model, base_loaded.frontend, base_loaded.labels, args.base
        if tuple(splits[base_lang]["train"].labels) != tuple(base_labels):
            print(f"error: {args.base} labels differ from its task's labels {splits[base_lang]['train'].labels}", file=sys.stderr)
            return 2
    head_slots = max([len(base_labels)] + [len(splits[c]["train"].labels) for c in langs])
    base, base_row = _export_base_row(args, base_lang, base_model, frontend, base_labels, base_note, splits[base_lang], head_slots, out)
    rows, breakdowns = [base_row], {}
    for code, path in langs.items():
        sp = splits[code]
        if path is None:
            model, cost = _stand_in_adapt(base_model, sp, args.adapt_epochs)
            note = f"stand-in: new head + scale on pw + bias on conv0/dw ({cost} params)"
        else:
            lm = load_model(path)
            model, note = lm.model, path
            if tuple(lm.labels) != tuple(sp["train"].labels):
                print(f"error: {path} labels {lm.labels} differ from the task's {tuple(sp['train'].labels)}", file=sys.stderr)
                return 2
        rows += _language_rows(args, base, code, model, note, sp, out, breakdowns)
    atomic_write_json(out / "blob_breakdown.json", breakdowns)
    _write(out, rows, args, time.time() - t0)
    return 0


def _fmt(v, spec):
    return "" if v is None else format(v, spec)


def _write(out: Path, rows: list[dict], args, total_s: float) -> None:
    atomic_write_json(out / "results.json", {"rows": rows, "argv": sys.argv[1:], "total_s": total_s})
    keys = sorted({k for r in rows for k in r})
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    lines = [
        "| lang | scales | float acc | int8 TFLM acc | int8 loss (pt) | all clips: int8 loss (pt) / float-int8 agreement | .tflite B | blob B | blob % of base | arena B | TFLM vs REF mismatched (max LSB) | test clips |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['lang']} | {r['scales']} | {100 * r['float_acc']:.2f} | {100 * r['int8_acc']:.2f} | {r['int8_loss_pt']:+.2f} | "
            f"{r['int8_loss_all_pt']:+.2f} / {100 * r['agreement_all']:.2f} ({r['all_clips']}) | "
            f"{r['tflite_bytes']} | {_fmt(r['blob_bytes'], 'd')} | {_fmt(r['blob_pct'], '.2f')} | {r['arena_bytes']} | "
            f"{r['ref_mismatch']} ({r['ref_max_lsb']}) | {r['test_clips']} |"
        )
    export_times = [r["export_s"] for r in rows[1:]]
    lines.append("")
    lines.append(f"language export time: median {statistics.median(export_times):.1f} s over {len(export_times)} exports; "
                 f"base export {rows[0]['export_s']:.1f} s; whole run {total_s / 60:.1f} min")
    table = "\n".join(lines)
    atomic_write_text(out / "table.md", table + "\n")
    print(table)


if __name__ == "__main__":
    sys.exit(main())
