"""`polykws pack`: the shipping set - base.tflite, one blob per language, manifest.json, flash.bin.

Every blob is checked on the way in: applying it to the base must give the language's exported
model byte for byte. Nothing is written until every check passed, so a bad input leaves the
output folder as it was. The files are first written into a temporary folder beside the output;
the old manifest.json is removed, the new files renamed into place, blobs of languages the new
pack does not hold are deleted, and the new manifest.json is renamed in last. manifest.json is
therefore the commit mark: a folder with one is a complete pack, and readers (firmware/packreader.py)
take the blob list from it, never from whatever ``*.blob`` files lie around.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from polykws.export.api import ExportedModel
from polykws.export.blob import BLOB_ID_BYTES, apply_blob, decode_blob, decode_flash_image, encode_flash_image, meta_id, needed_base
from polykws.export.convert import ExportError
from polykws.core import atomic_write_bytes, sha256_bytes
from polykws.core import json_default

PACK_FORMAT_VERSION = 1
# The files a pack folder holds besides <lang>.blob; manifest.json goes in last.
PACK_FILES = ("base.tflite", "flash.bin", "flash_layout.json", "manifest.json")


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
    entries = {}
    for ex in languages:
        if ex.lang in seen:
            raise ExportError(f"language {ex.lang!r} given twice")
        seen.add(ex.lang)
        entries[ex.lang] = _language_entry(base, ex)
    return _write_pack(Path(out_dir), base.tflite, _base_entry(base), entries, {ex.lang: ex.blob for ex in languages})


def _language_entry(base: ExportedModel, ex: ExportedModel) -> dict[str, Any]:
    """A language's manifest entry, after checking its blob rebuilds its exported model from `base`."""
    if ex.blob is None:
        raise ExportError(f"{ex.lang!r} has no blob (is it the base?)")
    blob = decode_blob(ex.blob, source=f"{ex.lang}.blob")
    if blob.base_id != base.sha256[: 2 * BLOB_ID_BYTES]:
        raise ExportError(f"{ex.lang}.blob needs {needed_base(blob.base_id, blob.model_size)}; this pack's base is "
                          f"{len(base.tflite)} bytes, SHA-256 {base.sha256[:16]}...")
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
    return {
        "file": f"{ex.lang}.blob",
        "blob_bytes": len(ex.blob),
        "blob_pct_of_base": round(100.0 * len(ex.blob) / len(base.tflite), 3),
        "blob_sha256": sha256_bytes(ex.blob),
        "tflite_sha256": ex.sha256,
        "labels": list(blob.labels),
        "thresholds": list(blob.thresholds),
        "blob_digest": blob.digest,
        # The base the blob patches, as the blob names it (leading bytes of the base's SHA-256).
        "base_id": blob.base_id,
        "blob_meta_id": blob.meta_id,
        "blob_meta": blob_meta,
        "records": len(blob.records()),
        "changed_bytes": sum(len(r.positions) * r.width for r in blob.records()),
        "scales": ex.meta.get("scales"),
        **{k: ex.meta[k] for k in ("method", "budget_params") if k in ex.meta},
        **_accuracies(ex),
    }


def _base_entry(base: ExportedModel) -> dict[str, Any]:
    """The manifest's header fields and `base` section for a base export."""
    return {
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
    }


def _write_pack(out: Path, base_tflite: bytes, base_entry: dict[str, Any], entries: dict[str, dict], blobs: dict[str, bytes]) -> Pack:
    """Build flash.bin (blobs in `entries` order) and the manifest, and publish the folder."""
    image = encode_flash_image(base_tflite, [blobs[lang] for lang in entries])
    layout = decode_flash_image(image).layout()
    manifest = {
        "format": "polykws-pack",
        "format_version": PACK_FORMAT_VERSION,
        **base_entry,
        "languages": entries,
        "flash_image": {"file": "flash.bin", "bytes": len(image), "sha256": sha256_bytes(image), "layout": "flash_layout.json"},
    }
    files = {"base.tflite": base_tflite, **{f"{lang}.blob": blobs[lang] for lang in entries}, "flash.bin": image,
             "flash_layout.json": _json_bytes(layout), "manifest.json": _json_bytes(manifest)}
    _publish(out, files)
    return Pack(out, manifest, image)


