"""The corpus and one language's task from a pipeline config, as feature splits.

`polykws adapt` and the benchmarks read a language's task (keywords, _silence_/_unknown_) and
the corpus from a pipeline config (default configs/shared-real.yaml) with the split rule the
pipeline uses; features are cached (.cache/features).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "configs/shared-real.yaml"


def load_task_config(config: str | Path, lang: str) -> dict[str, Any]:
    """The corpus and the `lang` task of a pipeline config (the same split rule the pipeline uses)."""
    import yaml

    from polykws.training.config import resolve_path
    from polykws.core import ConfigError, PolykwsError

    path = resolve_path(str(config))
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolykwsError(f"{path}: config not found") from None
    data = (cfg or {}).get("data") or {}
    tasks = data.get("tasks") or {}
    if lang not in tasks:
        raise ConfigError(f"{path}: data.tasks has no language {lang!r} (has: {', '.join(sorted(tasks)) or 'none'})")
    if "root" not in data:
        raise ConfigError(f"{path}: data.root is missing")
    split = data.get("split") or {}
    return {
        "root": data["root"],
        "noise_dir": data.get("noise_dir"),
        "val_pct": float(split.get("val_pct", 10.0)),
        "test_pct": float(split.get("test_pct", 10.0)),
        "task": dict(tasks[lang]),
        "config_path": str(path),
    }


def load_language_splits(lang: str, frontend, *, config: str | Path = DEFAULT_CONFIG, keywords: list[str] | None = None, seed: int = 0):
    """{"train","val","test"} FeatureSplits for `lang`'s task, from cached features when present."""
    from polykws.datasets import TaskSpec, load_task_features
    from polykws.training.config import DataConfig, resolve_path
    from polykws.training.data import scan_corpus_cached

    tc = load_task_config(config, lang)
    task_kw = dict(tc["task"])
    if keywords:
        task_kw["keywords"] = list(keywords)
    task = TaskSpec(
        lang,
        tuple(task_kw.pop("keywords")),
        silence=bool(task_kw.pop("silence", True)),
        unknown=bool(task_kw.pop("unknown", True)),
        unknown_words=tuple(task_kw.pop("unknown_words", ())),
        **task_kw,
    )
    defaults = DataConfig.__dataclass_fields__
    manifest_dir = resolve_path(defaults["manifest_dir"].default)
    cache_dir = resolve_path(defaults["cache_dir"].default)
    records = scan_corpus_cached(resolve_path(tc["root"]), val_pct=tc["val_pct"], test_pct=tc["test_pct"], manifest_dir=manifest_dir)
    rows = [r for r in records if r.language == lang]
    noise = resolve_path(tc["noise_dir"]) if tc["noise_dir"] else None
    return load_task_features(rows, task, frontend, cache_dir=cache_dir, noise_dir=noise, seed=seed, progress=False)
