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
    """The splits labels.json counts; one it counts but whose file is missing, or a file it does
    not count, is an error naming the file (never a silently smaller set of splits)."""
    meta = load_meta(folder)
    counts = meta.get("counts")
    if not isinstance(counts, dict) or not set(counts) <= set(SPLIT_NAMES):
        raise PolykwsError(f"{folder / 'labels.json'}: 'counts' must map split names ({', '.join(SPLIT_NAMES)}) to sizes")
    labels = tuple(meta["labels"])
    out = {}
    for name in SPLIT_NAMES:
        p = folder / f"{name}.npz"
        if name not in counts:
            if p.exists():
                raise PolykwsError(f"{p}: not listed in labels.json (a stale split from another run?)")
            continue
        if not p.exists():
            raise PolykwsError(f"{p}: missing, but labels.json records {counts[name]} examples in split {name!r}")
        try:
            with np.load(p, allow_pickle=False) as z:
                out[name] = StoredSplit(z["x"], z["y"], labels, tuple(z["speakers"].tolist()), tuple(z["paths"].tolist()))
        except (OSError, ValueError, KeyError) as exc:
            raise PolykwsError(f"{p}: unreadable feature split ({type(exc).__name__}: {exc})") from None
        if len(out[name]) != counts[name]:
            raise PolykwsError(f"{p}: holds {len(out[name])} examples, labels.json records {counts[name]}")
    return out


def load_meta(folder: Path) -> dict[str, Any]:
    meta_path = folder / "labels.json"
    try:
        meta = json.loads(meta_path.read_bytes())
    except FileNotFoundError:
        raise PolykwsError(f"{meta_path}: feature splits not found") from None
    except (OSError, ValueError) as exc:
        raise PolykwsError(f"{meta_path}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("labels"), list):
        raise PolykwsError(f"{meta_path}: expected an object with a 'labels' list")
    return meta
