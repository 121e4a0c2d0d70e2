"""Base-model benchmark: train the pretraining recipes, pick the base by transfer accuracy, ship it.

    nice -n 10 .venv/bin/python bench/base.py                      # everything (about 1-2 h on 2 shared cores)
    .venv/bin/python bench/base.py --recipes en --epochs 3         # a quick look

Recipes (configs/base_*.yaml; same model, frontend and fit settings, only the data differ):
  en          (a) English real recordings in ../shared (FSDD, GSC subsets, Picovoice wake words)
  en_tts      (b) (a) + the espeak-ng corpus: 8 languages (none a target) x 20 words x 100 voices
  pooled_loo  (c) (a) + the *train* splits of the other target languages, leaving the scored
                  target out: one base per target language (5 bases), each scored on its target only
  en_tts_pooled_loo  (b) and (c) together, also leave-one-out

Transfer probe ("frozen base + new head", i.e. head-only transfer): the base is frozen, each
target's clips go through `model.features` once, and a new linear head is fitted to the
target's train split by L-BFGS (full batch, fixed L2 1e-3, 500 iterations) - the best linear
head this frozen base admits, with no per-probe tuning. Target tasks match
configs/shared-real.yaml: uk/ar/bn/gu digits + _silence_; lt 10 commands + _silence_ +
_unknown_ (its other 10 words). Splits are the speaker-disjoint ones `polykws data scan` gives.

Choice: the shipped base is the single-base recipe with the best mean transfer accuracy on
the targets' *validation* splits (test splits are reported, never used to choose). Test
speakers of every target are checked to be absent from every split the base used.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import torch
from torch import nn

from polykws.datasets import TaskSpec, load_task_features
from polykws.datasets.frontend import frontend_by_name
from polykws.training.base import train_base
from polykws.training.checkpoint import load_model
from polykws.core import resolve_path
from polykws.training.config import TrainConfig, load_train_config
from polykws.training.data import base_records, scan_corpus_cached
from polykws.training.evaluate import evaluate
from polykws.training.profile import count_params_macs
from polykws.core import atomic_path, atomic_write_json, atomic_write_text, repo_root, sha256_file

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LT_COMMANDS = ("taip", "ne", "stop", "labas", "ačiū", "iki", "startas", "pauzė", "įjunk", "išjunk")
LT_OTHER = ("nulis", "vienas", "du", "trys", "keturi", "penki", "į_apačią", "į_dešinę", "į_kairę", "į_viršų")
TARGETS: dict[str, TaskSpec] = {
    "uk": TaskSpec("uk", DIGITS, silence=True, unknown=False),
    "ar": TaskSpec("ar", DIGITS, silence=True, unknown=False),
    "bn": TaskSpec("bn", ("sunno", "ek", "dui", "tin", "char", "panch", "choy", "sat", "aat", "noi"), silence=True, unknown=False),
    "gu": TaskSpec("gu", tuple(str(i) for i in range(10)), silence=True, unknown=False),
    "lt": TaskSpec("lt", LT_COMMANDS, silence=True, unknown=True, unknown_words=LT_OTHER),
}
RECIPES = {
    "en": ("configs/base_en.yaml", False),
    "en_tts": ("configs/base_en_tts.yaml", False),
    "pooled_loo": ("configs/base_pooled.yaml", True),
    "en_tts_pooled_loo": ("configs/base_en_tts_pooled.yaml", True),
}
SHARED_KWS = "shared:data/kws"
NOISE_DIR = "shared:data/noise/lt_background_noise"
PROBE_L2 = 1e-3


# ---------------------------------------------------------------------------------------------
# Target tasks and the head-only probe


def target_splits(frontend, *, cache_dir: Path, manifest_dir: Path, seed: int = 0) -> dict[str, dict]:
    records = scan_corpus_cached(resolve_path(SHARED_KWS), val_pct=10.0, test_pct=10.0, manifest_dir=manifest_dir)
    out = {}
    for lang, task in TARGETS.items():
        rows = [r for r in records if r.language == lang]
        out[lang] = load_task_features(rows, task, frontend, cache_dir=cache_dir, noise_dir=resolve_path(NOISE_DIR), seed=seed, progress=False)
    return out


@torch.no_grad()
def embed(model: nn.Module, x: np.ndarray, batch: int = 1024) -> torch.Tensor:
    model.eval()
    xt = torch.as_tensor(x, dtype=torch.float32).unsqueeze(1)
    return torch.cat([model.features(xt[i : i + batch]) for i in range(0, len(xt), batch)])


def head_only_probe(model: nn.Module, splits: dict, *, seed: int = 0) -> dict[str, float]:
    """Fit a new linear head on frozen embeddings; accuracy on val and test (see module doc)."""
    e = {k: embed(model, s.x) for k, s in splits.items()}
    y = {k: torch.as_tensor(s.y) for k, s in splits.items()}
    torch.manual_seed(seed)
    head = nn.Linear(e["train"].shape[1], len(splits["train"].labels))
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=500, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(head(e["train"]), y["train"]) + PROBE_L2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return {k: float((head(e[k]).argmax(1) == y[k]).float().mean()) for k in ("train", "val", "test")}


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: np.ndarray) -> None:
    # An untrained net's default BN statistics (mean 0, var 1) squash raw-MFCC activations into
    # near-constant embeddings; estimating them on the target's train clips gives the fair
    # random-feature reference.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the one pass below
    model.train()
    model(torch.as_tensor(x, dtype=torch.float32).unsqueeze(1))
    model.eval()


def eval_speakers(splits: dict) -> set[str]:
    return {s for name in ("val", "test") for s in splits[name].speakers if s}


# ---------------------------------------------------------------------------------------------
# Recipes


def recipe_config(name: str, target: str | None, *, epochs: int | None, seed: int, runs: Path) -> TrainConfig:
    path, loo = RECIPES[name]
    cfg = load_train_config(repo_root() / path)
    if loo:
        # Leave the scored target out: drop the corpus entries of its language entirely.
        corpora = tuple(c for c in cfg.data.corpora if tuple(c.languages) != (target,))
        if len(corpora) == len(cfg.data.corpora):
            raise SystemExit(f"{path}: no corpus entry with languages [{target}] to leave out")
        cfg = replace(cfg, data=replace(cfg.data, corpora=corpora))
    fit = replace(cfg.fit, seed=seed, progress=False, **({"epochs": epochs} if epochs else {}))
    run_dir = runs / (f"{name}-minus-{target}" if loo else name) / f"seed{seed}"
    return replace(cfg, fit=fit, run_dir=str(run_dir))


def check_no_target_eval_speakers(cfg: TrainConfig, targets: dict[str, dict]) -> dict[str, int]:
    """Speakers of any target's val/test split found in ANY split the base used (must be 0)."""
    used = {r.speaker_id for r in base_records(cfg.data) if not r.is_noise}
    return {lang: len(used & eval_speakers(s)) for lang, s in targets.items()}


