"""The data check a user's own recordings get before adaptation (`polykws adapt --data`, `add-language`).

The recordings are read by the one scanner (`scan`: every layout it knows, every file decoded,
skips counted by reason), then each keyword's clips are measured: clip count, speakers, duration
and level statistics, and the clips that are too short, near-silent or clipped, each named.
Thresholds a keyword-spotting engineer would accept live in one frozen `DataCheckConfig`: below
the minimum is an error (no usable speaker-disjoint split or too little to learn from), below the
recommendation a warning.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polykws.core import ConfigError, PolykwsError

from ._parallel import parallel_map
from .audio import BadAudioError, decode_audio, to_mono
from .manifest import ClipRecord
from .scan import ScanResult, nothing_usable_help, scan
from .splits import SplitConfig

# Full scale is 1.0; samples at or above this magnitude count as clipped.
CLIP_LEVEL = 0.999
# Floor of the dBFS figures (an all-zero stretch would be -inf).
DBFS_FLOOR = -120.0

FLAG_REASONS = {
    "too_short": "shorter than the minimum clip duration: the word is likely cut",
    "quiet": "RMS level below the near-silence threshold: little or no speech",
    "clipped": "too many samples at full scale: the recording is distorted",
}


@dataclass(frozen=True)
class DataCheckConfig:
    """How much data adaptation needs, and what a bad clip is."""

    # Below this a keyword is an error: a few clips per speaker split cannot train or score it.
    min_clips_per_keyword: int = 10
    # Below this a warning: GSC-style KWS wants tens of clips per keyword.
    recommended_clips_per_keyword: int = 20
    # Below this an error: speaker-disjoint splits need a validation, a test and a training speaker.
    min_speakers: int = 3
    # Below this a warning: accuracy on 1-2 held-out speakers says little about new voices.
    recommended_speakers: int = 10
    min_duration_s: float = 0.3
    quiet_rms_dbfs: float = -50.0
    # Share of a clip's samples at full scale above which it counts as clipped.
    max_clipped_fraction: float = 0.001

    def __post_init__(self) -> None:
        for name in ("min_clips_per_keyword", "recommended_clips_per_keyword", "min_speakers", "recommended_speakers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"data check {name} must be an integer >= 1, got {v!r}")
        if self.recommended_clips_per_keyword < self.min_clips_per_keyword or self.recommended_speakers < self.min_speakers:
            raise ConfigError("data check recommendations must be >= the minimums")
        if self.min_duration_s < 0 or not 0 <= self.max_clipped_fraction < 1:
            raise ConfigError("data check min_duration_s must be >= 0 and max_clipped_fraction in [0, 1)")


@dataclass(frozen=True)
class ClipLevel:
    """One clip's measured duration and level."""

    path: str
    duration_s: float
    rms_dbfs: float
    peak_dbfs: float
    clipped_fraction: float


@dataclass(frozen=True)
class KeywordCheck:
    keyword: str
    clips: int
    speakers: int
    splits: dict[str, int]
    duration_s: tuple[float, float, float]  # min, median, max
    rms_dbfs: tuple[float, float, float]
    peak_dbfs_max: float


@dataclass
class DataCheck:
    """The check's result: per-keyword rows, flagged clips, scan skips, errors and warnings."""

    root: str
    layout: str
    language: str
    keywords: list[KeywordCheck]
    flagged: list[tuple[str, str, str]]  # (path, reason, detail)
    skipped: list[tuple[str, str, str]]  # (path, reason, detail) from the scan
    speakers: int
    speakers_from_names: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # How the speaker ids were read when the names were not a known source's: the inferred naming
    # pattern ("<speaker>_<n>") or "--speaker-regex"; "" for a registered parser or official lists.
    speaker_rule: str = ""
    speaker_examples: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def flag_counts(self) -> Counter:
        return Counter(reason for _, reason, _ in self.flagged)

    def skip_counts(self) -> Counter:
        return Counter(reason for _, reason, _ in self.skipped)

    def raise_on_errors(self) -> None:
        if self.errors:
            raise PolykwsError(f"data check of {self.root} ({self.language}) failed:\n  " + "\n  ".join(self.errors))

    def to_dict(self) -> dict:
        return {
            "root": self.root, "layout": self.layout, "language": self.language, "speakers": self.speakers,
            "speakers_from_names": self.speakers_from_names, "speaker_rule": self.speaker_rule,
            "speaker_examples": list(self.speaker_examples),
            "keywords": [vars(k) for k in self.keywords],
            "flagged": [{"path": p, "reason": r, "detail": d} for p, r, d in self.flagged],
            "skipped": [{"path": p, "reason": r, "detail": d} for p, r, d in self.skipped],
            "errors": list(self.errors), "warnings": list(self.warnings),
        }


