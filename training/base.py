"""Base pretraining as one library call: config -> cached features -> fit -> test-split report.

`polykws train base` and bench/base.py are thin wrappers around `train_base`; the run folder it
fills is described in training/fit.py, plus `eval/` (the report on the speaker-disjoint test
split: report.json, report.txt, confusion.png) and `data.json` (what the base was trained on).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from polykws.core import resolve_path
from polykws.training.config import TrainConfig, to_dict
from polykws.training.data import build_base_splits, loaders_from_splits
from polykws.training.evaluate import EvalReport, evaluate
from polykws.training.fit import FitResult, fit
from polykws.training.models import create_model
from polykws.core import atomic_write_json, seed_everything


@dataclass
class BaseRun:
    run_dir: Path
    fit: FitResult
    report: EvalReport
    labels: tuple[str, ...]
    data_summary: dict[str, Any]
    features_s: float
    splits: dict[str, Any]


def describe_splits(splits: dict) -> dict[str, Any]:
    """Counts per split, per language and per class, and the speakers each split holds."""
    out: dict[str, Any] = {}
    for name, split in splits.items():
        # Keyword classes are language-qualified ("uk:one"); _silence_/_unknown_ count as themselves.
        langs = Counter(_language_of(split.labels[int(i)]) for i in split.y)
        out[name] = {
            "examples": len(split),
            "by_origin": dict(Counter(split.origin)),
            "by_language": dict(sorted(langs.items())),
            "speakers": sorted({s for s in split.speakers if s}),
            "class_counts": split.class_counts(),
            "skipped": [s.to_dict() for s in split.skipped],
            "notes": list(split.notes),
        }
    return out


def _language_of(label: str) -> str:
    return label.split(":", 1)[0] if ":" in label else label


def train_base(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    run_dir: str | Path | None = None,
    splits: dict | None = None,
    meta: dict[str, Any] | None = None,
) -> BaseRun:
    """Train the base described by cfg; `splits` skips feature building (already built)."""
    from polykws.datasets.frontend import frontend_by_name

    frontend = frontend_by_name(cfg.model.frontend)
    run_dir = resolve_path(str(run_dir or cfg.run_dir))
    t0 = time.perf_counter()
    if splits is None:
        splits = build_base_splits(cfg.data, frontend, seed=cfg.fit.seed, progress=progress)
    features_s = time.perf_counter() - t0
    summary = describe_splits(splits)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "data.json", summary)

    loaders = loaders_from_splits(splits, batch_size=cfg.fit.batch_size, seed=cfg.fit.seed)
    if cfg.fit.num_threads:
        torch.set_num_threads(cfg.fit.num_threads)
    seed_everything(cfg.fit.seed)
    model = create_model(cfg.model.name, num_classes=len(loaders.labels), input_shape=frontend.input_shape)
    result = fit(
        model,
        loaders,
        cfg.fit,
        run_dir=run_dir,
        frontend=frontend,
        resume=resume,
        run_config=to_dict(cfg),
        meta={
            "role": "base",
            "train_config": to_dict(cfg),
            "train_languages": summary["train"]["by_language"],
            "train_speakers": len(summary["train"]["speakers"]),
            **(meta or {}),
        },
    )
    from polykws.training.checkpoint import load_model

    best = load_model(result.best_path)
    report = evaluate(best.model, splits["test"])
    report.save(run_dir / "eval", title=f"{cfg.model.name} base, test split (speaker-disjoint), best epoch {result.best_epoch}")
    return BaseRun(run_dir=run_dir, fit=result, report=report, labels=loaders.labels, data_summary=summary, features_s=features_s, splits=splits)
