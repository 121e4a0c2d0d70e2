"""What the firmware takes from an export pack, and the benchmark's test vectors.

A pack (`polykws pack`, export/) holds the base `.tflite`, one `.blob` per language, a
`manifest.json` and `flash.bin` (the PKWF image). The firmware needs the flash image, the base
language's code and labels (a blob carries its own labels; the base model does not) and the
frontend configuration. Test vectors for the benchmark come from an `.npz` with `<lang>_x`
(float features (N, frames, features), or int8 already quantized) and `<lang>_y` (class indices).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polykws.export.blob import BlobError, apply_blob, decode_blob, decode_flash_image, encode_flash_image
from polykws.firmware.gen import BenchSet
from polykws.core import PolykwsError, sha256_bytes


@dataclass(frozen=True)
class FirmwarePack:
    source: Path
    flash_image: bytes
    base_lang: str
    base_labels: tuple[str, ...]
    frontend: dict[str, Any]
    languages: tuple[str, ...]  # blob languages in image order
    # The exporter's host TFLM accuracy per language on its test split (manifest), when recorded.
    export_accuracy: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def base(self) -> bytes:
        return decode_flash_image(self.flash_image).base

    def labels_of(self, lang: str) -> tuple[str, ...]:
        img = decode_flash_image(self.flash_image)
        for i, e in enumerate(img.entries):
            if e.lang == lang:
                return decode_blob(img.blob_bytes(i)).labels
        if lang == self.base_lang:
            return self.base_labels
        raise PolykwsError(f"{self.source}: no language {lang!r} (have {self.base_lang}, {', '.join(self.languages)})")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise PolykwsError(f"{path}: not found") from None
    except OSError as exc:
        raise PolykwsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise PolykwsError(f"{path}: not valid JSON ({exc})") from None


def _base_description(pack: Path, manifest: dict) -> dict:
    """The base model's description: manifest['base'], else the export's `<lang>.json` without a blob."""
    base = manifest.get("base")
    if isinstance(base, dict) and "labels" in base and "lang" in base:
        return base
    candidates = []
    for p in sorted(pack.glob("*.json")):
        if p.name == "manifest.json":
            continue
        d = _read_json(p)
        if isinstance(d, dict) and d.get("format") == "polykws-export" and "blob_bytes" not in d:
            candidates.append(d)
    if len(candidates) != 1:
        raise PolykwsError(
            f"{pack}: cannot tell the base language: manifest.json has no base.lang/base.labels and "
            f"{len(candidates)} blob-less export descriptions were found"
        )
    return candidates[0]


def _verified(path: Path, sha256: Any, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PolykwsError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise PolykwsError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise PolykwsError(f"{path}: SHA-256 differs from the one manifest.json records (a stale or damaged file)")
    return data


def _pack_image(pack: Path, manifest: dict, base_d: dict) -> bytes:
    """The flash image: flash.bin, or one built from the files the manifest (or the export
    descriptions) name. Every file with a recorded SHA-256 is checked; ``*.blob`` files that
    nothing names are stale leftovers and never read."""
    flash_d = manifest.get("flash_image") if isinstance(manifest.get("flash_image"), dict) else {}
    flash = pack / "flash.bin"
    if flash.exists():
        return _verified(flash, flash_d.get("sha256"), "flash image")
    langs = manifest.get("languages")
    if isinstance(langs, dict) and langs:
        blobs = []
        for lang, entry in langs.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "/" in entry["file"]:
                raise PolykwsError(f"{pack / 'manifest.json'}: languages.{lang} names no blob file")
            blobs.append(_verified(pack / entry["file"], entry.get("blob_sha256"), f"{lang} blob"))
        base_entry = manifest.get("base") or {}
        base = _verified(pack / str(base_entry.get("file", "base.tflite")), base_entry.get("sha256"), "base model")
        return encode_flash_image(base, blobs)
    # An export folder: <lang>.json descriptions name their blobs and hashes.
    blobs = []
    for p in sorted(pack.glob("*.json")):
        d = _read_json(p) if p.name != "manifest.json" else {}
        if isinstance(d, dict) and d.get("format") == "polykws-export" and "blob_sha256" in d:
            blobs.append(_verified(pack / f"{d.get('lang')}.blob", d["blob_sha256"], f"{d.get('lang')} blob"))
    base_path = pack / "base.tflite" if (pack / "base.tflite").exists() else pack / f"{base_d['lang']}.tflite"
    if not base_path.exists():
        raise PolykwsError(f"{pack}: neither flash.bin nor {base_path.name} found")
    return encode_flash_image(_verified(base_path, base_d.get("tflite_sha256") or base_d.get("sha256"), "base model"), blobs)


def _check_models_against_manifest(pack: Path, manifest: dict, img) -> None:
    """The models the device will run are the ones manifest.json names: the base's SHA-256 and,
    per language, the SHA-256 of base + blob, wherever the manifest records them."""
    base_entry = manifest.get("base") if isinstance(manifest.get("base"), dict) else {}
    if "sha256" in base_entry and sha256_bytes(img.base) != base_entry["sha256"]:
        raise PolykwsError(f"{pack}: the image's base model differs from manifest.json's base.sha256")
    listed = manifest.get("languages") if isinstance(manifest.get("languages"), dict) else {}
    for i, e in enumerate(img.entries):
        entry = listed.get(e.lang)
        if isinstance(entry, dict) and "tflite_sha256" in entry:
            try:
                model = apply_blob(img.base, img.blob_bytes(i), source=f"{pack}/{e.lang}")
            except BlobError as exc:
                raise PolykwsError(str(exc)) from None
            if sha256_bytes(model) != entry["tflite_sha256"]:
                raise PolykwsError(f"{pack}: base + {e.lang} blob differs from manifest.json's {e.lang}.tflite_sha256")


def load_pack(path: str | Path) -> FirmwarePack:
    """Read a pack directory; every blob must patch the pack's base (checked by the PKWF parser)."""
    pack = Path(path)
    if not pack.is_dir():
        raise PolykwsError(f"{pack}: pack directory not found")
    manifest = _read_json(pack / "manifest.json") if (pack / "manifest.json").exists() else {}
    if not isinstance(manifest, dict):
        raise PolykwsError(f"{pack / 'manifest.json'}: top level is a {type(manifest).__name__}, not an object")
    base_d = _base_description(pack, manifest)
    if not isinstance(base_d.get("lang"), str) or not isinstance(base_d.get("labels"), list):
        raise PolykwsError(f"{pack}: the base description needs a string lang and a list of labels")
    image = _pack_image(pack, manifest, base_d)
    try:
        img = decode_flash_image(image, source=str(pack / "flash.bin"))
    except BlobError as exc:
        raise PolykwsError(str(exc)) from None
    listed = manifest.get("languages")
    # The manifest is JSON with sorted keys and the device switches by name, so the two must hold
    # the same languages, in any order.
    if isinstance(listed, dict) and listed and sorted(listed) != sorted(e.lang for e in img.entries):
        raise PolykwsError(
            f"{pack}: manifest.json lists {', '.join(listed)} but flash.bin holds {', '.join(e.lang for e in img.entries)}"
        )
    _check_models_against_manifest(pack, manifest, img)
    frontend = base_d.get("frontend") or manifest.get("frontend") or {}
    if not isinstance(frontend, dict):
        raise PolykwsError(f"{pack}: frontend must be an object")
    export_acc = {}
    for lang, entry in [(base_d.get("lang"), base_d), *(listed.items() if isinstance(listed, dict) else ())]:
        if isinstance(entry, dict) and entry.get("int8_acc") is not None:
            try:
                export_acc[str(lang)] = {"int8_acc": float(entry["int8_acc"]), "test_clips": entry.get("test_clips")}
            except (TypeError, ValueError):
                raise PolykwsError(f"{pack}: {lang}.int8_acc is not a number") from None
    return FirmwarePack(
        source=pack,
        flash_image=image,
        base_lang=str(base_d["lang"]),
        base_labels=tuple(str(x) for x in base_d["labels"]),
        frontend=dict(frontend),
        languages=tuple(e.lang for e in img.entries),
        export_accuracy=export_acc,
    )


