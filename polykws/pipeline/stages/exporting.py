"""int8 export: the shared base once, then each language on the base's scales with its weight-diff blob."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from polykws.core import PolykwsError, atomic_write_json
from polykws.pipeline.engine import StageContext
from polykws.pipeline.splitio import load_meta, load_splits


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
    # A base that records its head slots (the shipped one: 24) keeps them, so its int8 file is the shipped layout.
    recorded_slots = base.meta.get("head_slots")
    head_slots = max([len(base.labels), recorded_slots if isinstance(recorded_slots, int) else 0] + [len(load_meta(ctx.input(f"features/{lang}"))["labels"]) for lang in c["languages"]])
    ex = export_base(base.model, base.frontend, base.labels, cal, ctx.out, lang=c["language"], parity_x=test.x, head_slots=head_slots,
                     max_calibration=int(c["calibration_samples"]), meta={"model_name": base.model_name, "base_state_sha256": base.sha256,
                                                                          "language": c["language"]})
    summary = {"tflite_bytes": len(ex.tflite), "tflite_sha256": ex.sha256, "head_slots": ex.head_slots, "labels": list(base.labels)}
    if tuple(test.labels) == tuple(base.labels):
        r = evaluate_tflm(ex.tflite, test.x, test.y, num_labels=len(base.labels))
        save_int8_eval(ctx.out / "eval", r, test.y, base.labels)
        summary.update(int8_acc=r.accuracy, arena_bytes=r.arena_bytes, test_clips=len(test.y),
                       headline=f"{len(ex.tflite)} B, int8 TFLM {100 * r.accuracy:.1f}%")
    return summary


def save_int8_eval(out: Path, r, y, labels) -> None:
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
    budget_key = f"budget_{adapt_summary.get('budget_unit', 'params')}"  # budget_bytes or budget_params
    ex = export_language(base, lm.model, lm.labels, cal, ctx.out, lang=c["language"], parity_x=test.x, scales=c.get("scales", "frozen"),
                         head_weight_bits=int(c["head_weight_bits"]),
                         max_calibration=int(c["calibration_samples"]),
                         meta={"method": adapt_summary.get("method"), budget_key: adapt_summary.get("budget"),
                               "seed": adapt_summary.get("seed"), "model_sha256": lm.sha256})
    patched = apply_blob(base.tflite, ex.blob)
    if patched != ex.tflite:
        raise PolykwsError(f"{c['language']}: base + blob is not byte-identical to the exported model")
    r = evaluate_tflm(patched, test.x, test.y, num_labels=len(lm.labels))
    save_int8_eval(ctx.out / "eval", r, test.y, lm.labels)
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
