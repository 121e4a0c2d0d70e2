"""The pipeline's shipping stages: int8 export, blobs, pack, host TFLM evaluation, firmware, report.

Same contract as stages.py (a StageContext in, a JSON summary out; every figure measured by
the real component). polykws.pipeline.stages re-exports these, so the stage table is one name space.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from polykws.core import PolykwsError, atomic_write_json
from polykws.pipeline.engine import StageContext
from polykws.pipeline.splitio import load_meta, load_splits


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
    # A base that records its head slots (the shipped one: 24) keeps them, so its int8 file is the shipped layout.
    recorded_slots = base.meta.get("head_slots")
    head_slots = max([len(base.labels), recorded_slots if isinstance(recorded_slots, int) else 0] + [len(load_meta(ctx.input(f"features/{lang}"))["labels"]) for lang in c["languages"]])
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


def streaming_stage(ctx: StageContext) -> dict[str, Any]:
    """A shipped language on long noisy streams (polykws.pipeline.streameval): thresholds chosen on
    validation streams, FRR at a fixed FA/h on test ones; the language's export again, its blob
    now carrying those thresholds (what `pack` ships)."""
    from polykws.export.api import ExportedModel, with_thresholds
    from polykws.export.streaming import LanguageThresholds
    from polykws.pipeline.config import StreamingSection
    from polykws.pipeline.stages import language_records, noise_dir, task_from_stage_config
    from polykws.pipeline.streameval import StreamModel, evaluate_language, row_summary, stream_noise, write_results
    from polykws.core import from_dict

    c = ctx.config
    lang = c["language"]
    settings = from_dict(StreamingSection, dict(c["streaming"]), "streaming")
    base = ExportedModel.load(ctx.input("export_base"), c["base_language"])
    ex = ExportedModel.load(ctx.input(c["export_stage"]), lang)
    records = language_records(ctx)
    task = task_from_stage_config(c, records)
    model = StreamModel(ex.tflite, tuple(ex.labels), ex.frontend, f"{c['export_stage']}/{lang}.tflite")
    quiet = not ctx.runtime.get("progress", True)
    [row] = evaluate_language(model, task, records, stream_noise(noise_dir(ctx), records, ctx.name), settings, parity=True,
                              log=(lambda _: None) if quiet else print)
    row.pop("wall_s")  # the stage's manifest has it; the artifact holds only what the same inputs reproduce
    shipped = with_thresholds(base, ex, LanguageThresholds.from_dict(row["thresholds"]).blob_bytes())
    shipped.save(ctx.out)
    atomic_write_json(ctx.out / "streaming.json", row)
    write_results(ctx.out, [row], title=f"{lang}: DET, test streams")
    s = row_summary(row)
    frr1 = s["frr_at_1_fa_per_hour"]
    return {
        "language": lang,
        **s,
        "blob_bytes": len(shipped.blob),
        "headline": (f"FRR {_pct(frr1)} at 1 FA/h (test oracle); shipped threshold {s['threshold']}: "
                     f"FRR {_pct(s['shipped_frr'])} at {s['shipped_fa_per_hour']:.1f} FA/h"),
    }


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

    vectors, langs, not_benched = split_vectors(ctx.input("pack"), {lang: ctx.input(f"features/{lang}") for lang in c["languages"]})
    test_clips = {lang: len(vectors[f"{lang}_y"]) for lang in langs}
    npz = write_vectors_npz(Path(ctx.runtime.get("build_root") or ctx.out) / "vectors.npz", vectors)
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
                             "n": r["n"], "test_clips": test_clips.get(r["lang"]), "instructions": r["per_inference"], "unit": res.unit,
                             "flash_bytes": res.flash_bytes, "ram_bytes": res.ram_bytes})
    npz.unlink(missing_ok=True)
    atomic_write_json(ctx.out / "firmware.json", {"status": "measured", "rows": rows, "bench": results, "not_benched": not_benched})
    return {"status": "measured", "rows": rows, "not_benched": not_benched, "headline": f"{len(rows)} language x board rows measured under QEMU"}


def split_vectors(pack_dir: Path, feature_dirs: dict[str, Path]) -> tuple[dict[str, np.ndarray], list[str], dict[str, str]]:
    """`firmware bench`'s test vectors: each language's whole test split as `<lang>_x` / `<lang>_y`.

    Returns the arrays, the languages they cover and, per language left out, why (a given base
    pretrained on other classes has no test split of this config's base task).
    """
    vectors, langs, not_benched = {}, [], {}
    for lang, folder in feature_dirs.items():
        test = load_splits(folder)["test"]
        if why := _base_task_mismatch(pack_dir, lang, test.labels):
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


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