class BenchSets(list):
    """The benchmark sets, plus the pack languages that have no test vectors (counted, shown)."""

    def __init__(self, items=(), missing: tuple[str, ...] = ()):
        super().__init__(items)
        self.missing = tuple(missing)


def subset_indices(n: int, per_lang: int, seed: int = 0) -> np.ndarray:
    """All of 0..n-1 when they fit, else a seeded random subset in ascending order.

    Test splits are often ordered by class, so "the first N" would benchmark one or two classes.
    """
    if n <= per_lang:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=per_lang, replace=False))


def load_bench_sets(path: str | Path, pack: FirmwarePack, per_lang: int, langs: list[str] | None = None) -> BenchSets:
    """Up to `per_lang` vectors of each language in `path` (.npz; a seeded subset when there are more),
    quantized with the base's input scale."""
    from polykws.export.evaluate import quantize_features

    path = Path(path)
    try:
        z = np.load(path)
    except (OSError, ValueError) as exc:
        raise PolykwsError(f"{path}: cannot read test vectors ({exc})") from None
    available = sorted({k[: -len("_x")] for k in z.files if k.endswith("_x")})
    wanted = langs or [lang for lang in (pack.base_lang, *pack.languages) if lang in available]
    if not wanted:
        raise PolykwsError(f"{path}: no <lang>_x arrays for any pack language ({pack.base_lang}, {', '.join(pack.languages)})")
    missing = tuple(lang for lang in (pack.base_lang, *pack.languages) if lang not in wanted)
    if missing:
        print(f"note: {path} has no test vectors for {len(missing)} pack language(s) ({', '.join(missing)}): "
              "they are built into the image but not benchmarked", file=sys.stderr)
    sets = BenchSets(missing=missing)
    base = pack.base
    for lang in wanted:
        if f"{lang}_x" not in z.files or f"{lang}_y" not in z.files:
            raise PolykwsError(f"{path}: missing {lang}_x or {lang}_y")
        x_all, y_all = z[f"{lang}_x"], z[f"{lang}_y"]
        if len(x_all) != len(y_all):
            raise PolykwsError(f"{path}: {lang}_x has {len(x_all)} vectors but {lang}_y has {len(y_all)} labels")
        keep = subset_indices(len(x_all), per_lang)
        x, y = x_all[keep], y_all[keep].astype(np.int64)
        if x.dtype == np.int8:
            q = x.reshape(len(x), -1)
        else:
            q = quantize_features(base, x.astype(np.float32)).reshape(len(x), -1)
        n_labels = len(pack.labels_of(lang))
        if len(y) and (y.min() < 0 or y.max() >= n_labels):
            raise PolykwsError(f"{path}: {lang}_y has class {int(y.max())} but {lang} has {n_labels} labels")
        sets.append(BenchSet(lang, np.ascontiguousarray(q, dtype=np.int8), y))
    return sets