def scan_user_data(
    root: str | os.PathLike, language: str, *, speaker_regex: str | None = None, split: SplitConfig = SplitConfig(),
    workers: int | None = None, progress: bool = False,
) -> ScanResult:
    """Scan a folder of one language's recordings in any layout `scan` knows, split per keyword.

    A plain ``<data>/<keyword>/<file>`` folder and GSC-layout folders carry no language, so their
    clips get `language`. Speakers come from the layout (registered parsers, GSC names, MSWC lists)
    or are inferred from the names; `speaker_regex` (one group, matched at the start of each file
    name) replaces both for the folder layouts. Splits are stratified by keyword
    (`splits.plan_stratified_splits`), so a keyword with 3+ speakers has a validation and a test voice.
    """
    from .sources import detect_layout

    root = Path(root)
    if not root.is_dir():
        raise PolykwsError(f"--data {root}: not a folder")
    layout = detect_layout(root).name
    options: dict = {"gsc_language": language, "language": language}
    if speaker_regex is not None:
        if layout not in ("folder", "keywords"):
            raise ConfigError(f"--speaker-regex applies to the folder layouts; {root} is {layout}, whose speakers come from its own names or lists")
        options["speaker_regex"] = speaker_regex
    return scan(root, layout=layout, languages=[language], split=split, workers=workers, progress=progress, stratify=True, **options)


def _measure_chunk(paths: list[str]) -> list[tuple]:
    out = []
    for path in paths:
        try:
            data, sr = decode_audio(path)
        except BadAudioError as exc:  # the scan decoded it a moment ago; a file changed since
            out.append(("bad", exc.reason, exc.detail))
            continue
        x = to_mono(data).astype(np.float64)
        rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
        peak = float(np.abs(x).max()) if x.size else 0.0
        clipped = float(np.mean(np.abs(x) >= CLIP_LEVEL)) if x.size else 0.0
        out.append(("ok", x.shape[0] / sr, _dbfs(rms), _dbfs(peak), clipped))
    return out


def _dbfs(v: float) -> float:
    return max(DBFS_FLOOR, 20.0 * float(np.log10(v))) if v > 0 else DBFS_FLOOR


def measure_clips(records: list[ClipRecord], workers: int | None = None) -> list[ClipLevel | tuple[str, str, str]]:
    """Duration and level of each clip (decoded again, in full); a file that no longer decodes is (path, reason, detail)."""
    paths = [r.path for r in records]
    chunks = [paths[i : i + 32] for i in range(0, len(paths), 32)]
    probes: list[tuple] = []
    for res in parallel_map(_measure_chunk, chunks, workers=workers, min_items_per_worker=4, description="measuring levels", progress=False):
        probes.extend(res)
    return [ClipLevel(p, *probe[1:]) if probe[0] == "ok" else (p, probe[1], probe[2]) for p, probe in zip(paths, probes)]


def _stats(values: list[float]) -> tuple[float, float, float]:
    return (float(np.min(values)), float(np.median(values)), float(np.max(values))) if values else (float("nan"),) * 3


