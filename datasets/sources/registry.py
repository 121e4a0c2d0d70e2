"""The two registries behind `polykws.datasets.sources`: layouts and per-source speaker parsers.

They live in their own module so the layouts and parsers that register here import it, never the
package that imports them.
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
    # How the speaker id was read when it was inferred from the names ("<speaker>_<n>"); "" otherwise.
    speaker_rule: str = ""


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
    # A few paths as the layout expects them, shown when a folder holds nothing usable.
    example: str = ""


SOURCES: dict[str, SourceLayout] = {}


def register_source(
    name: str,
    detect: Callable[[Path], bool],
    iter_candidates: Callable[..., Iterator[Candidate | LayoutSkip]],
    description: str = "",
    example: str = "",
) -> SourceLayout:
    """Register a layout. iter_candidates(root, **options) yields Candidate / LayoutSkip."""
    if not name or name in SOURCES:
        raise ConfigError(f"source layout {name!r} is empty or already registered")
    SOURCES[name] = SourceLayout(name, detect, iter_candidates, description, example)
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
