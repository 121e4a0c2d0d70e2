"""The pipeline's stage functions: thin glue from one layer's artifacts to the next layer's API.

Each function gets a StageContext (its config subset, its upstream folders, an output folder)
and returns a JSON summary that the report and the progress log read. Every figure here comes
from calling the real component (scan, fit, adapt, export, TFLM, firmware bench); nothing is
estimated. Paths inside artifacts are relative, so an artifact's content hash does not depend
on where the store lives.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from polykws.pipeline.engine import StageContext
from polykws.pipeline.splitio import load_meta, load_splits, save_splits
from polykws.core import PolykwsError, atomic_write_json, atomic_write_text, sha256_file

_QUIET = os.environ.get("POLYKWS_QUIET_STAGES") == "1"


def _progress(ctx: StageContext) -> bool:
    return not ctx.in_worker and not _QUIET and bool(ctx.runtime.get("progress", True))


# --- data -----------------------------------------------------------------------------------------
def corpus_stage(ctx: StageContext) -> dict[str, Any]:
    """Synthesize the embedded multilingual keyword corpus (espeak-ng) into corpus/."""
    from polykws.datasets.synth import SynthConfig, synthesize_corpus
    from polykws.pipeline.config import from_dict

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


def features_stage(ctx: StageContext) -> dict[str, Any]:
    """One language's task: speaker-disjoint train/val/test feature arrays (+ _silence_/_unknown_)."""
    from polykws.datasets.features import TaskSpec, load_task_features
    from polykws.datasets.frontend import frontend_by_name

    c = ctx.config
    roots = data_roots(ctx)
    records = load_manifest(ctx.input("scan"), roots)
    opts = {k: tuple(v) if isinstance(v, list) else v for k, v in c["task_options"].items()}
    keywords = tuple(c["keywords"])
    if not keywords:  # every word of the language that is not reserved for _unknown_
        keywords = tuple(sorted({r.label for r in records if r.language == c["language"] and not r.is_noise}
                                - set(opts.get("unknown_words") or ())))
    task = TaskSpec(c["language"], keywords, **opts)
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
    from polykws.training.config import from_dict as train_from_dict
    from polykws.training.data import loaders_from_splits
    from polykws.training.evaluate import evaluate
    from polykws.training.fit import fit
    from polykws.training.models import create_model
    from polykws.training.profile import count_params_macs as profile_model

    c = ctx.config
    fit_cfg = train_from_dict(FitConfig, {**c["fit"], "progress": _progress(ctx)}, "base.fit")
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

    from polykws.training.adapt import TrainConfig, adapt, method_config
    from polykws.training.checkpoint import load_model, save_model
    from polykws.training.evaluate import evaluate

    c = ctx.config
    base = load_model(ctx.input("base") / "base.pt")
    splits = load_splits(ctx.input(f"features/{c['language']}"))
    budget = c.get("budget")
    mcfg = method_config(c["method"], budget_params=budget, **dict(c.get("method_options") or {}))
    tcfg = TrainConfig(**{**c["fit"], "seed": int(c["seed"]), "num_threads": int(c["threads"])})
    res = adapt(base.model, splits, mcfg, tcfg)
    labels = tuple(res.labels)
    sha = save_model(ctx.out / "model.pt", res.model, labels=labels, frontend=base.frontend,
                     meta={"language": c["language"], "method": c["method"], "budget_params": budget, "seed": c["seed"],
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
        "headline": f"test {100 * rep.top1:.1f}%, {int(res.cost.total)} params",
    }


# --- export ---------------------------------------------------------------------------------------
def _features_for_export(folder: Path, n_cal: int):
    splits = load_splits(folder)
    cal = splits["train"].x[:n_cal]
    return splits, cal


def export_base_stage(ctx: StageContext) -> dict[str, Any]:
    """Quantize the shared base once (ONNX -> full-int8 TFLite) and score it under TFLM."""
    from polykws.export.api import export_base
    from polykws.export.evaluate import evaluate_tflm
    from polykws.training.checkpoint import load_model

    c = ctx.config
    base = load_model(ctx.input("base") / "base.pt")
    splits, cal = _features_for_export(ctx.input(f"features/{c['language']}"), int(c["calibration_samples"]))
    test = splits["test"]
    head_slots = max([len(base.labels)] + [len(load_meta(ctx.input(f"features/{lang}"))["labels"]) for lang in c["languages"]])
    ex = export_base(base.model, base.frontend, base.labels, cal, ctx.out, lang=c["language"], parity_x=test.x, head_slots=head_slots,
                     max_calibration=int(c["calibration_samples"]), meta={"model_name": base.model_name, "base_state_sha256": base.sha256,
                                                                          "language": c["language"]})
    summary = {"tflite_bytes": len(ex.tflite), "tflite_sha256": ex.sha256, "head_slots": ex.head_slots, "labels": list(base.labels)}
    if tuple(test.labels) == tuple(base.labels):
        r = evaluate_tflm(ex.tflite, test.x, test.y, num_labels=len(base.labels))
        _save_int8_eval(ctx.out / "eval", r, test.y, base.labels)
        summary.update(int8_acc=r.accuracy, arena_bytes=r.arena_bytes, test_clips=len(test.y),
                       headline=f"{len(ex.tflite)} B, int8 TFLM {100 * r.accuracy:.1f}%")
    return summary


def _save_int8_eval(out: Path, r, y, labels) -> None:
    from polykws.training.evaluate import report_from_predictions

    rep = report_from_predictions(np.asarray(y), np.asarray(r.predictions), list(labels))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", {**rep.to_dict(), "arena_bytes": r.arena_bytes})


def export_language_stage(ctx: StageContext) -> dict[str, Any]:
    """A language's int8 model on the base's scales + its weight-diff blob; scored under TFLM."""
    from polykws.export.api import ExportedModel, export_language
    from polykws.export.blob import apply_blob
    from polykws.export.evaluate import evaluate_tflm
    from polykws.training.checkpoint import load_model

    c = ctx.config
    base = ExportedModel.load(ctx.input("export_base"), c["base_language"])
    lm = load_model(ctx.input(c["adapt_stage"]) / "model.pt")
    splits, cal = _features_for_export(ctx.input(f"features/{c['language']}"), int(c["calibration_samples"]))
    test = splits["test"]
    adapt_summary = ctx.summary(c["adapt_stage"])
    ex = export_language(base, lm.model, lm.labels, cal, ctx.out, lang=c["language"], parity_x=test.x, scales=c.get("scales", "frozen"),
                         max_calibration=int(c["calibration_samples"]),
                         meta={"method": adapt_summary.get("method"), "budget_params": adapt_summary.get("budget"),
                               "seed": adapt_summary.get("seed"), "model_sha256": lm.sha256})
    patched = apply_blob(base.tflite, ex.blob)
    if patched != ex.tflite:
        raise PolykwsError(f"{c['language']}: base + blob is not byte-identical to the exported model")
    r = evaluate_tflm(patched, test.x, test.y, num_labels=len(lm.labels))
    _save_int8_eval(ctx.out / "eval", r, test.y, lm.labels)
    return {
        "language": c["language"],
        "tflite_bytes": len(ex.tflite),
        "blob_bytes": len(ex.blob),
        "blob_pct_of_base": 100.0 * len(ex.blob) / len(base.tflite),
        "int8_acc": r.accuracy,
        "float_acc": adapt_summary.get("test_acc"),
        "arena_bytes": r.arena_bytes,
        "test_clips": len(test.y),
        "headline": f"int8 TFLM {100 * r.accuracy:.1f}%, blob {len(ex.blob)} B",
    }


def pack_stage(ctx: StageContext) -> dict[str, Any]:
    """base.tflite + <lang>.blob + manifest.json + flash.bin for the shipped languages (export.pack)."""
    from polykws.export.api import ExportedModel
    from polykws.export.pack import pack

    c = ctx.config
    base = ExportedModel.load(ctx.input("export_base"), c["base_language"])
    langs = [ExportedModel.load(ctx.input(c["ship"][lang]), lang) for lang in c["languages"]]
    result = pack(base, langs, ctx.out)
    image = result.flash_image
    blob_bytes = {ex.lang: len(ex.blob) for ex in langs}
    total = len(base.tflite) + sum(blob_bytes.values())
    return {"base_bytes": len(base.tflite), "blob_bytes": blob_bytes, "flash_image_bytes": len(image),
            "headline": f"base {len(base.tflite)} B + {len(langs)} blobs = {total} B"}


def _base_task_mismatch(pack_dir: Path, lang: str, test_labels) -> str | None:
    """Why the packed base cannot be scored on `lang`'s test split, or None when it can.

    A given base pretrained on other classes (e.g. the shipped 168-class base) has no test split
    of this config's base task: scoring it there would count the wrong classes.
    """
    base = read_json(pack_dir / "manifest.json")["base"]
    if lang != base["lang"] or list(base["labels"]) == list(test_labels):
        return None
    return f"base has {len(base['labels'])} classes, the {lang} task has {len(test_labels)}"


def tflm_eval_stage(ctx: StageContext) -> dict[str, Any]:
    """Host TFLM evaluation of what ships: every language rebuilt from flash.bin (base + blob)."""
    from polykws.export.blob import apply_blob, decode_flash_image
    from polykws.export.evaluate import evaluate_tflm
    from polykws.core import sha256_bytes

    c = ctx.config
    image = decode_flash_image((ctx.input("pack") / "flash.bin").read_bytes())
    base = image.base
    results = {}
    for entry in image.blobs:
        lang = entry.lang
        model = apply_blob(base, entry.data)
        exported = (ctx.input(c["ship"][lang]) / f"{lang}.tflite").read_bytes()
        if sha256_bytes(model) != sha256_bytes(exported):
            raise PolykwsError(f"{lang}: the model rebuilt from flash.bin differs from the exported one")
        test = load_splits(ctx.input(f"features/{lang}"))["test"]
        r = evaluate_tflm(model, test.x, test.y, num_labels=len(test.labels))
        _save_int8_eval(ctx.out / lang, r, test.y, test.labels)
        results[lang] = {"int8_acc": r.accuracy, "arena_bytes": r.arena_bytes, "test_clips": len(test.y), "tflite_sha256": sha256_bytes(model)}
    test = load_splits(ctx.input(f"features/{c['base_language']}"))["test"]
    if (why := _base_task_mismatch(ctx.input("pack"), c["base_language"], test.labels)) is None:
        r = evaluate_tflm(base, test.x, test.y, num_labels=len(test.labels))
        _save_int8_eval(ctx.out / c["base_language"], r, test.y, test.labels)
        results[c["base_language"]] = {"int8_acc": r.accuracy, "arena_bytes": r.arena_bytes, "test_clips": len(test.y), "base": True}
    else:
        results[c["base_language"]] = {"base": True, "int8_acc": None, "skipped": why}
    atomic_write_json(ctx.out / "tflm.json", results)
    langs = [v["int8_acc"] for v in results.values() if not v.get("base")]
    mean = float(np.mean(langs)) if langs else float("nan")
    return {"languages": results, "headline": f"mean int8 TFLM {100 * mean:.1f}% over {len(langs)} languages"}


# --- firmware -------------------------------------------------------------------------------------
def firmware_stage(ctx: StageContext) -> dict[str, Any]:
    """Build the Cortex-M TFLM image for the pack and bench it under QEMU (when toolchain + TFLM exist).

    Otherwise the stage records that it was skipped and why; the report shows the reason.
    """
    c = ctx.config
    missing = c.get("missing") or []
    if c["mode"] == "off" or missing:
        reason = "disabled in the config (firmware.enabled: off)" if c["mode"] == "off" else "; ".join(missing)
        atomic_write_json(ctx.out / "firmware.json", {"status": "skipped", "reason": reason})
        return {"status": "skipped", "reason": reason, "headline": f"skipped: {reason}"}
    from polykws.firmware.workflow import FirmwareConfig, bench_firmware, build_firmware

    vectors, langs, not_benched = {}, [], {}
    for lang in c["languages"]:
        test = load_splits(ctx.input(f"features/{lang}"))["test"]
        if why := _base_task_mismatch(ctx.input("pack"), lang, test.labels):
            not_benched[lang] = why  # the languages are benchmarked; the base has nothing to be scored on
            continue
        vectors[f"{lang}_x"], vectors[f"{lang}_y"] = test.x, test.y
        langs.append(lang)
    npz = Path(ctx.runtime.get("build_root") or ctx.out) / "vectors.npz"
    npz.parent.mkdir(parents=True, exist_ok=True)
    np.savez(npz, **vectors)
    rows, results = [], []
    for board in c["boards"]:
        for kernels in c["kernels"]:
            fcfg = FirmwareConfig(board, kernels, per_lang=int(c["bench_samples"]),
                                  build_root=Path(ctx.runtime["build_root"]) if ctx.runtime.get("build_root") else None)
            app = build_firmware(fcfg, ctx.input("pack"), npz, langs)
            res = bench_firmware(app)
            if res.mismatches:
                raise PolykwsError(f"{board}/{kernels}: firmware output differs from the host TFLM runtime: " + "; ".join(res.mismatches[:5]))
            d = res.to_dict()
            results.append(d)
            for r in d["rows"]:
                rows.append({"board": board, "kernels": kernels, "lang": r["lang"], "accuracy": r["accuracy"], "host_accuracy": r["host_accuracy"],
                             "n": r["n"], "instructions": r["per_inference"], "unit": res.unit,
                             "flash_bytes": res.flash_bytes, "ram_bytes": res.ram_bytes})
    npz.unlink(missing_ok=True)
    atomic_write_json(ctx.out / "firmware.json", {"status": "measured", "rows": rows, "bench": results, "not_benched": not_benched})
    return {"status": "measured", "rows": rows, "not_benched": not_benched, "headline": f"{len(rows)} language x board rows measured under QEMU"}


# --- report ---------------------------------------------------------------------------------------
def report_stage(ctx: StageContext) -> dict[str, Any]:
    from polykws.pipeline.report import render_report
    from polykws.pipeline.reportdata import collect_report_data

    data = collect_report_data(ctx)
    atomic_write_json(ctx.out / "report.json", data)
    render_report(data, ctx.out)
    ship = [r for r in data["languages"]]
    mean_f = _mean([r.get("float_acc") for r in ship])
    mean_q = _mean([r.get("int8_acc") for r in ship])
    return {"mean_float_acc": mean_f, "mean_int8_acc": mean_q,
            "headline": f"mean over {len(ship)} languages: float {_pct(mean_f)}, int8 {_pct(mean_q)}"}


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


__all__ = [
    "adapt_stage", "base_stage", "corpus_stage", "export_base_stage", "export_language_stage", "features_stage",
    "firmware_stage", "given_base_stage", "load_meta", "pack_stage", "report_stage", "scan_stage", "tflm_eval_stage",
]