def run_base(cfg: TrainConfig, targets: dict, score_langs: list[str], en_root: Path) -> dict:
    leaks = check_no_target_eval_speakers(cfg, targets)
    if any(leaks.values()):
        raise SystemExit(f"{cfg.run_dir}: the base would see target val/test speakers: {leaks}")
    run_dir = resolve_path(cfg.run_dir)
    resume = (run_dir / "checkpoint.pt").is_file()
    t0 = time.perf_counter()
    run = train_base(cfg, resume=resume, progress=False)
    total_s = time.perf_counter() - t0
    best = load_model(run.fit.best_path)
    # en: the base's own head on the English real clips of its test split (+ its _silence_/_unknown_).
    test = run.splits["test"]
    keep = np.array([p.startswith(str(en_root)) or not p.startswith("/") for p in test.paths])
    en_report = evaluate(best.model, _subset(test, keep))
    probes = {lang: head_only_probe(best.model, targets[lang]) for lang in score_langs}
    prof = count_params_macs(best.model)
    return {
        "run_dir": str(run_dir),
        "best_path": str(run.fit.best_path),
        "best_sha256": run.fit.best_sha256,
        "best_epoch": run.fit.best_epoch,
        "epochs": cfg.fit.epochs,
        "num_classes": len(best.labels),
        "train_examples": run.data_summary["train"]["examples"],
        "train_by_language": run.data_summary["train"]["by_language"],
        "train_speakers": len(run.data_summary["train"]["speakers"]),
        "train_wall_s": run.fit.wall_time_s,
        "features_s": run.features_s,
        "total_s": total_s,
        "resumed": resume,
        "base_test_top1": run.report.top1,
        "en_test_top1": en_report.top1,
        "en_test_n": en_report.num_samples,
        "en_test_frr": en_report.false_reject_rate,
        "en_test_far": en_report.false_accept_rate,
        "params": prof.total_params,
        "macs": prof.total_macs,
        "target_eval_speakers_seen": leaks,
        "probe": probes,
    }


