"""Scan a corpus root into manifest rows: find files, decode every one, split by speaker.

Every file a layout proposes is decoded in full (that is how empty, truncated, non-audio, NaN,
silent and unreadable files are caught, and it gives the true duration). Files that fail are
*skipped*: counted per reason, listed in the result, printed by ``polykws data scan``; with
``strict=True`` any skip is an error naming the files.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from polykws.core import PolykwsError

from ._parallel import parallel_map
from .audio import BAD_AUDIO_REASONS, BadAudioError, decode_audio, sniff_container
from .manifest import NOISE_LABEL, ClipRecord
from .sources import Candidate, LayoutSkip, SourceLayout, detect_layout, get_layout
from .splits import SplitConfig, plan_splits, plan_stratified_splits

SKIP_REASONS = {
    **BAD_AUDIO_REASONS,
    "misplaced": "an audio file outside any keyword folder of its layout",
    "no_speaker": "the file name does not match its source's speaker-id pattern",
    "symlink_loop": "a directory symlink leads back to a folder already scanned (a loop or a second path to the same files)",
}


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str
    detail: str
    language: str
    source: str

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason, "detail": self.detail, "language": self.language, "source": self.source}


@dataclass
class ScanResult:
    root: str
    layout: str
    records: list[ClipRecord]
    skipped: list[SkippedFile]
    split_modes: dict[str, str] = field(default_factory=dict)
    # (language, source) pairs whose speaker ids are per-clip hashes (no real ids exist).
    hashed_speakers: set[tuple[str, str]] = field(default_factory=set)
    # Containers found (from the files' bytes, not extensions) per (language, source).
    containers: dict[tuple[str, str], Counter] = field(default_factory=dict)
    # Problems that do not drop a file but weaken the splits (e.g. a keyword with no test clip).
    warnings: list[str] = field(default_factory=list)
    # (language, source) -> the naming pattern its speaker ids were inferred from ("<speaker>_<n>").
    speaker_rules: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def clips(self) -> list[ClipRecord]:
        return [r for r in self.records if not r.is_noise]

    @property
    def noise(self) -> list[ClipRecord]:
        return [r for r in self.records if r.is_noise]

    def skip_counts(self) -> Counter:
        return Counter(s.reason for s in self.skipped)

    def summary(self) -> list[dict]:
        """One row per (language, source): clips, keywords, speakers, split sizes, skips by reason."""
        groups: dict[tuple[str, str], list[ClipRecord]] = defaultdict(list)
        for r in self.records:
            groups[(r.language, r.source)].append(r)
        skips: dict[tuple[str, str], Counter] = defaultdict(Counter)
        for s in self.skipped:
            skips[(s.language, s.source)][s.reason] += 1
        rows = []
        for key in sorted(set(groups) | set(skips)):
            recs = groups.get(key, [])
            split_counts = Counter(r.split for r in recs)
            namespaces = sorted({r.speaker_namespace for r in recs})
            rows.append(
                {
                    "language": key[0],
                    "source": key[1],
                    "clips": len(recs),
                    "keywords": len({r.label for r in recs}),
                    "speakers": len({r.speaker_id for r in recs}),
                    "speakers_hashed": key in self.hashed_speakers,
                    "train": split_counts.get("train", 0),
                    "val": split_counts.get("val", 0),
                    "test": split_counts.get("test", 0),
                    "speakers_train": len({r.speaker_id for r in recs if r.split == "train"}),
                    "speakers_val": len({r.speaker_id for r in recs if r.split == "val"}),
                    "speakers_test": len({r.speaker_id for r in recs if r.split == "test"}),
                    "split_mode": ",".join(sorted({self.split_modes.get(ns, "official") for ns in namespaces})),
                    "hours": sum(r.duration_s for r in recs) / 3600.0,
                    "containers": dict(self.containers.get(key, {})),
                    "skipped": dict(skips.get(key, {})),
                }
            )
        return rows


def _probe_chunk(chunk: list[tuple[str, bool]]) -> list[tuple]:
    """Decode each file fully: ("ok", frames, rate, container) or ("bad", reason, detail)."""
    out = []
    for path, is_noise in chunk:
        try:
            data, sr = decode_audio(path, allow_silent=is_noise)
            with open(path, "rb") as f:
                container = sniff_container(f.read(64)) or "?"
            out.append(("ok", int(data.shape[0]), int(sr), container))
        except BadAudioError as exc:
            out.append(("bad", exc.reason, exc.detail))
    return out


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def scan(
    root: str | os.PathLike,
    *,
    layout: str = "auto",
    languages: Iterable[str] | None = None,
    sources: Iterable[str] | None = None,
    split: SplitConfig = SplitConfig(),
    strict: bool = False,
    workers: int | None = None,
    progress: bool = False,
    stratify: bool = False,
    **layout_options,
) -> ScanResult:
    """Scan root with the named (or detected) layout; decode every file; assign speaker splits.

    stratify=True splits each speaker namespace per keyword (`plan_stratified_splits`: every
    keyword with 3+ speakers gets a validation and a test speaker), as small user folders need;
    the default is the corpus split every pipeline run uses."""
    root = Path(root)
    if not root.is_dir():
        raise PolykwsError(f"corpus root {root} is not a folder")
    chosen: SourceLayout = detect_layout(root) if layout == "auto" else get_layout(layout)
    languages = set(languages) if languages else None
    sources = set(sources) if sources else None
    candidates: list[Candidate] = []
    skipped: list[SkippedFile] = []
    for item in chosen.iter_candidates(root, languages=languages, sources=sources, **layout_options):
        if isinstance(item, LayoutSkip):
            skipped.append(SkippedFile(str(item.path), item.reason, item.detail, item.language, item.source))
        else:
            candidates.append(item)

    jobs = [(str(c.path), c.label == NOISE_LABEL) for c in candidates]
    probes: list[tuple] = []
    for chunk_result in parallel_map(_probe_chunk, _chunks(jobs, 32), workers=workers, min_items_per_worker=8, description=f"decoding {root.name}", progress=progress):
        probes.extend(chunk_result)

    good: list[tuple[Candidate, int, int]] = []
    containers: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for cand, probe in zip(candidates, probes):
        if probe[0] == "ok" and cand.speaker_problem:
            skipped.append(SkippedFile(str(cand.path), "no_speaker", cand.speaker_problem, cand.language, cand.source))
        elif probe[0] == "ok":
            good.append((cand, probe[1], probe[2]))
            containers[(cand.language, cand.source)][probe[3]] += 1
        else:
            skipped.append(SkippedFile(str(cand.path), probe[1], probe[2], cand.language, cand.source))
    if strict and skipped:
        shown = "\n".join(f"  {s.path}: {s.reason} ({s.detail})" for s in skipped[:20])
        more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        raise PolykwsError(f"--strict: {len(skipped)} file(s) would be skipped:\n{shown}{more}")

    if stratify:
        splits, modes = plan_stratified_splits(
            ((c.speaker_id, None if c.label == NOISE_LABEL else f"{c.language}/{c.label}", c.official_split) for c, _, _ in good), split)
    else:
        splits, modes = plan_splits(((c.speaker_id, c.official_split) for c, _, _ in good), split)
    records = [
        ClipRecord(
            path=str(c.path),
            language=c.language,
            label=c.label,
            speaker_id=c.speaker_id,
            split=s,
            duration_s=frames / sr,
            sample_rate_hz=sr,
            source=c.source,
        )
        for (c, frames, sr), s in zip(good, splits)
    ]
    if not records:
        where = f" for language(s) {', '.join(sorted(languages))}" if languages else ""
        where += f" and source(s) {', '.join(sorted(sources))}" if sources else ""
        raise PolykwsError(
            f"corpus root {root}: no usable audio files{where} ({len(skipped)} skipped"
            + (f": {dict(Counter(s.reason for s in skipped))}" if skipped else "")
            + f"; read as layout {chosen.name}: {chosen.description or 'its own structure'})\n"
            + nothing_usable_help(root)
        )
    hashed = {(c.language, c.source) for c, _, _ in good if c.speaker_hashed}
    skipped.sort(key=lambda s: (s.language, s.source, s.reason, s.path))
    rules = {(c.language, c.source): c.speaker_rule for c, _, _ in good if c.speaker_rule}
    return ScanResult(str(root), chosen.name, records, skipped, modes, hashed, dict(containers), split_warnings(records), rules)


def folder_tree(root: str | os.PathLike, *, depth: int = 2, per_folder: int = 8) -> list[str]:
    """The first `depth` levels below root as indented lines: folders first, each listing at most
    `per_folder` entries and a count of the rest, so a huge folder stays a few lines."""
    lines: list[str] = []

    def walk(folder: Path, level: int) -> None:
        try:
            entries = sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name))
        except OSError as exc:
            lines.append("  " * (level + 2) + f"(cannot be listed: {exc.strerror or exc})")
            return
        for entry in entries[:per_folder]:
            is_dir = entry.is_dir()
            lines.append("  " * (level + 2) + entry.name + ("/" if is_dir else ""))
            if is_dir and level + 1 < depth:
                walk(entry, level + 1)
        if len(entries) > per_folder:
            lines.append("  " * (level + 2) + f"... {len(entries) - per_folder} more")
        if not entries:
            lines.append("  " * (level + 2) + "(empty)")

    walk(Path(root), 0)
    return lines


def nothing_usable_help(root: str | os.PathLike) -> str:
    """What a folder holding nothing usable looks like, and the layouts that are read, each with an example."""
    from .sources import SOURCES

    tree = "\n".join(folder_tree(root))
    layouts = "\n".join(f"  {s.name}: {s.description}" + (f"\n      e.g. {s.example}" if s.example else "")
                         for s in sorted(SOURCES.values(), key=lambda s: s.name != "keywords"))
    return f"the folder as seen (two levels):\n  {Path(root).name}/\n{tree}\nlayouts read:\n{layouts}"


def split_warnings(records: list[ClipRecord]) -> list[str]:
    """One line per keyword that has clips but no val or no test clip (too few speakers or clips)."""
    per_kw: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for r in records:
        if not r.is_noise:
            per_kw[(r.language, r.label)][r.split] += 1
    out = []
    for (lang, label), n in sorted(per_kw.items()):
        missing = [s for s in ("val", "test") if not n.get(s)]
        if missing:
            out.append(f"{lang}/{label}: {sum(n.values())} clip(s), none in {' or '.join(missing)}")
    return out
