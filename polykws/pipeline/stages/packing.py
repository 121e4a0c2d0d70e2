"""What ships: the pack (base + blobs + flash image) and its host TFLM evaluation, rebuilt from flash.bin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from polykws.core import PolykwsError, atomic_write_json
from polykws.pipeline.engine import StageContext
from polykws.pipeline.splitio import load_splits
from polykws.pipeline.stages.exporting import save_int8_eval


def pack_stage(ctx: StageContext) -> dict[str, Any]:
    """base.tflite + <lang>.blob + manifest.json + flash.bin for the shipped languages (export.pack)."""
    from polykws.export.api import ExportedModel
    from polykws.export.pack import pack

    c = ctx.config
    base = ExportedModel.load(ctx.input("export_base"), c["base_language"])
    # A language's model folder: its streaming stage (the blob with thresholds) when streams are
    # scored, else its export stage.
    models = c.get("models") or c["ship"]
    langs = [ExportedModel.load(ctx.input(models[lang]), lang) for lang in c["languages"]]
    # The export stages score each model under host TFLM on its whole test split (the base only
    # when this config has its task); the manifest carries that figure so `firmware bench` can
    # set its own beside it.
    for ex, stage in [(base, "export_base"), *((ex, c["ship"][ex.lang]) for ex in langs)]:
        summary = ctx.summary(stage)
        ex.meta.setdefault("eval", {k: summary[k] for k in ("float_acc", "int8_acc", "arena_bytes", "test_clips") if summary.get(k) is not None})
    result = pack(base, langs, ctx.out)
    image = result.flash_image
    blob_bytes = {ex.lang: len(ex.blob) for ex in langs}
    total = len(base.tflite) + sum(blob_bytes.values())
    return {"base_bytes": len(base.tflite), "blob_bytes": blob_bytes, "flash_image_bytes": len(image),
            "headline": f"base {len(base.tflite)} B + {len(langs)} blobs = {total} B"}


def base_task_mismatch(pack_dir: Path, lang: str, test_labels) -> str | None:
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
    # What the pack shipped: the streaming stage's model (its thresholds and any softmax
    # temperature in the blob) when streams are scored, else the export stage's.
    models = c.get("models") or c["ship"]
    results = {}
    for entry in image.blobs:
        lang = entry.lang
        model = apply_blob(base, entry.data)
        exported = (ctx.input(models[lang]) / f"{lang}.tflite").read_bytes()
        if sha256_bytes(model) != sha256_bytes(exported):
            raise PolykwsError(f"{lang}: the model rebuilt from flash.bin differs from the one {models[lang]} shipped")
        test = load_splits(ctx.input(f"features/{lang}"))["test"]
        r = evaluate_tflm(model, test.x, test.y, num_labels=len(test.labels))
        save_int8_eval(ctx.out / lang, r, test.y, test.labels)
        results[lang] = {"int8_acc": r.accuracy, "arena_bytes": r.arena_bytes, "test_clips": len(test.y), "tflite_sha256": sha256_bytes(model)}
    test = load_splits(ctx.input(f"features/{c['base_language']}"))["test"]
    if (why := base_task_mismatch(ctx.input("pack"), c["base_language"], test.labels)) is None:
        r = evaluate_tflm(base, test.x, test.y, num_labels=len(test.labels))
        save_int8_eval(ctx.out / c["base_language"], r, test.y, test.labels)
        results[c["base_language"]] = {"int8_acc": r.accuracy, "arena_bytes": r.arena_bytes, "test_clips": len(test.y), "base": True}
    else:
        results[c["base_language"]] = {"base": True, "int8_acc": None, "skipped": why}
    atomic_write_json(ctx.out / "tflm.json", results)
    langs = [v["int8_acc"] for v in results.values() if not v.get("base")]
    mean = float(np.mean(langs)) if langs else float("nan")
    return {"languages": results, "headline": f"mean int8 TFLM {100 * mean:.1f}% over {len(langs)} languages"}


def split_vectors(pack_dir: Path, feature_dirs: dict[str, Path]) -> tuple[dict[str, np.ndarray], list[str], dict[str, str]]:
    """`firmware bench`'s test vectors: each language's whole test split as `<lang>_x` / `<lang>_y`.

    Returns the arrays, the languages they cover and, per language left out, why (a given base
    pretrained on other classes has no test split of this config's base task).
    """
    vectors, langs, not_benched = {}, [], {}
    for lang, folder in feature_dirs.items():
        test = load_splits(folder)["test"]
        if why := base_task_mismatch(pack_dir, lang, test.labels):
            not_benched[lang] = why
            continue
        vectors[f"{lang}_x"], vectors[f"{lang}_y"] = test.x, test.y
        langs.append(lang)
    return vectors, langs, not_benched


def write_vectors_npz(path: Path, vectors: dict[str, np.ndarray]) -> Path:
    """The vectors as one .npz (the format `polykws firmware bench --features` reads), written atomically."""
    import io

    from polykws.core import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **vectors)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, buf.getvalue())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
