"""Multilingual Spoken Words Corpus (MLCommons, Mazumder et al. 2021).

Layout after extracting ``audio/<lang>.tar.gz`` and ``splits/<lang>.tar.gz`` under one root:

    <root>/<lang>/clips/<word>/common_voice_<lang>_<id>.opus     1 s, 48 kHz Opus
    <root>/<lang>/<lang>_splits.csv      SET,LINK,WORD,VALID,SPEAKER,GENDER
    <root>/<lang>/<lang>_{train,dev,test}.csv                   LINK,WORD,VALID,SPEAKER,GENDER

``LINK`` is the clip's path below ``clips/`` (``<word>/common_voice_<lang>_<id>.opus``), ``SET`` is
TRAIN / DEV / TEST, ``SPEAKER`` a hashed Common Voice client id. The split CSVs may also sit in
``<root>``, ``<root>/splits`` or ``<root>/splits/<lang>``. Clips the CSVs do not list get their
speaker from nowhere: they become per-clip pseudo-speakers split by hash, and scan reports them.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from .registry import Candidate, LayoutSkip, clip_hash_speaker, register_source

_SET_TO_SPLIT = {"TRAIN": "train", "DEV": "val", "VALIDATION": "val", "TEST": "test"}


def _split_csvs(root: Path, lang: str) -> list[tuple[Path, str | None]]:
    """(csv path, split implied by the file name or None when the CSV has a SET column)."""
    found = []
    for folder in (root / lang, root, root / "splits", root / "splits" / lang):
        if not folder.is_dir():
            continue
        combined = folder / f"{lang}_splits.csv"
        if combined.is_file():
            return [(combined, None)]
        for name, split in (("train", "train"), ("dev", "val"), ("test", "test")):
            p = folder / f"{lang}_{name}.csv"
            if p.is_file():
                found.append((p, split))
        if found:
            return found
    return found


def read_mswc_splits(root: Path, lang: str) -> dict[str, tuple[str, str]]:
    """{LINK: (split, speaker)} from a language's split CSVs (column names are matched upper-case)."""
    table: dict[str, tuple[str, str]] = {}
    for path, implied in _split_csvs(Path(root), lang):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                continue
            reader.fieldnames = [c.strip().upper() for c in reader.fieldnames]
            for row in reader:
                link = (row.get("LINK") or "").strip()
                if not link:
                    continue
                split = implied or _SET_TO_SPLIT.get((row.get("SET") or "").strip().upper())
                if split is None:
                    continue
                table[link] = (split, (row.get("SPEAKER") or "").strip())
    return table


def detect_mswc(root: Path) -> bool:
    root = Path(root)
    return any((d / "clips").is_dir() for d in root.iterdir() if d.is_dir())


def iter_mswc(root: Path, *, languages=None, sources=None, source_name: str = "mswc", **_) -> Iterator[Candidate | LayoutSkip]:
    root = Path(root)
    if sources and source_name not in sources:
        return
    for lang_dir in sorted(d for d in root.iterdir() if d.is_dir() and (d / "clips").is_dir()):
        lang = lang_dir.name
        if languages and lang not in languages:
            continue
        table = read_mswc_splits(root, lang)
        clips = lang_dir / "clips"
        for word_dir in sorted(d for d in clips.iterdir() if d.is_dir()):
            for f in sorted(word_dir.iterdir()):
                if f.is_dir() or f.name.startswith("."):
                    continue
                link = f"{word_dir.name}/{f.name}"
                split, speaker = table.get(link, (None, ""))
                if speaker:
                    yield Candidate(f, lang, word_dir.name, f"mswc:{speaker}", source_name, split)
                else:
                    yield Candidate(f, lang, word_dir.name, clip_hash_speaker("mswc-unlisted", f"{lang}/{link}"), source_name, split, speaker_hashed=True)


register_source("mswc", detect_mswc, iter_mswc, "MSWC: <root>/<lang>/clips/<word>/*.opus + <lang>_splits.csv",
                "de/clips/ja/common_voice_de_123.opus, de/de_splits.csv")
