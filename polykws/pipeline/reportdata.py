"""Gather the report's figures from the stage artifacts (the report stage's upstream folders).

Only measured values are used: float accuracy from evaluating the merged model on the test
split, int8 accuracy from the TFLM runtime on the model rebuilt from flash.bin (base + blob),
byte counts from the files. A value that was not measured stays None and renders as "-".
"""

from __future__ import annotations

import datetime as _dt
import json
import socket
from pathlib import Path
from typing import Any

from polykws.pipeline.engine import StageContext

FILLER = ("_silence_", "_unknown_")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _utc(ts: float | None) -> str:
    if not ts:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _confusion(ctx: StageContext, lang: str, float_stage: str) -> tuple[Any, str | None]:
    """The int8 confusion matrix from the TFLM evaluation when there is one, else the float one."""
    if "tflm_eval" in ctx.inputs and (rep := _json(ctx.input("tflm_eval") / lang / "report.json")):
        return rep["confusion"], "int8"
    if rep := _json(ctx.input(float_stage) / "eval" / "report.json"):
        return rep["confusion"], "float"
    return None, None


def _summary_if(ctx: StageContext, name: str | None) -> dict[str, Any]:
    return ctx.summary(name) if name and name in ctx.inputs else {}


def _model_data(ctx: StageContext) -> dict[str, Any]:
    from polykws.datasets.frontend import frontend_by_name

    c, base_sum = ctx.config, ctx.summary("base")
    fe = frontend_by_name(c["frontend"])
    return {"name": c["model"], "params": base_sum.get("params"), "macs": base_sum.get("macs"),
            "frontend": {"kind": fe.kind, "num_frames": fe.input_shape[0], "num_features": fe.input_shape[1]}}


def _base_data(ctx: StageContext, tflm: dict[str, Any]) -> dict[str, Any]:
    base_lang = ctx.config["base_language"]
    base_sum, eb = ctx.summary("base"), _summary_if(ctx, "export_base")
    conf, kind = _confusion(ctx, base_lang, "base")
    return {
        "language": base_lang,
        "labels": base_sum.get("labels") or [],
        "test_clips": base_sum.get("test_clips"),
        "float_acc": base_sum.get("test_acc"),
        "int8_acc": (tflm.get(base_lang) or {}).get("int8_acc", eb.get("int8_acc")),
        "params": base_sum.get("params"),
        "tflite_bytes": eb.get("tflite_bytes"),
        "arena_bytes": (tflm.get(base_lang) or {}).get("arena_bytes", eb.get("arena_bytes")),
        "confusion": conf,
        "confusion_kind": kind,
    }


def _language_data(ctx: StageContext, lang: str, job: str, tflm: dict[str, Any], pack: dict[str, Any]) -> dict[str, Any]:
    s = ctx.summary(job)
    exs = _summary_if(ctx, ctx.config["ship_export"].get(lang))
    conf, kind = _confusion(ctx, lang, job)
    labels = s.get("labels") or []
    return {
        "lang": lang,
        "method": s.get("method"),
        "budget": s.get("budget"),
        "keywords": [x for x in labels if x not in FILLER],
        "labels": labels,
        "test_clips": s.get("test_clips"),
        "float_acc": s.get("test_acc"),
        "int8_acc": (tflm.get(lang) or {}).get("int8_acc"),
        "updated_params": s.get("updated_params"),
        "blob_bytes": (pack.get("blob_bytes") or {}).get(lang, exs.get("blob_bytes")),
        "tflite_bytes": exs.get("tflite_bytes"),
        "arena_bytes": (tflm.get(lang) or {}).get("arena_bytes"),
        "confusion": conf,
        "confusion_kind": kind,
        "streaming": _streaming_data(ctx, lang),
    }


def _streaming_data(ctx: StageContext, lang: str) -> dict[str, Any] | None:
    """The language's streaming figures and DET curve, when its streams were scored."""
    stage = (ctx.config.get("ship_streaming") or {}).get(lang)
    if not stage or stage not in ctx.inputs:
        return None
    s = ctx.summary(stage)
    row = _json(ctx.input(stage) / "streaming.json") or {}
    curve = {k: row[k] for k in ("language", "frontend", "frontend_state", "detector", "det") if k in row}
    return {k: v for k, v in s.items() if k not in ("headline", "language")} | {"curve": curve or None}