def add_language(out_dir: str | os.PathLike, base: ExportedModel, language: ExportedModel, *, replace: bool = False) -> Pack:
    """Add one language to the pack in `out_dir` (or start a pack there) and rewrite flash.bin.

    The base and every other language's blob keep their bytes and manifest entries: each is read
    back, checked against the manifest's SHA-256 and applied to the base before anything is
    written. A language the pack already holds is refused unless `replace`, which keeps its place
    in the flash order.
    """
    out = Path(out_dir)
    if not base.is_base:
        raise ExportError(f"{base.lang!r} is not a base export")
    new_entry = _language_entry(base, language)
    if not (out / "manifest.json").is_file():
        if out.is_dir() and any(out.glob("*.blob")):
            raise ExportError(f"{out}: holds blobs but no manifest.json (an unfinished pack?); give an empty or a complete pack folder")
        return _write_pack(out, base.tflite, _base_entry(base), {language.lang: new_entry}, {language.lang: language.blob})
    manifest = _read_manifest(out / "manifest.json")
    if manifest.get("base", {}).get("sha256") != base.sha256 or _read_input(out / "base.tflite", "pack base") != base.tflite:
        raise ExportError(f"{out}: the pack's base ({manifest.get('base', {}).get('sha256', '?')[:16]}...) is not the base this "
                          f"language was exported against ({base.sha256[:16]}...); a pack holds blobs of one base")
    entries: dict[str, dict] = {}
    blobs: dict[str, bytes] = {}
    for lang, entry in manifest.get("languages", {}).items():
        if lang == language.lang:
            if not replace:
                raise ExportError(f"{out}: the pack already holds language {lang!r}; pass replace (--replace) to swap it")
            entries[lang], blobs[lang] = new_entry, language.blob
            continue
        path = out / str(entry.get("file", f"{lang}.blob"))
        data = _read_input(path, f"{lang} blob")
        if sha256_bytes(data) != entry.get("blob_sha256"):
            raise ExportError(f"{path}: SHA-256 does not match {out / 'manifest.json'}")
        apply_blob(base.tflite, data, source=str(path))
        entries[lang], blobs[lang] = entry, data
    if language.lang not in entries:
        entries[language.lang], blobs[language.lang] = new_entry, language.blob
    base_entry = {k: manifest[k] for k in ("frontend", "frontend_hash", "head_slots", "input_scale", "input_zero_point", "base") if k in manifest}
    return _write_pack(out, base.tflite, {**_base_entry(base), **base_entry}, entries, blobs)


def add_to_flash_image(path: str | os.PathLike, base_tflite: bytes, blob: bytes, *, replace: bool = False) -> bytes:
    """Add a blob to a standalone flash image (or create one) and rewrite it atomically; returns the image.

    The base and the other blobs are copied from the old image byte for byte; the new blob must
    patch the image's base.
    """
    path = Path(path)
    lang = decode_blob(blob, source="new blob").lang
    blobs: list[bytes] = []
    if path.exists():
        image = decode_flash_image(_read_input(path, "flash image"), source=str(path))
        if image.base != bytes(base_tflite):
            raise ExportError(f"{path}: the image's base (SHA-256 {image.base_sha256[:16]}...) is not the base this language was "
                              f"exported against ({sha256_bytes(base_tflite)[:16]}...)")
        for fb in image.blobs:
            if fb.lang == lang and not replace:
                raise ExportError(f"{path}: the image already holds language {lang!r}; pass replace (--replace) to swap it")
            blobs.append(blob if fb.lang == lang else fb.data)
    if lang not in [decode_blob(b).lang for b in blobs]:
        blobs.append(blob)
    data = encode_flash_image(base_tflite, blobs)
    atomic_write_bytes(path, data)
    return data


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_bytes())
    except OSError as exc:
        raise ExportError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != "polykws-pack" or not isinstance(d.get("languages", {}), dict):
        raise ExportError(f"{path}: not a polykws pack manifest")
    return d


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n").encode("utf-8")


def _publish(out: Path, files: dict[str, bytes]) -> None:
    """Write `files` into `out` with manifest.json as the commit mark, and delete stale blobs."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: pack output exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".pack-", dir=out))
    try:
        for name, data in files.items():
            (stage / name).write_bytes(data)
            with open(stage / name, "rb+") as f:
                os.fsync(f.fileno())
        # Without a manifest the folder is not a pack, so no reader mixes old and new files.
        (out / "manifest.json").unlink(missing_ok=True)
        for name in files:
            if name != "manifest.json":
                os.replace(stage / name, out / name)
        for stale in sorted(out.glob("*.blob")):
            if stale.name not in files:
                stale.unlink()
        os.replace(stage / "manifest.json", out / "manifest.json")
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_applied_model(base_path: str | os.PathLike, blob_path: str | os.PathLike, out_path: str | os.PathLike,
                        check_path: str | os.PathLike | None = None) -> bytes:
    """`polykws apply`: base + blob -> the language's .tflite at out_path (atomically); returns its bytes.

    Refuses, before writing anything, an output that is a folder or that is the base or the blob
    itself, and (with check_path) a result that differs from the reference model.
    """
    base_path, blob_path, out = Path(base_path), Path(blob_path), Path(out_path)
    base = _read_input(base_path, "base model")
    blob = _read_input(blob_path, "blob")
    if out.is_dir():
        raise ExportError(f"{out}: output is an existing folder; give a file path such as {out / 'model.tflite'}")
    for role, src in (("base model", base_path), ("blob", blob_path)):
        if out.exists() and out.resolve() == src.resolve():
            raise ExportError(f"{out}: output is the {role} itself; writing there would destroy it")
    model = apply_blob(base, blob, source=str(blob_path))
    if check_path is not None and model != _read_input(Path(check_path), "reference model"):
        raise ExportError(f"{blob_path}: base + blob differs from {check_path}; nothing written")
    atomic_write_bytes(out, model)
    return model


def _read_input(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ExportError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ExportError(f"{path}: {what} is a folder, not a file") from None
    except OSError as exc:
        raise ExportError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
