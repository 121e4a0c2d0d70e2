"""The folder-per-keyword layout: ``<root>/<lang>/<source>/<keyword>/<file>``.

- Every regular, non-hidden file inside a keyword folder is a candidate clip: its container is
  checked later from its bytes, so a stray non-audio file is reported (``not_audio``), not
  silently dropped.
- Files directly inside ``<root>``, ``<lang>/`` or ``<lang>/<source>/`` are metadata (README,
  LICENSE, list files) unless they look like audio, which is then skipped as ``misplaced``.
- A source folder holding GSC's ``validation_list.txt`` / ``testing_list.txt`` has those splits
  used as official splits.
- ``_background_noise_`` folders (at the root, or in place of a keyword) hold background noise,
  usable by every language.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..manifest import ANY_LANGUAGE, NOISE_LABEL
from . import SPEAKER_PARSERS, Candidate, LayoutSkip, clip_hash_speaker, register_source
from .speakers import gsc_style

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".caf", ".webm", ".mp4", ".amr", ".au", ".w64"}


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _sorted_dirs(p: Path) -> list[Path]:
    return sorted(c for c in p.iterdir() if c.is_dir() and _visible(c))


def _sorted_files(p: Path) -> list[Path]:
    return sorted(c for c in p.iterdir() if not c.is_dir() and _visible(c))


def _misplaced(files: list[Path], language: str = "?", source: str = "?") -> Iterator[LayoutSkip]:
    for f in files:
        if f.suffix.lower() in AUDIO_SUFFIXES:
            yield LayoutSkip(f, "misplaced", "audio file outside any <lang>/<source>/<keyword>/ folder", language, source)


def _noise_candidates(folder: Path, root: Path, source: str) -> Iterator[Candidate]:
    for f in sorted(folder.rglob("*")):
        if f.is_dir() or not _visible(f) or f.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        rel = f.relative_to(root).as_posix()
        # One "speaker" per noise file: noise files are split by file, never cut across splits.
        yield Candidate(f, ANY_LANGUAGE, NOISE_LABEL, f"{source}-noise:{rel}", source)


def _official_lists(source_dir: Path) -> dict[str, str]:
    official: dict[str, str] = {}
    for name, split in (("validation_list.txt", "val"), ("testing_list.txt", "test")):
        lst = source_dir / name
        if lst.is_file():
            for line in lst.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.strip():
                    official[line.strip()] = split
    return official


def iter_folder(root: Path, *, languages=None, sources=None, **_) -> Iterator[Candidate | LayoutSkip]:
    root = Path(root)
    noise_root = root / NOISE_LABEL
    if noise_root.is_dir():
        yield from _noise_candidates(noise_root, root, "noise")
    yield from _misplaced(_sorted_files(root))
    for lang_dir in _sorted_dirs(root):
        if lang_dir.name == NOISE_LABEL:
            continue
        language = lang_dir.name
        if languages and language not in languages:
            continue
        yield from _misplaced(_sorted_files(lang_dir), language)
        for src_dir in _sorted_dirs(lang_dir):
            source = src_dir.name
            if sources and source not in sources:
                continue
            yield from _misplaced(_sorted_files(src_dir), language, source)
            parser = SPEAKER_PARSERS.get(source)
            official = _official_lists(src_dir)
            for kw_dir in _sorted_dirs(src_dir):
                if kw_dir.name == NOISE_LABEL:
                    yield from _noise_candidates(kw_dir, root, source)
                    continue
                label = kw_dir.name
                for f in sorted(kw_dir.rglob("*")):
                    if f.is_dir() or not _visible(f):
                        continue
                    rel = f.relative_to(src_dir).as_posix()
                    if parser is not None and not parser.hashed:
                        raw = parser.parse(f.name)
                        if raw is None:
                            yield LayoutSkip(f, "no_speaker", f"file name does not match the {source} speaker pattern", language, source)
                            continue
                        speaker, hashed = f"{parser.namespace}:{raw}", False
                    else:
                        raw = gsc_style(f.name) if parser is None else None
                        if raw is not None:
                            speaker, hashed = f"{source}:{raw}", False
                        else:
                            speaker, hashed = clip_hash_speaker(source, f"{language}/{rel}"), True
                    yield Candidate(f, language, label, speaker, source, official.get(rel), hashed)


def detect_folder(root: Path) -> bool:
    return Path(root).is_dir()


register_source(
    "folder",
    detect_folder,
    iter_folder,
    "<root>/<lang>/<source>/<keyword>/<file> (../shared/data/kws, the synthesized corpus)",
)