def _subset(split, mask: np.ndarray):
    from polykws.datasets import FeatureSplit

    idx = np.flatnonzero(mask)
    return FeatureSplit(
        x=split.x[idx],
        y=split.y[idx],
        labels=split.labels,
        speakers=tuple(split.speakers[i] for i in idx),
        paths=tuple(split.paths[i] for i in idx),
    )


# ---------------------------------------------------------------------------------------------


def random_init_reference(frontend, targets) -> dict:
    """The same probe on an untrained (randomly initialised) DS-CNN-S: how much pretraining buys."""
    from polykws.training.models import ds_cnn_s

    torch.manual_seed(0)
    out = {}
    for lang in TARGETS:
        rand = ds_cnn_s(num_classes=12, input_shape=frontend.input_shape)
        recalibrate_bn(rand, targets[lang]["train"].x)
        out[lang] = head_only_probe(rand, targets[lang])
    print("random-init DS-CNN-S + head: " + "  ".join(f"{l} {v['test']:.3f}" for l, v in out.items()), flush=True)
    return out


def run_recipe_seed(name: str, seed: int, loo: bool, epochs: int | None, runs: Path, targets, en_root: Path) -> dict:
    """One seed of a recipe: one base, or (leave-one-out) one base per held-out target language."""
    if not loo:
        cfg = recipe_config(name, None, epochs=epochs, seed=seed, runs=runs)
        print(f"[{name} seed {seed}] training -> {cfg.run_dir}", flush=True)
        r = run_base(cfg, targets, list(TARGETS), en_root)
        print("  " + "  ".join(f"{lang} {r['probe'][lang]['test']:.3f}" for lang in TARGETS) + f"; en {r['en_test_top1']:.3f}; train {r['train_wall_s']:.0f} s", flush=True)
        return {**r, "seed": seed}
    parts = {}
    for lang in TARGETS:
        cfg = recipe_config(name, lang, epochs=epochs, seed=seed, runs=runs)
        print(f"[{name} seed {seed}] training without {lang} -> {cfg.run_dir}", flush=True)
        parts[lang] = run_base(cfg, targets, [lang], en_root)
        print(f"  {lang}: head-only val {parts[lang]['probe'][lang]['val']:.3f} test {parts[lang]['probe'][lang]['test']:.3f}; "
              f"train {parts[lang]['train_wall_s']:.0f} s", flush=True)
    return {"seed": seed, "loo": parts, "probe": {lang: parts[lang]["probe"][lang] for lang in TARGETS},
            "train_wall_s": statistics.median(p["train_wall_s"] for p in parts.values()),
            "en_test_top1": statistics.median(p["en_test_top1"] for p in parts.values())}


