"""What several stages share: progress display, the corpus roots, the scan's rows, a language's task."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from polykws.pipeline.engine import StageContext

_QUIET = os.environ.get("POLYKWS_QUIET_STAGES") == "1"


def progress(ctx: StageContext) -> bool:
    return not ctx.in_worker and not _QUIET and bool(ctx.runtime.get("progress", True))


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


def rel_path(path: str, root: Path) -> str:
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
    from polykws.datasets.task import TaskSpec

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


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"
