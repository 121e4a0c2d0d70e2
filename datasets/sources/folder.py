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
- A folder that cannot be listed is skipped as ``unreadable`` (never silently empty). A directory
  symlink that leads back to a folder already walked is skipped as ``symlink_loop``, so a loop
  cannot turn into a keyword full of duplicates.
- A source without a registered speaker parser uses GSC's ``<speaker>_nohash_<n>`` names when
  any of its files has one: the files that do not match are then skipped as ``no_speaker``.
  Otherwise its speakers are inferred from the names (``infer.infer_speakers``: ``man_4_07``,
  ``00000027_NO_01``, a speaker sub-folder, ...); only a source no pattern fits gets one
  pseudo-speaker per clip.
- ``speaker_regex`` (a user's pattern with one group) replaces every source's parser; a name it
  does not match is skipped as ``no_speaker``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from ..manifest import ANY_LANGUAGE, NOISE_LABEL
from .registry import SPEAKER_PARSERS, Candidate, SpeakerParser, LayoutSkip, clip_hash_speaker, register_source
from .infer import infer_speakers
from .speakers import gsc_style, user_regex

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".caf", ".webm", ".mp4", ".amr", ".au", ".w64"}


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


class _Unlistable(Exception):
    def __init__(self, folder: Path, exc: OSError):
        super().__init__(str(folder))
        self.folder = folder
        self.detail = f"folder cannot be listed: {exc.strerror or exc}"


def _list(p: Path) -> tuple[list[Path], list[Path]]:
    """(visible sub-folders, visible other entries) of p, sorted; _Unlistable if p cannot be read."""
    try:
        entries = sorted(p.iterdir())
    except OSError as exc:
        raise _Unlistable(p, exc) from None
    dirs = [c for c in entries if c.is_dir() and _visible(c)]
    files = [c for c in entries if not c.is_dir() and _visible(c)]
    return dirs, files


def _unreadable(err: _Unlistable, language: str = "?", source: str = "?") -> LayoutSkip:
    return LayoutSkip(err.folder, "unreadable", err.detail, language, source)


def _walk(folder: Path, seen: set[str], language: str, source: str) -> Iterator[Path | LayoutSkip]:
    """Every visible file below folder, sorted, depth first; unreadable folders and directory
    symlinks that lead to a folder already walked (loops, second paths) come out as skips."""
    real = os.path.realpath(folder)
    if real in seen:
        yield LayoutSkip(folder, "symlink_loop", f"leads back to {real}, which is already scanned", language, source)
        return
    seen.add(real)
    try:
        dirs, files = _list(folder)
    except _Unlistable as err:
        yield _unreadable(err, language, source)
        return
    entries = sorted([*dirs, *files])
    for entry in entries:
        if entry in dirs:
            yield from _walk(entry, seen, language, source)
        else:
            yield entry


def _misplaced(files: list[Path], language: str = "?", source: str = "?") -> Iterator[LayoutSkip]:
    for f in files:
        if f.suffix.lower() in AUDIO_SUFFIXES:
            yield LayoutSkip(f, "misplaced", "audio file outside any <lang>/<source>/<keyword>/ folder", language, source)


def _noise_candidates(folder: Path, root: Path, source: str, seen: set[str]) -> Iterator[Candidate | LayoutSkip]:
    for f in _walk(folder, seen, ANY_LANGUAGE, source):
        if isinstance(f, LayoutSkip):
            yield f
            continue
        if f.suffix.lower() not in AUDIO_SUFFIXES:
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


def _keyword_files(src_dir: Path, language: str, source: str, seen: set[str]) -> Iterator[tuple[str, Path] | LayoutSkip]:
    """(keyword, file) for every file of every keyword folder of one source, and the skips."""
    try:
        kw_dirs, _ = _list(src_dir)
    except _Unlistable as err:
        yield _unreadable(err, language, source)
        return
    for kw_dir in kw_dirs:
        if kw_dir.name == NOISE_LABEL:
            continue
        for f in _walk(kw_dir, seen, language, source):
            yield f if isinstance(f, LayoutSkip) else (kw_dir.name, f)


