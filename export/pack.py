"""`polykws pack`: the shipping set - base.tflite, one blob per language, manifest.json, flash.bin.

Every blob is checked on the way in: applying it to the base must give the language's exported
model byte for byte. Files are written atomically and only after every check passed, so a bad
input leaves the output folder as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from polykws.export.api import ExportedModel
from polykws.export.blob import BLOB_ID_BYTES, apply_blob, decode_blob, decode_flash_image, encode_flash_image, meta_id
from polykws.export.convert import ExportError
from polykws.core import atomic_write_bytes, atomic_write_json, sha256_bytes

PACK_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Pack:
    out_dir: Path
    manifest: dict[str, Any]
    flash_image: bytes


def _accuracies(ex: ExportedModel) -> dict[str, Any]:
    ev = ex.meta.get("eval") or {}
    keys = ("float_acc", "int8_acc", "arena_bytes", "test_clips", "tflm_vs_ref_mismatched_samples")
    return {k: ev[k] for k in keys if k in ev}


def pack(base: ExportedModel, languages: Sequence[ExportedModel], out_dir: str | os.PathLike) -> Pack:
    """Write base.tflite, <lang>.blob, manifest.json, flash.bin and flash_layout.json into `out_dir`."""
    if not base.is_base:
        raise ExportError(f"{base.lang!r} is not a base export")
    seen = set()
    blobs = []
    entries = {}
    for ex in languages:
        if ex.blob is None:
            raise ExportError(f"{ex.lang!r} has no blob (is it the base?)")
        if ex.lang in seen:
            raise ExportError(f"language {ex.lang!r} given twice")
        seen.add(ex.lang)
        blob = decode_blob(ex.blob, source=f"{ex.lang}.blob")
        if blob.base_id != base.sha256[: 2 * BLOB_ID_BYTES]:
            raise ExportError(f"{ex.lang}.blob was made for base {blob.base_id}..., not {base.sha256[:16]}...")
        # apply_blob checks the integrity digest over model, language, labels and thresholds, so
        # the labels below (read back from the blob) are the ones the device will show.
        rebuilt = apply_blob(base.tflite, ex.blob, source=f"{ex.lang}.blob")
        if rebuilt != ex.tflite:
            raise ExportError(f"{ex.lang}: base + blob differs from the exported {ex.lang}.tflite")
        if blob.labels != tuple(ex.labels):
            raise ExportError(f"{ex.lang}.blob carries labels {list(blob.labels)}, the export says {list(ex.labels)}")
        blob_meta = ex.meta.get("blob_meta")
        if blob_meta is not None and meta_id(blob_meta) != blob.meta_id:
            raise ExportError(f"{ex.lang}.blob references metadata {blob.meta_id}, the export's hashes to {meta_id(blob_meta)}")
        blobs.append(ex.blob)
        entries[ex.lang] = {
            "file": f"{ex.lang}.blob",
            "blob_bytes": len(ex.blob),
            "blob_pct_of_base": round(100.0 * len(ex.blob) / len(base.tflite), 3),
            "blob_sha256": sha256_bytes(ex.blob),
            "tflite_sha256": ex.sha256,
            "labels": list(blob.labels),
            "thresholds": list(blob.thresholds),
            "blob_digest": blob.digest,
            "blob_meta_id": blob.meta_id,
            "blob_meta": blob_meta,
            "records": len(blob.records()),
            "changed_bytes": sum(len(r.positions) * r.width for r in blob.records()),
            "scales": ex.meta.get("scales"),
            **{k: ex.meta[k] for k in ("method", "budget_params") if k in ex.meta},
            **_accuracies(ex),
        }
    image = encode_flash_image(base.tflite, blobs)
    layout = decode_flash_image(image).layout()
    manifest = {
        "format": "polykws-pack",
        "format_version": PACK_FORMAT_VERSION,
        "frontend": base.frontend.to_dict(),
        "frontend_hash": base.frontend.config_hash(),
        "head_slots": base.head_slots,
        "input_scale": base.input_scale,
        "input_zero_point": base.input_zero_point,
        "base": {
            "file": "base.tflite",
            "lang": base.lang,
            "bytes": len(base.tflite),
            "sha256": base.sha256,
            "labels": list(base.labels),
            "ops": base.describe()["ops"],
            **_accuracies(base),
        },
        "languages": entries,
        "flash_image": {"file": "flash.bin", "bytes": len(image), "sha256": sha256_bytes(image), "layout": "flash_layout.json"},
    }
    out = Path(out_dir)
    atomic_write_bytes(out / "base.tflite", base.tflite)
    for ex in languages:
        atomic_write_bytes(out / f"{ex.lang}.blob", ex.blob)
    atomic_write_bytes(out / "flash.bin", image)
    atomic_write_json(out / "flash_layout.json", layout)
    atomic_write_json(out / "manifest.json", manifest)
    return Pack(out, manifest, image)
