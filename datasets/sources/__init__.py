"""Source layouts and per-source speaker-id parsers, both registries.

A *layout* knows how a corpus is laid out on disk and yields :class:`Candidate` rows (path,
language, label, speaker id, source, and the official split when the corpus ships one). Layouts
register themselves with :func:`register_source`; ``scan`` picks the first whose ``detect``
accepts the root (or the one named). Built in: ``gsc_v2`` (Google Speech Commands v2), ``mswc``
(Multilingual Spoken Words Corpus) and ``folder`` (``<root>/<lang>/<source>/<keyword>/<file>``,
the layout of ../shared/data/kws and of the synthesized corpus).

Speaker ids in the folder layout come from file names, which differ per source, so each source
registers a small parser with :func:`register_speaker_parser`. A source without one falls back
to GSC's ``<speaker>_nohash_<n>`` pattern, else to one pseudo-speaker per clip (a hash of its
path); scan reports that, because such splits cannot be speaker-disjoint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from polykws.core import ConfigError


@dataclass(frozen=True)
class Candidate:
    """A file a layout proposes as a clip (or background noise), before its audio is checked."""

    path: Path
    language: str
    label: str
    speaker_id: str
    source: str
    official_split: str | None = None
    # True when no speaker id exists and speaker_id is a per-clip hash.
    speaker_hashed: bool = False
    # Why the file has no speaker id although its source has them; scan skips the file as
    # ``no_speaker`` once its audio decodes (a broken file keeps its audio reason).
    speaker_problem: str = ""


@dataclass(frozen=True)
class LayoutSkip:
    """A file a layout cannot place (e.g. audio outside any keyword folder)."""

    path: Path
    reason: str
    detail: str
    language: str = "?"
    source: str = "?"


@dataclass(frozen=True)
class SourceLayout:
    name: str
    detect: Callable[[Path], bool]
    iter_candidates: Callable[..., Iterator[Candidate | LayoutSkip]]
    description: str = ""


SOURCES: dict[str, SourceLayout] = {}


def register_source(
    name: str,
    detect: Callable[[Path], bool],
    iter_candidates: Callable[..., Iterator[Candidate | LayoutSkip]],
    description: str = "",
) -> SourceLayout:
    """Register a layout. iter_candidates(root, **options) yields Candidate / LayoutSkip."""
    if not name or name in SOURCES:
        raise ConfigError(f"source layout {name!r} is empty or already registered")
    SOURCES[name] = SourceLayout(name, detect, iter_candidates, description)
    return SOURCES[name]


def get_layout(name: str) -> SourceLayout:
    try:
        return SOURCES[name]
    except KeyError:
        raise ConfigError(f"unknown source layout {name!r}; known: {', '.join(SOURCES)}") from None


def detect_layout(root: Path) -> SourceLayout:
    """The first registered layout whose detect() accepts root (folder is the catch-all, last)."""
    for layout in SOURCES.values():
        if layout.name != "folder" and layout.detect(root):
            return layout
    return SOURCES["folder"]


# ---------------------------------------------------------------------------------------------
# Speaker-id parsers (folder layout)


@dataclass(frozen=True)
class SpeakerParser:
    source: str
    namespace: str
    parse: Callable[[str], str | None]
    # True: the source has no speaker ids; ids are per-clip hashes on purpose.
    hashed: bool = False


SPEAKER_PARSERS: dict[str, SpeakerParser] = {}


def register_speaker_parser(
    source: str, parse: Callable[[str], str | None] | None, namespace: str | None = None
) -> SpeakerParser:
    """Register how a folder-layout source names speakers.

    parse(file_name) returns the raw speaker id, or None when the name does not match (the file is
    then skipped as ``no_speaker``). parse=None declares that the source has no speaker ids: each
    clip becomes its own pseudo-speaker (a hash of its relative path). Sources that share speakers
    (two subsets of GSC) pass the same namespace so a speaker gets one split across both.
    """
    parser = SpeakerParser(source, namespace or source, parse or (lambda name: None), hashed=parse is None)
    SPEAKER_PARSERS[source] = parser
    return parser


def clip_hash_speaker(namespace: str, relpath: str) -> str:
    return f"{namespace}:clip-{hashlib.sha1(relpath.encode('utf-8')).hexdigest()[:12]}"


# Layouts and parsers register on import; keep folder last (it is the catch-all).
from . import speakers as _speakers  # noqa: E402,F401
from . import gsc as _gsc  # noqa: E402,F401
from . import mswc as _mswc  # noqa: E402,F401
from . import folder as _folder  # noqa: E402,F401
