"""One language's task and features from a pipeline config, outside a pipeline run.

`polykws adapt` and the benchmarks read the corpus and a language's task from the same YAML
the pipeline runs (default configs/shared-real.yaml), through the same schema
(`PipelineConfig`, `TaskConfig.spec()`) and the same split rule, so a task has one set of
defaults wherever it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polykws.core import ConfigError, resolve_path
from polykws.datasets.task import TaskSpec
from polykws.datasets.splits import SplitConfig
from polykws.pipeline.config import PipelineConfig, load_config

DEFAULT_CONFIG = "configs/shared-real.yaml"


@dataclass(frozen=True)
class LanguageTask:
    """A language's task with the corpus it is read from."""

    task: TaskSpec
    root: Path
    noise_dir: Path | None
    split: SplitConfig
    cache_dir: Path
    max_per_keyword: int
    config_path: Path


def load_language_task(config: str | Path, lang: str, keywords: list[str] | tuple[str, ...] | None = None) -> LanguageTask:
    """`lang`'s task in the pipeline config `config`; `keywords` replaces the task's keywords."""
    path = resolve_path(config)
    cfg: PipelineConfig = load_config(path, check_files=False)
    tasks = cfg.data.tasks
    if lang not in tasks:
        raise ConfigError(f"{path}: data.tasks has no language {lang!r} (has: {', '.join(sorted(tasks)) or 'none'})")
    if cfg.data.roots:
        raise ConfigError(f"{path}: this reader takes one corpus folder (data.root), not data.roots")
    entry = tasks[lang]
    words = tuple(keywords) if keywords else entry.keywords
    if not words:
        raise ConfigError(f"{path}: data.tasks.{lang} names no keywords (= every word); pass the keywords explicitly")
    try:
        task = entry.spec(lang, words)
    except ConfigError as exc:
        raise ConfigError(f"{path}: data.tasks.{lang}: {exc}") from None
    return LanguageTask(
        task=task,
        root=resolve_path(cfg.data.root),
        noise_dir=resolve_path(cfg.data.noise_dir) if cfg.data.noise_dir else None,
        split=cfg.data.split,
        cache_dir=resolve_path(cfg.data.cache_dir),
        max_per_keyword=entry.max_per_keyword,
        config_path=path,
    )


def load_language_splits(lang: str, frontend, *, config: str | Path = DEFAULT_CONFIG, keywords: list[str] | None = None, seed: int = 0):
    """{"train","val","test"} FeatureSplits for `lang`'s task, from cached features when present."""
    from polykws.datasets import load_task_features
    from polykws.training.config import DataConfig
    from polykws.training.data import scan_corpus_cached

    lt = load_language_task(config, lang, keywords)
    manifest_dir = resolve_path(DataConfig.__dataclass_fields__["manifest_dir"].default)
    records = scan_corpus_cached(lt.root, val_pct=lt.split.val_pct, test_pct=lt.split.test_pct, manifest_dir=manifest_dir)
    rows = [r for r in records if r.language == lang]
    return load_task_features(
        rows, lt.task, frontend, cache_dir=lt.cache_dir, noise_dir=lt.noise_dir, seed=seed,
        max_per_keyword=lt.max_per_keyword, progress=False,
    )