def ship_base(recipe: str, results: dict, out: Path) -> dict:
    """Copy the recipe's first-seed best model to `out` (+ a .json with its figures)."""
    src = results["recipes"][recipe]["per_seed"][0]
    with atomic_path(out) as tmp:
        shutil.copyfile(src["best_path"], tmp)
    shipped = {"recipe": recipe, "seed": src["seed"], "path": str(out), "file_sha256": sha256_file(out), "weights_sha256": src["best_sha256"]}
    atomic_write_json(out.with_suffix(".json"), {**shipped, "figures": {k: v for k, v in src.items() if k != "run_dir"}})
    return shipped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="en,en_tts,pooled_loo,en_tts_pooled_loo", help=f"comma list of {', '.join(RECIPES)}")
    ap.add_argument("--seeds", default="0,1", help="comma list of base training seeds for single-base recipes")
    ap.add_argument("--loo-seeds", default="0", help="seeds for leave-one-out recipes (each seed trains 5 bases)")
    ap.add_argument("--epochs", type=int, default=None, help="override fit.epochs (quick looks only)")
    ap.add_argument("--runs", type=Path, default=Path("runs/bench_base"))
    ap.add_argument("--ship", default="auto", help="recipe to ship, 'auto' (best mean val transfer among single-base recipes) or 'none'")
    ap.add_argument("--out", type=Path, default=Path("artifacts/base/ds_cnn_s_mfcc.pt"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on the shared 2-core machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        ap.error(f"unknown recipes {unknown}; known: {list(RECIPES)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    loo_seeds = [int(s) for s in args.loo_seeds.split(",")]
    runs = resolve_path(str(args.runs))
    t_bench = time.perf_counter()

    frontend = frontend_by_name("mfcc")
    data_defaults = load_train_config(repo_root() / RECIPES["en"][0]).data
    targets = target_splits(frontend, cache_dir=resolve_path(data_defaults.cache_dir), manifest_dir=resolve_path(data_defaults.manifest_dir))
    for lang, s in targets.items():
        print(f"target {lang}: {len(s['train'].labels)} classes; train/val/test {len(s['train'])}/{len(s['val'])}/{len(s['test'])} clips; "
              f"test speakers {len({x for x in s['test'].speakers if x})}", flush=True)
    en_root = resolve_path(SHARED_KWS) / "en"

    results: dict = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), os.cpu_count()={__import__('os').cpu_count()}",
                     "torch": torch.__version__, "probe": f"L-BFGS linear head, L2 {PROBE_L2}, 500 iterations", "recipes": {}}
    results_path = runs / "results.json"
    results["reference_random_init"] = random_init_reference(frontend, targets)
    for name in recipes:
        loo = RECIPES[name][1]
        per_seed = []
        for seed in (loo_seeds if loo else seeds):
            per_seed.append(run_recipe_seed(name, seed, loo, args.epochs, runs, targets, en_root))
            results["recipes"][name] = summarize(name, per_seed, loo)
            atomic_write_json(results_path, results)
    single = [n for n in recipes if not RECIPES[n][1]]
    if args.ship not in ("auto", "none") and args.ship not in single:
        ap.error(f"--ship {args.ship}: not a single-base recipe in this run ({single})")
    ship = max(single, key=lambda n: results["recipes"][n]["mean_val"]) if args.ship == "auto" and single else (
        args.ship if args.ship not in ("auto", "none") else None)
    if ship:
        results["shipped"] = ship_base(ship, results, resolve_path(str(args.out)))
    results["bench_wall_s"] = time.perf_counter() - t_bench
    atomic_write_json(results_path, results)
    table = markdown(results)
    atomic_write_text(runs / "results.md", table)
    print(table)
    if ship:
        print(f"shipped base: {results['shipped']['path']}  sha256 {results['shipped']['file_sha256']}  (weights {results['shipped']['weights_sha256']})")
    return 0


def summarize(name: str, per_seed: list[dict], loo: bool) -> dict:
    langs = list(TARGETS)
    test = {lang: statistics.mean(s["probe"][lang]["test"] for s in per_seed) for lang in langs}
    val = {lang: statistics.mean(s["probe"][lang]["val"] for s in per_seed) for lang in langs}
    return {
        "loo": loo,
        "seeds": [s["seed"] for s in per_seed],
        "test": test,
        "val": val,
        "mean_test": statistics.mean(test.values()),
        "mean_val": statistics.mean(val.values()),
        "en_test_top1": statistics.mean(s["en_test_top1"] for s in per_seed),
        "train_wall_s_median": statistics.median(s["train_wall_s"] for s in per_seed),
        "per_seed": per_seed,
    }


def markdown(results: dict) -> str:
    langs = list(TARGETS)
    lines = [
        "| recipe | " + " | ".join(f"{l} test" for l in langs) + " | mean test | mean val | en test (own head) | train wall (median) |",
        "|---|" + "---|" * (len(langs) + 4),
    ]
    ref = results.get("reference_random_init")
    if ref:
        lines.append(
            "| untrained DS-CNN-S, BN stats from target train (reference) | " + " | ".join(f"{100 * ref[l]['test']:.1f}" for l in langs)
            + f" | {100 * statistics.mean(ref[l]['test'] for l in langs):.1f} | {100 * statistics.mean(ref[l]['val'] for l in langs):.1f} | - | - |"
        )
    for name, r in results["recipes"].items():
        lines.append(
            f"| {name}{' (leave-one-out)' if r['loo'] else ''} | " + " | ".join(f"{100 * r['test'][l]:.1f}" for l in langs)
            + f" | **{100 * r['mean_test']:.1f}** | {100 * r['mean_val']:.1f} | {100 * r['en_test_top1']:.1f} | {r['train_wall_s_median'] / 60:.1f} min |"
        )
    for name, r in results["recipes"].items():
        first = r["per_seed"][0]
        first = first if "params" in first else next(iter(first["loo"].values()))
        lines.append(
            f"\n{name}: ds_cnn_s with {first['num_classes']} base classes: {first['params']:,} params, {first['macs']:,} MACs "
            f"(MFCC 49x10); seeds {r['seeds']}; per-seed mean test "
            + ", ".join(f"{100 * statistics.mean(s['probe'][l]['test'] for l in langs):.1f}" for s in r["per_seed"])
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
