"""Speaker ids inferred from the file names of a folder no parser knows.

Users name recordings in a handful of ways (`man_4_07.mp3`, `00000027_NO_01.wav`,
`0a1b2c3d_nohash_2.wav`, `anna-3.wav`, `yes/anna/take1.wav`). Each way is a :class:`NamePattern`;
:func:`infer_speakers` tries them in order and takes the first that

- explains all or nearly all files (at least ``MIN_COVERAGE`` of them), and
- yields a plausible speaker count: more than one, fewer than the files, at least
  ``MIN_CLIPS_PER_SPEAKER`` clips per speaker on average, and
- for the generic patterns, with several keywords, gives ids that mostly recur across keywords: an
  id seen under one keyword only usually has the keyword or a take number in it (`0_george` in
  `0_george_12.wav`), and such an id would put one person in train and test at once.

No fitting pattern leaves the folder without speaker ids (the caller falls back to per-clip
pseudo-speakers and says so). The order runs from the most specific pattern to the most generic,
so a name that several fit gets the specific reading.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .speakers import gsc_style

MIN_COVERAGE = 0.95
MIN_CLIPS_PER_SPEAKER = 2.0
# Generic patterns: share of ids that must occur under two or more keywords (when there are several).
MIN_CROSS_KEYWORD_SHARE = 0.5


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def _rx(pattern: str) -> Callable[[str, str, str], str | None]:
    rx = re.compile(pattern)

    def parse(name: str, keyword: str, relpath: str) -> str | None:
        m = rx.fullmatch(_stem(name))
        return m.group(1) if m and m.group(1) else None

    return parse


def _subfolder(name: str, keyword: str, relpath: str) -> str | None:
    parts = relpath.split("/")
    return parts[0] if len(parts) >= 2 else None


def _nohash(name: str, keyword: str, relpath: str) -> str | None:
    return gsc_style(name)


def _without_keyword(name: str, keyword: str, relpath: str) -> str | None:
    """`yes_anna_3` or `anna_yes_3` under `yes/`: the tokens left once the keyword and the take go."""
    tokens = re.split(r"[_\-]+", _stem(name))
    if len(tokens) < 3 or not tokens[-1].isdigit():
        return None
    rest = [t for t in tokens[:-1] if t.casefold() != keyword.casefold()]
    if len(rest) == len(tokens) - 1 or not rest:
        return None
    return "_".join(rest)


@dataclass(frozen=True)
class NamePattern:
    name: str
    example: str  # a file name and the speaker this pattern reads from it
    parse: Callable[[str, str, str], str | None]  # (file name, keyword, path below the keyword folder) -> id
    # Strong patterns are conventions in their own right and skip the cross-keyword test.
    strong: bool = False


PATTERNS: tuple[NamePattern, ...] = (
    NamePattern("<keyword>/<speaker>/<file>", "yes/anna/take1.wav -> anna", _subfolder, strong=True),
    NamePattern("<speaker>_nohash_<n>", "0a1b2c3d_nohash_2.wav -> 0a1b2c3d", _nohash, strong=True),
    NamePattern("<digits>_<tag>_<n>", "00000027_NO_01.wav -> 00000027", _rx(r"(\d+)_[A-Za-z]+_\d+")),
    NamePattern("<n>_<speaker>_<n>", "0_george_12.wav -> george", _rx(r"\d+_([A-Za-z][A-Za-z0-9]*)_\d+")),
    NamePattern("<keyword>_<speaker>_<n>", "yes_anna_3.wav -> anna", _without_keyword),
    NamePattern("<speaker>_<n>", "man_4_07.mp3 -> man_4", _rx(r"(.+)_\d+")),
    NamePattern("<speaker>-<n>", "anna-03.wav -> anna", _rx(r"(.+)-\d+")),
    NamePattern("<speaker> (<n>)", "anna (3).wav -> anna", _rx(r"(.+?)[ _-]*\(\d+\)")),
)


@dataclass(frozen=True)
class SpeakerInference:
    """What inference found for one folder: the pattern (None when none fits) and each file's id."""

    pattern: NamePattern | None
    ids: tuple[str | None, ...]  # per file, in input order; None: the name does not fit the pattern
    speakers: int = 0
    tried: tuple[str, ...] = field(default_factory=tuple)  # "<pattern>: why not", for patterns that failed

    @property
    def matched(self) -> int:
        return sum(1 for i in self.ids if i is not None)

    def examples(self, k: int = 3) -> list[str]:
        return sorted({i for i in self.ids if i is not None})[:k]


def _judge(pattern: NamePattern, ids: list[str | None], keywords: Sequence[str]) -> str:
    """'' when the ids are plausible, else why not."""
    n = len(ids)
    matched = [(i, k) for i, k in zip(ids, keywords) if i is not None]
    if len(matched) < MIN_COVERAGE * n:
        return f"fits {len(matched)} of {n} names"
    speakers = {i for i, _ in matched}
    if len(speakers) < 2:
        return f"{len(speakers)} speaker"
    if len(speakers) >= len(matched) or len(matched) / len(speakers) < MIN_CLIPS_PER_SPEAKER:
        return f"{len(speakers)} speakers for {len(matched)} clips (fewer than {MIN_CLIPS_PER_SPEAKER:g} each)"
    kws_of: dict[str, set[str]] = defaultdict(set)
    for i, k in matched:
        kws_of[i].add(k)
    if not pattern.strong and len(set(keywords)) >= 2:
        share = sum(1 for s in kws_of.values() if len(s) >= 2) / len(speakers)
        if share < MIN_CROSS_KEYWORD_SHARE:
            return f"{100 * share:.0f}% of its {len(speakers)} ids occur under more than one keyword"
    return ""


def infer_speakers(files: Sequence[tuple[str, str]]) -> SpeakerInference:
    """Speaker ids for (keyword, path below the keyword folder) pairs, from the first plausible pattern."""
    keywords = [k for k, _ in files]
    tried = []
    for pattern in PATTERNS:
        ids = [pattern.parse(rel.rsplit("/", 1)[-1], kw, rel) for kw, rel in files]
        why = _judge(pattern, ids, keywords)
        if not why:
            return SpeakerInference(pattern, tuple(ids), len({i for i in ids if i is not None}), tuple(tried))
        tried.append(f"{pattern.name}: {why}")
    return SpeakerInference(None, (None,) * len(files), 0, tuple(tried))
