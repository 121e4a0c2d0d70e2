"""Feature splits as stage artifacts: one .npz per split plus labels.json, bit-exact round trip."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from polykws.core import PolykwsError, atomic_write_bytes, atomic_write_json

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class StoredSplit:
    """The FeatureSplit fields the stages use (x, y, labels, speakers, paths)."""

    x: np.ndarray  # (N, frames, features) float32
    y: np.ndarray  # (N,) int64
    labels: tuple[str, ...]
    speakers: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(len(self.y))


def save_splits(out_dir: Path, splits: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, int]:
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = None
    counts = {}
    for name in SPLIT_NAMES:
        s = splits.get(name)
        if s is None:
            continue
        if labels is None:
            labels = tuple(s.labels)
        elif tuple(s.labels) != labels:
            raise PolykwsError(f"split {name} has labels {tuple(s.labels)}, others {labels}")
        buf = io.BytesIO()
        # np.savez (not _compressed): zip entries carry no timestamps that vary, so bytes are reproducible.
        np.savez(
            buf,
            x=np.ascontiguousarray(np.asarray(s.x, dtype=np.float32)),
            y=np.asarray(s.y, dtype=np.int64),
            speakers=np.asarray(list(getattr(s, "speakers", ()) or ()), dtype=str),
            paths=np.asarray(list(getattr(s, "paths", ()) or ()), dtype=str),
        )
        atomic_write_bytes(out_dir / f"{name}.npz", buf.getvalue())
        counts[name] = int(len(s.y))
    if labels is None:
        raise PolykwsError("no splits to save")
    atomic_write_json(out_dir / "labels.json", {"labels": list(labels), "counts": counts, **(extra or {})})
    return counts


def load_splits(folder: Path) -> dict[str, StoredSplit]:
    meta_path = folder / "labels.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise PolykwsError(f"{meta_path}: feature splits not found") from None
    labels = tuple(meta["labels"])
    out = {}
    for name in SPLIT_NAMES:
        p = folder / f"{name}.npz"
        if not p.exists():
            continue
        with np.load(p, allow_pickle=False) as z:
            out[name] = StoredSplit(z["x"], z["y"], labels, tuple(z["speakers"].tolist()), tuple(z["paths"].tolist()))
    return out


def load_meta(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "labels.json").read_text())
