"""The pipeline's stage functions: thin glue from one layer's artifacts to the next layer's API.

Each function gets a StageContext (its config subset, its upstream folders, an output folder)
and returns a JSON summary that the report and the progress log read. Every figure here comes
from calling the real component (scan, fit, adapt, export, TFLM, firmware bench); nothing is
estimated. Paths inside artifacts are relative, so an artifact's content hash does not depend
on where the store lives.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from polykws.pipeline.engine import StageContext
from polykws.pipeline.shipstages import (  # noqa: F401 - the stage table is `stages.<name>`
    export_base_stage,
    export_language_stage,
    firmware_stage,
    pack_stage,
    report_stage,
    streaming_stage,
    tflm_eval_stage,
)
from polykws.pipeline.splitio import load_meta, load_splits, save_splits
from polykws.core import PolykwsError, atomic_write_json, from_dict, sha256_file

_QUIET = os.environ.get("POLYKWS_QUIET_STAGES") == "1"


def _progress(ctx: StageContext) -> bool:
    return not ctx.in_worker and not _QUIET and bool(ctx.runtime.get("progress", True))


# --- data -----------------------------------------------------------------------------------------
def corpus_stage(ctx: StageContext) -> dict[str, Any]:
    """Synthesize the embedded multilingual keyword corpus (espeak-ng) into corpus/."""
    from polykws.datasets.synth import SynthConfig, synthesize_corpus

    cfg = from_dict(SynthConfig, dict(ctx.config["synth"]), "corpus")
    out = ctx.out / "corpus"
    result = synthesize_corpus(cfg, out)
    files = sum(1 for p in out.rglob("*") if p.is_file())
    summary = {"files": files, "headline": f"{files} clips"}
    if isinstance(result, dict):
        summary.update({k: v for k, v in result.items() if isinstance(v, (int, float, str))})
    return summary


def data_roots(ctx: StageContext) -> list[Path]:
    """The corpus folders, in config order: the synthesized corpus (an upstream artifact) or configured folders."""
    out = []
    for p in ctx.runtime["roots"]:
        out.append(ctx.input("corpus") / "corpus" if p == "@corpus" else Path(p))
    return out


def noise_dir(ctx: StageContext) -> Path | None:
    """Background-noise folder: configured (runtime), or a folder inside the synthesized corpus."""
    if ctx.runtime.get("noise_dir"):
        return Path(ctx.runtime["noise_dir"])
    if "noise_rel" in ctx.runtime and "corpus" in ctx.inputs:
        return ctx.input("corpus") / "corpus" / ctx.runtime["noise_rel"]
    return None


def scan_stage(ctx: StageContext) -> dict[str, Any]:
    """Scan + decode every clip of every root, assign speaker-disjoint splits.

    Manifest paths are written as `<root index>/<path relative to that root>`, so the artifact
    does not depend on where the data or the store live.
    """
    from polykws.datasets.manifest import write_manifest
    from polykws.datasets.scan import scan
    from polykws.datasets.splits import SplitConfig

    split = SplitConfig(**ctx.config["split"])
    records, skipped, summary, warnings = [], [], [], []
    counts: dict[str, int] = {}
    n_noise = 0
    for i, (root, entry) in enumerate(zip(data_roots(ctx), ctx.config["roots"])):
        opts = {"gsc_language": entry["gsc_language"]} if "gsc_language" in entry else {}
        res = scan(root, layout=entry["layout"], languages=entry["languages"], split=split, progress=_progress(ctx), **opts)
        records += [replace(r, path=f"{i}/{_rel(r.path, root)}") for r in res.records]
        skipped += [dict(s.to_dict(), path=f"{i}/{_rel(s.path, root)}") for s in res.skipped]
        summary += [dict(row, root=i, layout=res.layout) for row in res.summary()]
        for reason, n in res.skip_counts().items():
            counts[reason] = counts.get(reason, 0) + n
        n_noise += len(res.noise)
        warnings += res.warnings
    write_manifest(ctx.out / "manifest.jsonl", records)
    atomic_write_json(ctx.out / "skipped.json", skipped)
    atomic_write_json(ctx.out / "scan_summary.json", summary)
    noise_root = noise_dir(ctx)
    if noise_root is not None:
        noise = sorted(p.relative_to(noise_root).as_posix() for p in noise_root.rglob("*.wav"))
        if not noise:
            raise PolykwsError(f"{noise_root}: no .wav background-noise files")
        atomic_write_json(ctx.out / "noise.json", noise)
    clips = sum(1 for r in records if not r.is_noise)
    return {
        "clips": clips,
        "noise_files": n_noise,
        "skipped": counts,
        "warnings": warnings,
        "languages": sorted({r.language for r in records if not r.is_noise}),
        "headline": f"{clips} clips" + (f", {sum(counts.values())} skipped (see skipped.json)" if counts else ""),
    }


def _rel(path: str, root: Path) -> str:
    p = Path(path)
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def load_manifest(scan_dir: Path, roots: list[Path]):
    """Manifest rows with absolute paths again (`<root index>/<rel>` -> roots[index]/rel)."""
    from polykws.datasets.manifest import read_manifest

    out = []
    for r in read_manifest(scan_dir / "manifest.jsonl"):
        idx, _, rel = r.path.partition("/")
        out.append(replace(r, path=str(roots[int(idx)] / rel)))
    return out


def task_from_stage_config(c: dict[str, Any], records):
    """A stage config's language task (`language`, `keywords`, `task_options`) as a TaskSpec."""
    from polykws.datasets.features import TaskSpec

    opts = {k: tuple(v) if isinstance(v, list) else v for k, v in c["task_options"].items()}
    keywords = tuple(c["keywords"])
    if not keywords:  # every word of the language that is not reserved for _unknown_
        keywords = tuple(sorted({r.label for r in records if r.language == c["language"] and not r.is_noise}
                                - set(opts.get("unknown_words") or ())))
    return TaskSpec(c["language"], keywords, **opts)