def _sweep_data(ctx: StageContext) -> list[dict[str, Any]]:
    sweep = []
    for job in ctx.config["adapt_jobs"]:
        s = ctx.summary(job)
        exs = _summary_if(ctx, ctx.config["export_jobs"].get(job))
        sweep.append({
            "lang": s.get("language"), "method": s.get("method"), "budget": s.get("budget"), "seed": s.get("seed"),
            "updated_params": s.get("updated_params"), "float_acc": s.get("test_acc"), "int8_acc": exs.get("int8_acc"),
            "blob_bytes": exs.get("blob_bytes"), "adapt_wall_s": s.get("adapt_wall_s"),
        })
    return sweep


def _flash_data(base_lang: str, pack: dict[str, Any], languages: list[dict[str, Any]]) -> dict[str, Any]:
    if not pack:
        return {}
    full = {base_lang: pack["base_bytes"]}
    full.update({r["lang"]: r["tflite_bytes"] for r in languages if r.get("tflite_bytes")})
    return {"base_bytes": pack["base_bytes"], "blob_bytes": pack["blob_bytes"], "full_model_bytes": full,
            "flash_image_bytes": pack.get("flash_image_bytes")}


def _firmware_data(ctx: StageContext) -> dict[str, Any]:
    if "firmware" in ctx.inputs:
        fw = ctx.summary("firmware")
        firmware = {"status": fw.get("status"), "reason": fw.get("reason"), "rows": fw.get("rows") or []}
        if fw.get("not_benched"):
            firmware["note"] = "Not benchmarked: " + "; ".join(f"{lang} ({why})" for lang, why in fw["not_benched"].items())
        return firmware
    if not ctx.config.get("export_enabled", True):
        return {"status": "skipped", "reason": "export is disabled in this config (export.enabled: false), so there is no image to flash"}
    return {"status": "skipped", "reason": "no firmware stage in this run"}


def _stage_rows(ctx: StageContext) -> list[dict[str, Any]]:
    stages = [{"name": name, "built": _utc(m.get("started_unix")), "wall_s": m.get("wall_s"), "cpu_s": m.get("cpu_s"), "key": m.get("key")}
              for name, m in ctx.input_manifests.items()]
    stages.append({"name": "report", "built": _utc(_dt.datetime.now(_dt.timezone.utc).timestamp()), "wall_s": None, "key": ctx.key})
    return stages


def _skip_data(ctx: StageContext) -> tuple[list[dict[str, Any]], list[str]]:
    """Every upstream stage's skipped files by reason, and its warnings: a run never drops input silently."""
    skips: list[dict[str, Any]] = []
    warnings: list[str] = []
    for name, m in sorted(ctx.input_manifests.items()):
        summ = m.get("summary") or {}
        for reason, n in sorted((summ.get("skipped") or {}).items()):
            skips.append({"stage": name, "reason": reason, "files": int(n), "list": f"{name}/skipped.json"})
        warnings += [f"{name}: {w}" for w in summ.get("warnings") or []]
    return skips, warnings


def collect_report_data(ctx: StageContext) -> dict[str, Any]:
    c = ctx.config
    tflm = ctx.summary("tflm_eval").get("languages", {}) if "tflm_eval" in ctx.inputs else {}
    pack = _summary_if(ctx, "pack")
    languages = [_language_data(ctx, lang, c["ship_adapt"][lang], tflm, pack) for lang in c["languages"] if lang in c["ship_adapt"]]
    notes = list(c.get("notes") or [])
    if not c.get("export_enabled", True):
        notes.append("Export is disabled in this config: int8 accuracy, blobs and the flash budget were not measured.")
    skips, warnings = _skip_data(ctx)
    return {
        "skips": skips,
        "warnings": warnings,
        "title": c["title"],
        "config_name": c["config_name"],
        "command": c.get("command", ""),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": socket.gethostname(),
        "model": _model_data(ctx),
        "base": _base_data(ctx, tflm),
        "languages": languages,
        "sweep": _sweep_data(ctx),
        "flash": _flash_data(c["base_language"], pack, languages),
        "firmware": _firmware_data(ctx),
        "streaming_reason": None if c.get("ship_streaming") else
        "Not scored on streams: streaming.enabled is false in this config (FRR at a fixed false-accept rate needs it).",
        "stages": _stage_rows(ctx),
        "notes": notes,
        "ship": {"method": c.get("ship_method"), "budget": c.get("ship_budget")},
    }
