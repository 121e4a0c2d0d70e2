"""The manifest: one JSON object per line, one line per usable clip, written atomically.

Every source (GSC v2, MSWC, the folder-per-keyword layout, the synthesized corpus) ends up as the
same rows, so everything downstream is source-agnostic. Background-noise recordings are rows too,
with the label ``_background_noise_``; they feed the ``_silence_`` class and noise mixing.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from polykws.core import ConfigError, PolykwsError, atomic_write_text

SPLITS = ("train", "val", "test")
NOISE_LABEL = "_background_noise_"
SILENCE_LABEL = "_silence_"
UNKNOWN_LABEL = "_unknown_"
# Noise rows may serve every language: the synthesized corpus and GSC's noise are not speech.
ANY_LANGUAGE = "*"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ClipRecord:
    """One usable clip (or one background-noise recording).

    speaker_id is namespaced ``<namespace>:<id>`` (e.g. ``gsc:0a7c2a8d``, ``fsdd:george``) so ids
    from different corpora never collide, while corpora that share speakers (two subsets of Google
    Speech Commands) share a namespace and therefore a split. duration_s and sample_rate_hz describe
    the file as stored (before resampling and pad/crop).

    A ``train_only`` row (a synthesized corpus a config adds as training material) is always in the
    train split: speaker folds never move it, and evaluation streams never hold it, so what is
    measured stays recorded speech of held-out speakers.
    """

    path: str
    language: str
    label: str
    speaker_id: str
    split: str
    duration_s: float
    sample_rate_hz: int
    source: str
    train_only: bool = False

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("clip path must be set")
        if not self.language:
            raise ConfigError(f"{self.path}: language must be set")
        if not self.label:
            raise ConfigError(f"{self.path}: label must be set")
        if self.split not in SPLITS:
            raise ConfigError(f"{self.path}: split must be one of {SPLITS}, got {self.split!r}")
        if not (isinstance(self.duration_s, (int, float)) and math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ConfigError(f"{self.path}: duration_s must be > 0, got {self.duration_s!r}")
        if int(self.sample_rate_hz) <= 0:
            raise ConfigError(f"{self.path}: sample_rate_hz must be > 0, got {self.sample_rate_hz!r}")
        if not self.source:
            raise ConfigError(f"{self.path}: source must be set")
        if not isinstance(self.train_only, bool):
            raise ConfigError(f"{self.path}: train_only must be true or false, got {self.train_only!r}")
        if self.train_only and self.split != "train":
            raise ConfigError(f"{self.path}: a train_only row must be in the train split, got {self.split!r}")

    @property
    def is_noise(self) -> bool:
        return self.label == NOISE_LABEL

    @property
    def speaker_namespace(self) -> str:
        return self.speaker_id.split(":", 1)[0] if ":" in self.speaker_id else self.source

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.train_only:
            # A recorded row's line stays what it is without the marker, so manifests of recordings keep their bytes.
            del d["train_only"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ClipRecord":
        names = [f.name for f in fields(cls)]
        missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING]
        if missing:
            raise ConfigError(f"manifest row lacks fields {missing}")
        return cls(**{n: d[n] for n in names if n in d})


def write_manifest(path: str | os.PathLike, records: Iterable[ClipRecord]) -> Path:
    """Write records as JSONL (sorted keys, one row per line), atomically."""
    lines = [json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False) for r in records]
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_manifest(path: str | os.PathLike) -> list[ClipRecord]:
    """Read a JSONL manifest; a bad row is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise PolykwsError(f"manifest not found: {path}")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(ClipRecord.from_dict(json.loads(line)))
            except (json.JSONDecodeError, ConfigError, TypeError) as exc:
                raise PolykwsError(f"{path}:{lineno}: bad manifest row: {exc}") from None
    return records
