"""The plain folder of keyword folders: ``<root>/<keyword>/<file>``, with any file names.

This is how most people keep recordings (and how Edge Impulse and microWakeWord exports look), so
a user's folder is read as it is:

- The folder carries no language: the caller names it (``language``, from ``--lang``).
- The source is the folder's own name; speakers come from the user's regex or, without one, from
  the names' pattern (``infer.infer_speakers``), a speaker sub-folder
  (``<keyword>/<speaker>/<file>``) included. No pattern: one pseudo-speaker per clip.
- ``<root>/_background_noise_`` holds background noise; audio files directly in ``<root>`` are
  skipped as ``misplaced``; everything else below a keyword folder is a candidate clip, as in the
  folder layout.

Detection looks for audio directly in the root's sub-folders or one level below them, and for none
three folders down, where the ``<lang>/<source>/<keyword>/<file>`` corpora keep theirs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from polykws.core import PolykwsError

from ..manifest import NOISE_LABEL
from .folder import AUDIO_SUFFIXES, _walk, root_listing, with_speakers
from .registry import Candidate, LayoutSkip, SpeakerParser, register_source
from .speakers import user_regex

# Entries looked at per folder when detecting: enough to see audio, cheap on a huge corpus root.
_DETECT_PEEK = 64


def _has_audio(folder: Path) -> bool:
    try:
        for i, entry in enumerate(folder.iterdir()):
            if i >= _DETECT_PEEK:
                break
            if entry.suffix.lower() in AUDIO_SUFFIXES and not entry.name.startswith(".") and entry.is_file():
                return True
    except OSError:
        return False
    return False


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name != NOISE_LABEL)
    except OSError:
        return []


def _audio_depths(root: Path) -> set[int]:
    """Depths below root (2: root/a/file, 3: root/a/b/file, 4: root/a/b/c/file) where audio files sit;
    it stops at the first depth-4 file, which settles the question."""
    depths: set[int] = set()
    for d1 in _subfolders(root)[:_DETECT_PEEK]:
        if _has_audio(d1):
            depths.add(2)
        for d2 in _subfolders(d1)[:_DETECT_PEEK]:
            if _has_audio(d2):
                depths.add(3)
            for d3 in _subfolders(d2)[:_DETECT_PEEK]:
                if _has_audio(d3):
                    return depths | {4}
    return depths


def detect_keywords(root: Path) -> bool:
    """Audio in root's sub-folders (or in speaker folders inside them) and none three folders down,
    where the <lang>/<source>/<keyword>/ layout keeps it: a stray file in a language folder of
    that layout is that layout's misplaced file, not a plain folder."""
    depths = _audio_depths(Path(root))
    return 4 not in depths and bool(depths & {2, 3})


def iter_keywords(root: Path, *, languages=None, sources=None, language: str | None = None, speaker_regex: str | None = None,
                  **_) -> Iterator[Candidate | LayoutSkip]:
    root = Path(root)
    if not language:
        raise PolykwsError(f"{root} is a plain <keyword>/<file> folder, which names no language; pass the language code (--lang)")
    source = root.name or "data"
    if (languages and language not in languages) or (sources and source not in sources):
        return
    seen: set[str] = set()
    listing = yield from root_listing(root, seen, language, source)
    if listing is None:
        return
    kw_dirs, root_files = listing
    for f in root_files:
        if f.suffix.lower() in AUDIO_SUFFIXES:
            yield LayoutSkip(f, "misplaced", "audio file outside any <keyword>/ folder", language, source)
    files: list[tuple[str, Path]] = []
    for kw_dir in kw_dirs:
        if kw_dir.name == NOISE_LABEL:
            continue
        for f in _walk(kw_dir, seen, language, source):
            if isinstance(f, LayoutSkip):
                yield f
            else:
                files.append((kw_dir.name, f))
    parser = SpeakerParser(source, source, user_regex(speaker_regex)) if speaker_regex is not None else None
    yield from with_speakers(files, root, language, source, parser)


register_source(
    "keywords",
    detect_keywords,
    iter_keywords,
    "<root>/<keyword>/<file>, any file names (a folder per keyword, as most tools export)",
    "one/man_4_01.mp3, two/man_4_02.mp3 (or one/anna/take1.wav)",
)
