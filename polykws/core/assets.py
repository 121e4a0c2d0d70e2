"""The shipped base: package data under polykws/assets/base, verified against its manifest.

Every language blob is made against one base, so the base ships with the package instead of being
rebuilt per user (rebuilds differ bit for bit). `base.json` records the SHA-256 and size of every
shipped file; `shipped_base()` checks each one before a caller reads it, so a damaged or edited
install fails by name instead of producing blobs no device base accepts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from polykws.core.errors import PolykwsError
from polykws.core.io import sha256_file

SHIPPED_BASE_FORMAT = "polykws-shipped-base"
SHIPPED_BASE_FORMAT_VERSION = 1
MANIFEST_NAME = "base.json"
CARD_NAME = "MODEL_CARD.md"
# The files a shipped base consists of: the float checkpoint and the int8 TFLite it exports to.
CHECKPOINT_NAME = "base.pt"
TFLITE_NAME = "base.tflite"
SHIPPED_FILES = (CHECKPOINT_NAME, TFLITE_NAME)


class ShippedBaseError(PolykwsError):
    """The shipped base is missing, or a file of it does not match its recorded SHA-256."""


@dataclass(frozen=True)
class ShippedBase:
    """A verified shipped base: its folder, manifest and file paths."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def checkpoint(self) -> Path:
        return self.folder / CHECKPOINT_NAME

    @property
    def tflite(self) -> Path:
        return self.folder / TFLITE_NAME

    @property
    def card(self) -> Path:
        return self.folder / CARD_NAME

    @property
    def state_sha256(self) -> str:
        return str(self.manifest["state_sha256"])

    @property
    def tflite_sha256(self) -> str:
        return str(self.manifest["files"][TFLITE_NAME]["sha256"])

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.manifest["labels"])

    @property
    def head_slots(self) -> int:
        return int(self.manifest["head_slots"])


def shipped_base_dir() -> Path:
    """Where the installed package keeps the base (a plain folder: the package is never zipped)."""
    return Path(str(resources.files("polykws.assets") / "base"))


def read_manifest(folder: Path) -> dict[str, Any]:
    """`folder/base.json`, checked for shape (not yet against the files)."""
    path = folder / MANIFEST_NAME
    try:
        d = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ShippedBaseError(f"{path}: the shipped base's manifest is missing (reinstall polykws, or pass your own base with --base)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShippedBaseError(f"{path}: unreadable manifest ({type(exc).__name__}: {exc})") from None
    if not isinstance(d, dict) or d.get("format") != SHIPPED_BASE_FORMAT or d.get("format_version") != SHIPPED_BASE_FORMAT_VERSION:
        raise ShippedBaseError(f"{path}: not a {SHIPPED_BASE_FORMAT} v{SHIPPED_BASE_FORMAT_VERSION} manifest")
    files = d.get("files")
    if not isinstance(files, dict) or any(name not in files for name in SHIPPED_FILES):
        raise ShippedBaseError(f"{path}: 'files' must record {', '.join(SHIPPED_FILES)}")
    for name, rec in files.items():
        if not (isinstance(rec, dict) and isinstance(rec.get("sha256"), str) and isinstance(rec.get("bytes"), int)):
            raise ShippedBaseError(f"{path}: files.{name} needs 'sha256' (hex) and 'bytes' (integer)")
    for key, kind in (("state_sha256", str), ("labels", list), ("head_slots", int)):
        if not isinstance(d.get(key), kind):
            raise ShippedBaseError(f"{path}: {key!r} is missing or not a {kind.__name__}")
    return d


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest records exists with its recorded size and SHA-256."""
    for name, rec in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ShippedBaseError(f"{path}: missing from the shipped base (reinstall polykws, or pass your own base with --base)")
        got = sha256_file(path)
        if got != rec["sha256"] or path.stat().st_size != rec["bytes"]:
            raise ShippedBaseError(
                f"{path}: SHA-256 {got[:16]}... ({path.stat().st_size} B) does not match the {rec['sha256'][:16]}... "
                f"({rec['bytes']} B) recorded in {MANIFEST_NAME}; the installed base is damaged or edited "
                "(reinstall polykws, or pass your own base with --base)")


def shipped_base(folder: Path | None = None) -> ShippedBase:
    """The shipped base, every file verified against `base.json` (ShippedBaseError names the bad file)."""
    folder = Path(folder) if folder is not None else shipped_base_dir()
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    return ShippedBase(folder, manifest)


def shipped_base_frontend() -> str:
    """The shipped base's frontend kind, from its manifest (what its features must be computed with)."""
    kind = read_manifest(shipped_base_dir()).get("frontend", {}).get("kind")
    if not isinstance(kind, str):
        raise ShippedBaseError(f"{shipped_base_dir() / 'base.json'}: the manifest names no frontend kind")
    return kind
