"""Data stages: the synthesized corpus, the scan (manifest + speaker-disjoint splits), each language's features."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from polykws.core import PolykwsError, atomic_write_json, from_dict
from polykws.pipeline.engine import StageContext
from polykws.pipeline.splitio import save_splits
from polykws.pipeline.stages.common import data_roots, language_records, noise_dir, progress, rel_path, task_from_stage_config


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


def scan_stage(ctx: StageContext) -> dict[str, Any]:
    """Scan + decode every clip of every root, assign speaker-disjoint splits.

    Manifest paths are written as `<root index>/<path relative to that root>`, so the artifact
    does not depend on where the data or the store live. The clips of a training-only root, and
    the synthesized pseudo-words (`mul`) wherever they are, are marked train-only.
    """
    from polykws.datasets.manifest import write_manifest
    from polykws.datasets.scan import scan
    from polykws.datasets.splits import SplitConfig, mark_training_only

    split = SplitConfig(**ctx.config["split"])
    records, skipped, summary, warnings = [], [], [], []
    counts: dict[str, int] = {}
    n_noise = 0
    for i, (root, entry) in enumerate(zip(data_roots(ctx), ctx.config["roots"])):
        opts = {"gsc_language": entry["gsc_language"]} if "gsc_language" in entry else {}
        res = scan(root, layout=entry["layout"], languages=entry["languages"], split=split, progress=progress(ctx), **opts)
        rows = res.records
        if entry.get("train_only"):
            # Background noise also builds validation and test _silence_ and the streams, so a
            # training-only root gives none: a count says what was left out.
            rows = [r for r in rows if not r.is_noise]
            if len(rows) < len(res.records):
                warnings.append(f"root {i} is training-only: its {len(res.records) - len(rows)} background-noise files are left out")
        records += mark_training_only([replace(r, path=f"{i}/{rel_path(r.path, root)}") for r in rows], bool(entry.get("train_only")))
        skipped += [dict(s.to_dict(), path=f"{i}/{rel_path(s.path, root)}") for s in res.skipped]
        summary += [dict(row, root=i, layout=res.layout) for row in res.summary()]
        for reason, n in res.skip_counts().items():
            counts[reason] = counts.get(reason, 0) + n
        n_noise += sum(1 for r in rows if r.is_noise)
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


def features_stage(ctx: StageContext) -> dict[str, Any]:
    """One language's task: speaker-disjoint train/val/test feature arrays (+ _silence_/_unknown_)."""
    from polykws.datasets.augment import AugmentConfig
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
        augment=from_dict(AugmentConfig, c.get("augment") or {}, "data.augment"),
        augment_copies=int(c["augment_copies"]),
        seed=int(c["seed"]),
        max_per_keyword=int(c.get("max_per_keyword") or 0),
        frontend_warm_ms=float(c.get("frontend_warm_ms") or 0.0),
        progress=progress(ctx),
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
        rel = rel_path(path, root)
        if rel != str(Path(path)):
            return f"{name}/{rel}"
    return path


def _relativize_split(split, roots: list[Path]):
    paths = tuple(_rel_any(p, roots) if not p.startswith("silence:") else _silencerel_path(p, roots)
                  for p in (getattr(split, "paths", ()) or ()))
    try:
        return replace(split, paths=paths)
    except TypeError:  # not a dataclass: keep a light copy
        from polykws.pipeline.splitio import StoredSplit

        return StoredSplit(split.x, split.y, tuple(split.labels), tuple(getattr(split, "speakers", ()) or ()), paths)


def _silencerel_path(p: str, roots: list[Path]) -> str:
    """`silence:<noise path>@offset x gain` with the noise path made relative too."""
    body = p[len("silence:"):]
    path, at, rest = body.partition("@")
    return "silence:" + (_rel_any(path, roots) if path and path != "zeros" else path) + at + rest
