"""The base: pretrained on the base language(s), or a given checkpoint verified and scored."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from polykws.core import PolykwsError, from_dict, sha256_file
from polykws.pipeline.engine import StageContext
from polykws.pipeline.splitio import load_splits
from polykws.pipeline.stages.common import progress


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
    fit_cfg = from_dict(FitConfig, {**c["fit"], "progress": progress(ctx)}, "base.fit")
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
    from polykws.datasets.frontend import frontend_by_name
    from polykws.training.checkpoint import load_model, save_model
    from polykws.training.evaluate import evaluate
    from polykws.training.profile import count_params_macs as profile_model

    c = ctx.config
    # The path is runtime (moving the file must not invalidate the stage); its hash is the key.
    src = Path(ctx.runtime["checkpoint"])
    if sha256_file(src) != c["checkpoint_sha256"]:
        raise PolykwsError(f"{src}: changed since the run was planned (SHA-256 differs from the config's)")
    loaded = load_model(src)
    # The whole frontend, not its kind: two micro frontends over different clip lengths give the
    # model inputs of different shapes.
    want = frontend_by_name(c["frontend"])
    if loaded.frontend != want:
        raise PolykwsError(f"{src}: base uses frontend {loaded.frontend.to_dict()}, the config's {c['frontend']!r} is {want.to_dict()}")
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
