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


def collect_report_data(ctx: StageContext) -> dict[str, Any]:
    c = ctx.config
    has = lambda name: name in ctx.inputs  # noqa: E731
    base_lang = c["base_language"]
    base_sum = ctx.summary("base")
    tflm = ctx.summary("tflm_eval").get("languages", {}) if has("tflm_eval") else {}
    pack = ctx.summary("pack") if has("pack") else {}
    eb = ctx.summary("export_base") if has("export_base") else {}

    from polykws.datasets.frontend import frontend_by_name

    fe = frontend_by_name(c["frontend"])
    model = {"name": c["model"], "params": base_sum.get("params"), "macs": base_sum.get("macs"),
             "frontend": {"kind": fe.kind, "num_frames": fe.input_shape[0], "num_features": fe.input_shape[1]}}

    base_conf, base_conf_kind = None, None
    if has("tflm_eval") and (rep := _json(ctx.input("tflm_eval") / base_lang / "report.json")):
        base_conf, base_conf_kind = rep["confusion"], "int8"
    elif rep := _json(ctx.input("base") / "eval" / "report.json"):
        base_conf, base_conf_kind = rep["confusion"], "float"
    base_labels = base_sum.get("labels") or []
    base = {
        "language": base_lang,
        "labels": base_labels,
        "test_clips": base_sum.get("test_clips"),
        "float_acc": base_sum.get("test_acc"),
        "int8_acc": (tflm.get(base_lang) or {}).get("int8_acc", eb.get("int8_acc")),
        "params": base_sum.get("params"),
        "tflite_bytes": eb.get("tflite_bytes"),
        "arena_bytes": (tflm.get(base_lang) or {}).get("arena_bytes", eb.get("arena_bytes")),
        "confusion": base_conf,
        "confusion_kind": base_conf_kind,
    }

    languages = []
    for lang in c["languages"]:
        job = c["ship_adapt"].get(lang)
        if job is None:
            continue
        s = ctx.summary(job)
        ex_name = c["ship_export"].get(lang)
        exs = ctx.summary(ex_name) if ex_name and has(ex_name) else {}
        conf, kind = None, None
        if has("tflm_eval") and (rep := _json(ctx.input("tflm_eval") / lang / "report.json")):
            conf, kind = rep["confusion"], "int8"
        elif rep := _json(ctx.input(job) / "eval" / "report.json"):
            conf, kind = rep["confusion"], "float"
        labels = s.get("labels") or []
        languages.append({
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
        })

    sweep = []
    for job in c["adapt_jobs"]:
        s = ctx.summary(job)
        ex_name = c["export_jobs"].get(job)
        exs = ctx.summary(ex_name) if ex_name and has(ex_name) else {}
        sweep.append({
            "lang": s.get("language"), "method": s.get("method"), "budget": s.get("budget"), "seed": s.get("seed"),
            "updated_params": s.get("updated_params"), "float_acc": s.get("test_acc"), "int8_acc": exs.get("int8_acc"),
            "blob_bytes": exs.get("blob_bytes"), "adapt_wall_s": s.get("adapt_wall_s"),
        })

    flash: dict[str, Any] = {}
    if pack:
        full = {base_lang: pack["base_bytes"]}
        full.update({r["lang"]: r["tflite_bytes"] for r in languages if r.get("tflite_bytes")})
        flash = {"base_bytes": pack["base_bytes"], "blob_bytes": pack["blob_bytes"], "full_model_bytes": full,
                 "flash_image_bytes": pack.get("flash_image_bytes")}

    if has("firmware"):
        fw = ctx.summary("firmware")
        firmware = {"status": fw.get("status"), "reason": fw.get("reason"), "rows": fw.get("rows") or []}
        if fw.get("not_benched"):
            firmware["note"] = "Not benchmarked: " + "; ".join(f"{lang} ({why})" for lang, why in fw["not_benched"].items())
    elif not c.get("export_enabled", True):
        firmware = {"status": "skipped", "reason": "export is disabled in this config (export.enabled: false), so there is no image to flash"}
    else:
        firmware = {"status": "skipped", "reason": "no firmware stage in this run"}

    notes = list(c.get("notes") or [])
    if not c.get("export_enabled", True):
        notes.append("Export is disabled in this config: int8 accuracy, blobs and the flash budget were not measured.")
    stages = []
    for name, m in ctx.input_manifests.items():
        stages.append({"name": name, "built": _utc(m.get("started_unix")), "wall_s": m.get("wall_s"), "cpu_s": m.get("cpu_s"),
                       "key": m.get("key")})
    stages.append({"name": "report", "built": _utc(_dt.datetime.now(_dt.timezone.utc).timestamp()), "wall_s": None, "key": ctx.key})
    skips, warnings = [], []
    for name, m in sorted(ctx.input_manifests.items()):
        summ = m.get("summary") or {}
        for reason, n in sorted((summ.get("skipped") or {}).items()):
            skips.append({"stage": name, "reason": reason, "files": int(n), "list": f"{name}/skipped.json"})
        warnings += [f"{name}: {w}" for w in summ.get("warnings") or []]
    return {
        "skips": skips,
        "warnings": warnings,
        "title": c["title"],
        "config_name": c["config_name"],
        "command": c.get("command", ""),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": socket.gethostname(),
        "model": model,
        "base": base,
        "languages": languages,
        "sweep": sweep,
        "flash": flash,
        "firmware": firmware,
        "stages": stages,
        "notes": notes,
        "ship": {"method": c.get("ship_method"), "budget": c.get("ship_budget")},
    }