def language_records(ctx: StageContext):
    """The scan's rows, with the stage's language re-split into speaker folds when its config says so."""
    records = load_manifest(ctx.input("scan"), data_roots(ctx))
    c = ctx.config
    if c.get("speaker_folds") is not None:
        from polykws.datasets.splits import SpeakerFolds, fold_splits

        records = fold_splits(records, SpeakerFolds(**c["speaker_folds"]), c["language"])
    return records


def features_stage(ctx: StageContext) -> dict[str, Any]:
    """One language's task: speaker-disjoint train/val/test feature arrays (+ _silence_/_unknown_)."""
    from polykws.datasets.features import load_task_features
    from polykws.datasets.frontend import frontend_by_name

    c = ctx.config
    roots = data_roots(ctx)
    records = language_records(ctx)
    task = task_from_stage_config(c, records)
    frontend = frontend_by_name(c["frontend"])
    noise = noise_dir(ctx)
    splits = load_task_features(
        records,
        task,
        frontend,
        cache_dir=Path(ctx.runtime["cache_dir"]),
        noise_dir=noise,
        augment_copies=int(c["augment_copies"]),
        seed=int(c["seed"]),
        max_per_keyword=int(c.get("max_per_keyword") or 0),
        frontend_warm_ms=float(c.get("frontend_warm_ms") or 0.0),
        progress=_progress(ctx),
    )
    # Paths in the artifact are relative to their corpus root (the data and the store may move).
    rel_roots = list(roots) + ([("noise", noise)] if noise is not None else [])
    splits = {k: _relativize_split(v, rel_roots) for k, v in splits.items()}
    counts = save_splits(ctx.out, splits, {"language": c["language"], "frontend": frontend.to_dict()})
    labels = list(splits["train"].labels)
    # Files the feature builder could not use (bad noise files, manifest rows whose audio no longer
    # decodes) are listed with their reasons and counted in the summary the report shows.
    skipped = [dict(s.to_dict(), path=_rel_any(s.path, rel_roots), split=name) for name, sp in splits.items() for s in sp.skipped]
    atomic_write_json(ctx.out / "skipped.json", skipped)
    skip_counts: dict[str, int] = {}
    for s in skipped:
        skip_counts[s["reason"]] = skip_counts.get(s["reason"], 0) + 1
    return {
        "language": c["language"],
        "labels": labels,
        "counts": counts,
        "skipped": skip_counts,
        "warnings": [f"{name}: {n}" for name, sp in splits.items() for n in sp.notes],
        "headline": f"{len(labels)} classes, " + "/".join(str(counts.get(s, 0)) for s in ("train", "val", "test")) + " clips",
    }


def _rel_any(path: str, roots: list[Path | tuple[str, Path]]) -> str:
    for i, root in enumerate(roots):
        name, root = root if isinstance(root, tuple) else (str(i), root)
        rel = _rel(path, root)
        if rel != str(Path(path)):
            return f"{name}/{rel}"
    return path


def _relativize_split(split, roots: list[Path]):
    paths = tuple(_rel_any(p, roots) if not p.startswith("silence:") else _silence_rel(p, roots)
                  for p in (getattr(split, "paths", ()) or ()))
    try:
        return replace(split, paths=paths)
    except TypeError:  # not a dataclass: keep a light copy
        from polykws.pipeline.splitio import StoredSplit

        return StoredSplit(split.x, split.y, tuple(split.labels), tuple(getattr(split, "speakers", ()) or ()), paths)


def _silence_rel(p: str, roots: list[Path]) -> str:
    """`silence:<noise path>@offset x gain` with the noise path made relative too."""
    body = p[len("silence:"):]
    path, at, rest = body.partition("@")
    return "silence:" + (_rel_any(path, roots) if path and path != "zeros" else path) + at + rest