def check_data(result: ScanResult, language: str, keywords: list[str] | tuple[str, ...] | None = None,
               cfg: DataCheckConfig = DataCheckConfig(), workers: int | None = None) -> DataCheck:
    """Measure `language`'s clips in a scan (only `keywords`, when given) and judge them against `cfg`."""
    rows = [r for r in result.clips if r.language == language]
    if not rows:
        where = f"{result.layout} layout"
        if result.layout == "folder":
            folders = sorted(p.name for p in Path(result.root).iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
            where += f" <root>/<lang>/<source>/<keyword>/<file>; language folders here: {', '.join(folders) or 'none'}"
        raise PolykwsError(f"{result.root}: no clips of language {language!r} ({where})\n{nothing_usable_help(result.root)}")
    found = sorted({r.label for r in rows})
    if keywords:
        missing = [k for k in keywords if k not in found]
        if missing:
            raise PolykwsError(f"{result.root}: keywords {missing} have no {language} clips; keywords found: {', '.join(found)}")
        rows = [r for r in rows if r.label in keywords]
    order = list(keywords) if keywords else found
    levels = measure_clips(rows, workers)
    flagged: list[tuple[str, str, str]] = []
    by_kw: dict[str, list[tuple[ClipRecord, ClipLevel]]] = defaultdict(list)
    for r, lv in zip(rows, levels):
        if not isinstance(lv, ClipLevel):
            flagged.append(lv)
            continue
        by_kw[r.label].append((r, lv))
        if lv.duration_s < cfg.min_duration_s:
            flagged.append((r.path, "too_short", f"{lv.duration_s:.2f} s < {cfg.min_duration_s:g} s"))
        if lv.rms_dbfs < cfg.quiet_rms_dbfs:
            flagged.append((r.path, "quiet", f"RMS {lv.rms_dbfs:.1f} dBFS < {cfg.quiet_rms_dbfs:g} dBFS"))
        if lv.clipped_fraction > cfg.max_clipped_fraction:
            flagged.append((r.path, "clipped", f"{100 * lv.clipped_fraction:.2f}% of samples at full scale"))
    kw_rows = []
    for kw in order:
        items = by_kw.get(kw, [])
        kw_rows.append(KeywordCheck(
            keyword=kw,
            clips=len(items),
            speakers=len({r.speaker_id for r, _ in items}),
            splits=dict(Counter(r.split for r, _ in items)),
            duration_s=_stats([lv.duration_s for _, lv in items]),
            rms_dbfs=_stats([lv.rms_dbfs for _, lv in items]),
            peak_dbfs_max=max((lv.peak_dbfs for _, lv in items), default=float("nan")),
        ))
    lang_skips = [(s.path, s.reason, s.detail) for s in result.skipped if s.language in (language, "?")]
    hashed = any(lang == language for lang, _ in result.hashed_speakers)
    speakers = len({r.speaker_id for r in rows})
    rules = sorted({rule for (lang, _), rule in result.speaker_rules.items() if lang == language})
    examples = tuple(sorted({r.speaker_id.split(":", 1)[-1] for r in rows})[:3]) if rules else ()
    check = DataCheck(result.root, result.layout, language, kw_rows, sorted(flagged), lang_skips, speakers, not hashed,
                      speaker_rule=", ".join(rules), speaker_examples=examples)
    _judge(check, cfg, rows)
    return check


def _judge(check: DataCheck, cfg: DataCheckConfig, rows: list[ClipRecord]) -> None:
    if not check.speakers_from_names:
        check.warnings.append(
            "the file names carry no speaker ids, so every clip counts as its own speaker and the val/test splits may share "
            "speakers with train (accuracy would be optimistic); pass --speaker-regex with one group that extracts the speaker "
            r"from a file name, e.g. --speaker-regex '^([a-z]+)_' for 'anna_03.wav'"
        )
    elif check.speakers < cfg.min_speakers:
        check.errors.append(f"{check.speakers} speaker(s); speaker-disjoint train/val/test splits need at least {cfg.min_speakers}")
    elif check.speakers < cfg.recommended_speakers:
        check.warnings.append(f"{check.speakers} speakers; at least {cfg.recommended_speakers} are recommended (held-out accuracy rests on "
                              f"{sum(1 for s in {(r.speaker_id, r.split) for r in rows} if s[1] == 'test')} test speaker(s))")
    few = [k for k in check.keywords if check.speakers_from_names and 0 < k.speakers < cfg.min_speakers]
    if few and check.speakers >= cfg.min_speakers:
        check.errors.append(f"each keyword needs at least {cfg.min_speakers} speakers (one each for train, val and test); "
                            + ", ".join(f"{k.keyword!r} has {k.speakers}" for k in few))
    for k in check.keywords:
        if k.clips < cfg.min_clips_per_keyword:
            check.errors.append(f"keyword {k.keyword!r}: {k.clips} usable clip(s); at least {cfg.min_clips_per_keyword} are needed "
                                f"({cfg.recommended_clips_per_keyword} recommended)")
        elif k.clips < cfg.recommended_clips_per_keyword:
            check.warnings.append(f"keyword {k.keyword!r}: {k.clips} clips; at least {cfg.recommended_clips_per_keyword} are recommended")
        missing = [s for s in ("train", "val", "test") if not k.splits.get(s)]
        if missing and k.clips and k not in few:
            who = f"its {k.speakers} speaker(s)" if check.speakers_from_names else f"its {k.clips} clips"
            check.errors.append(f"keyword {k.keyword!r}: no clip in the {' or '.join(missing)} split ({who} all fall in other "
                                "splits); record it with more speakers")
    counts = check.flag_counts()
    if counts:
        check.warnings.append("flagged clips (kept): " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())))
    if check.skipped:
        check.warnings.append("skipped files (not used): " + ", ".join(f"{n} {reason}" for reason, n in sorted(check.skip_counts().items())))