def root_listing(root: Path, seen: set[str], language: str = "?", source: str = "?"):
    """Yields the noise of root/_background_noise_ (or root's unreadable skip); returns root's
    (sub-folders, files), or None when root cannot be listed."""
    noise_root = root / NOISE_LABEL
    if noise_root.is_dir():
        yield from _noise_candidates(noise_root, root, "noise", seen)
    try:
        return _list(root)
    except _Unlistable as err:
        yield _unreadable(err, language, source)
        return None


def iter_folder(root: Path, *, languages=None, sources=None, speaker_regex: str | None = None, **_) -> Iterator[Candidate | LayoutSkip]:
    """`speaker_regex` (one group) names every source's speakers instead of the registered parsers."""
    root = Path(root)
    user_parse = user_regex(speaker_regex) if speaker_regex is not None else None
    seen: set[str] = set()
    listing = yield from root_listing(root, seen)
    if listing is None:
        return
    lang_dirs, root_files = listing
    yield from _misplaced(root_files)
    for lang_dir in lang_dirs:
        if lang_dir.name == NOISE_LABEL:
            continue
        language = lang_dir.name
        if languages and language not in languages:
            continue
        try:
            src_dirs, lang_files = _list(lang_dir)
        except _Unlistable as err:
            yield _unreadable(err, language)
            continue
        yield from _misplaced(lang_files, language)
        for src_dir in src_dirs:
            source = src_dir.name
            if sources and source not in sources:
                continue
            try:
                kw_dirs, src_files = _list(src_dir)
            except _Unlistable as err:
                yield _unreadable(err, language, source)
                continue
            yield from _misplaced(src_files, language, source)
            for kw_dir in kw_dirs:
                if kw_dir.name == NOISE_LABEL:
                    yield from _noise_candidates(kw_dir, root, source, seen)
            parser = SpeakerParser(source, source, user_parse) if user_parse else SPEAKER_PARSERS.get(source)
            official = _official_lists(src_dir)
            found = list(_keyword_files(src_dir, language, source, seen))
            yield from (x for x in found if isinstance(x, LayoutSkip))
            files = [x for x in found if not isinstance(x, LayoutSkip)]
            yield from with_speakers(files, src_dir, language, source, parser, official)


def with_speakers(files: list[tuple[str, Path]], src_dir: Path, language: str, source: str, parser: SpeakerParser | None,
                  official: dict[str, str] | None = None) -> Iterator[Candidate | LayoutSkip]:
    """Candidates for one source's (keyword, file) pairs, each with its speaker id.

    The source's parser (or the user's regex) names the speakers when there is one. Without it,
    GSC-style names are the source's speaker ids as soon as one file has one, so one odd name costs
    that file, not the source's ids; other names go through pattern inference, and only a source
    no pattern fits gets one pseudo-speaker per clip.
    """
    official = official or {}
    inferred = None
    gsc_named = parser is None and any(gsc_style(f.name) is not None for _, f in files)
    if parser is None and not gsc_named:
        inferred = infer_speakers([(label, f.relative_to(src_dir / label).as_posix()) for label, f in files])
        if inferred.pattern is None:
            inferred = None
    for n, (label, f) in enumerate(files):
        rel = f.relative_to(src_dir).as_posix()
        if parser is not None and not parser.hashed:
            raw = parser.parse(f.name)
            if raw is None:
                yield LayoutSkip(f, "no_speaker", f"file name does not match the {source} speaker pattern", language, source)
                continue
            speaker, hashed = f"{parser.namespace}:{raw}", False
        elif gsc_named:
            raw = gsc_style(f.name)
            if raw is None:
                problem = f"the other files of {source} are named <speaker>_nohash_<n>, this one is not"
                yield Candidate(f, language, label, "", source, official.get(rel), False, problem)
                continue
            speaker, hashed = f"{source}:{raw}", False
        elif inferred is not None:
            raw = inferred.ids[n]
            if raw is None:
                problem = f"{inferred.matched} of the {len(files)} files of {source} are named {inferred.pattern.name}, this one is not"
                yield Candidate(f, language, label, "", source, official.get(rel), False, problem, inferred.pattern.name)
                continue
            yield Candidate(f, language, label, f"{source}:{raw}", source, official.get(rel), False, "", inferred.pattern.name)
            continue
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
    "uk/my_recordings/one/man_4_01.mp3, uk/my_recordings/two/man_4_02.mp3",
)