# --- base -----------------------------------------------------------------------------------------
def _pooled_base_splits(ctx: StageContext) -> dict[str, Any]:
    """The base language's splits, plus the train split of each pooled language (labels prefixed)."""
    from polykws.pipeline.splitio import StoredSplit

    c = ctx.config
    base = load_splits(ctx.input(f"features/{c['language']}"))
    pool = c.get("pool_languages") or []
    if not pool:
        return base
    labels = list(base["train"].labels)
    xs, ys = [base["train"].x], [base["train"].y]
    for lang in pool:
        tr = load_splits(ctx.input(f"features/{lang}"))["train"]
        ids = []
        for lab in tr.labels:
            # Filler classes are shared; keywords are language-prefixed so homographs stay distinct.
            name = lab if lab.startswith("_") else f"{lang}:{lab}"
            if name not in labels:
                labels.append(name)
            ids.append(labels.index(name))
        xs.append(tr.x)
        ys.append(np.asarray(ids, dtype=np.int64)[tr.y])
    out = {"train": StoredSplit(np.concatenate(xs), np.concatenate(ys), tuple(labels))}
    for s in ("val", "test"):
        out[s] = StoredSplit(base[s].x, base[s].y, tuple(labels))
    return out


def base_stage(ctx: StageContext) -> dict[str, Any]:
    """Pretrain the base (resumable: a killed run continues from its last epoch)."""
    from polykws.datasets.frontend import frontend_by_name
    from polykws.training.checkpoint import load_model, save_model
    from polykws.training.config import FitConfig
    from polykws.training.data import loaders_from_splits
    from polykws.training.evaluate import evaluate
    from polykws.training.fit import fit
    from polykws.training.models import create_model
    from polykws.training.profile import count_params_macs as profile_model

    c = ctx.config
    fit_cfg = from_dict(FitConfig, {**c["fit"], "progress": _progress(ctx)}, "base.fit")
    frontend = frontend_by_name(c["frontend"])
    splits = _pooled_base_splits(ctx)
    labels = tuple(splits["train"].labels)
    model = create_model(c["model"], num_classes=len(labels), input_shape=frontend.input_shape)
    loaders = loaders_from_splits(splits, batch_size=fit_cfg.batch_size, seed=fit_cfg.seed)
    run_dir = ctx.out / "train"
    resume = (run_dir / "checkpoint.pt").exists()
    result = fit(model, loaders, fit_cfg, run_dir=run_dir, frontend=frontend, labels=labels, resume=resume,
                 run_config={"pipeline_base": dict(c)},
                 meta={"language": c["language"], "pool_languages": c.get("pool_languages") or []})
    best = load_model(result.best_path)
    sha = save_model(ctx.out / "base.pt", best.model, labels=labels, frontend=frontend,
                     meta={"language": c["language"], "best_epoch": result.best_epoch, "role": "base"})
    # The resumable optimizer state is not part of the artifact; per-epoch metrics carry wall
    # times, so they go to volatile/ (kept, not hashed).
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    (run_dir / "best.pt").unlink(missing_ok=True)
    (ctx.out / "volatile").mkdir(exist_ok=True)
    for name in ("metrics.jsonl", "metrics.csv"):
        if (run_dir / name).exists():
            os.replace(run_dir / name, ctx.out / "volatile" / name)
    rep = evaluate(best.model, splits["test"])
    rep.save(ctx.out / "eval", title=f"{c['language']} base, test split")
    prof = profile_model(best.model)
    return {
        "language": c["language"],
        "labels": list(labels),
        "model": c["model"],
        "state_sha256": sha,
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "val_acc": result.best_val_acc,
        "test_acc": rep.top1,
        "test_clips": rep.num_samples,
        "train_clips": len(splits["train"]),
        "params": _prof(prof, "params"),
        "macs": _prof(prof, "macs"),
        "train_wall_s": result.wall_time_s,
        "resumed_from_epoch": result.resumed_from_epoch,
        "headline": f"test {100 * rep.top1:.1f}% ({rep.num_samples} clips)",
    }


def _prof(prof: Any, what: str) -> int | None:
    for name in (f"total_{what}", what):
        v = getattr(prof, name, None) if not isinstance(prof, dict) else prof.get(name)
        if isinstance(v, (int, np.integer)):
            return int(v)
    return None


def given_base_stage(ctx: StageContext) -> dict[str, Any]:
    """Reuse a trained base file: verify it, copy it in, score it on the base task's test split."""
    from polykws.training.checkpoint import load_model, save_model
    from polykws.training.evaluate import evaluate
    from polykws.training.profile import count_params_macs as profile_model

    c = ctx.config
    # The path is runtime (moving the file must not invalidate the stage); its hash is the key.
    src = Path(ctx.runtime["checkpoint"])
    if sha256_file(src) != c["checkpoint_sha256"]:
        raise PolykwsError(f"{src}: changed since the run was planned (SHA-256 differs from the config's)")
    loaded = load_model(src)
    if loaded.frontend.kind != c["frontend"]:
        raise PolykwsError(f"{src}: base uses frontend {loaded.frontend.kind!r}, the config says {c['frontend']!r}")
    sha = save_model(ctx.out / "base.pt", loaded.model, labels=loaded.labels, frontend=loaded.frontend,
                     meta={**loaded.meta, "role": "base", "source_file": src.name})
    summary = {"language": c["language"], "labels": list(loaded.labels), "model": loaded.model_name, "state_sha256": sha,
               "given": True, "params": _prof(profile_model(loaded.model), "params"), "macs": _prof(profile_model(loaded.model), "macs")}
    key = f"features/{c['language']}"
    if key in ctx.inputs:
        test = load_splits(ctx.input(key)).get("test")
        if test is not None and tuple(test.labels) == tuple(loaded.labels):
            rep = evaluate(loaded.model, test)
            rep.save(ctx.out / "eval", title=f"{c['language']} base, test split")
            summary.update(test_acc=rep.top1, test_clips=rep.num_samples, headline=f"given base, test {100 * rep.top1:.1f}%")
    return summary


# --- adaptation (fan-out) -------------------------------------------------------------------------
def adapt_stage(ctx: StageContext) -> dict[str, Any]:
    """One language x method x budget x seed: adapt the frozen base, merge, score on test."""
    import torch

    from polykws.training.adapt import TransferConfig, adapt, method_config
    from polykws.training.checkpoint import load_model, save_model
    from polykws.training.evaluate import evaluate

    c = ctx.config
    base = load_model(ctx.input("base") / "base.pt")
    splits = load_splits(ctx.input(f"features/{c['language']}"))
    from polykws.pipeline.config import budget_kwargs

    budget, unit = c.get("budget"), c.get("budget_unit", "params")
    mcfg = method_config(c["method"], **budget_kwargs(unit, budget), **dict(c.get("method_options") or {}))
    tcfg = from_dict(TransferConfig, {**c["fit"], "seed": int(c["seed"]), "num_threads": int(c["threads"])}, "adapt.fit")
    res = adapt(base.model, splits, mcfg, tcfg)
    labels = tuple(res.labels)
    sha = save_model(ctx.out / "model.pt", res.model, labels=labels, frontend=base.frontend,
                     meta={"language": c["language"], "method": c["method"], f"budget_{unit}": budget, "seed": c["seed"],
                           "base_sha256": base.sha256})
    if res.delta_model is not None:
        res.delta_model.save(ctx.out / "delta.pt")
    rep = evaluate(res.model, splits["test"])
    rep.save(ctx.out / "eval", title=f"{c['language']} {c['method']} budget {budget} seed {c['seed']} (float)")
    # Merged model has the base's shapes: assert it here too (cheap; the deploy contract).
    base_shapes = {k: tuple(v.shape) for k, v in base.model.state_dict().items() if not k.startswith("head.")}
    new_shapes = {k: tuple(v.shape) for k, v in res.model.state_dict().items() if not k.startswith("head.")}
    if base_shapes != new_shapes:
        raise PolykwsError(f"{c['language']}/{c['method']}: merged model's body shapes differ from the base's")
    history = [dict(h.__dict__) if hasattr(h, "__dict__") else dict(h) for h in res.history]
    atomic_write_json(ctx.out / "volatile" / "history.json", history)  # per-epoch wall times: not hashed
    atomic_write_json(ctx.out / "history.json", [{k: v for k, v in h.items() if k != "seconds"} for h in history])
    del torch
    return {
        "language": c["language"],
        "method": c["method"],
        "budget": budget,
        "budget_unit": unit,
        "seed": c["seed"],
        "labels": list(labels),
        "updated_params": int(res.cost.total),
        "body_params": int(res.cost.body),
        "head_params": int(res.cost.head),
        "val_acc": res.val_acc,
        "test_acc": rep.top1,
        "test_clips": rep.num_samples,
        "state_sha256": sha,
        "adapt_wall_s": res.wall_s,
        "selection": res.details.get("selection"),
        "estimated_body_blob_bytes": res.details.get("estimated_body_blob_bytes"),
        "headline": f"test {100 * rep.top1:.1f}%, {int(res.cost.total)} params",
    }


__all__ = [
    "adapt_stage", "base_stage", "corpus_stage", "export_base_stage", "export_language_stage", "features_stage",
    "firmware_stage", "given_base_stage", "load_meta", "pack_stage", "report_stage", "scan_stage", "tflm_eval_stage",
]
