"""Speaker-disjoint, deterministic train/val/test splits from a hash of the speaker id.

The rule is Google Speech Commands' ``which_set``: SHA-1 of the speaker id mapped to a percentage
in [0, 100); below ``val_pct`` is validation, below ``val_pct + test_pct`` is test, the rest train.
It depends only on the speaker id, so a speaker lands in the same split whatever else is in the
corpus, and adding speakers never moves existing ones.

That rule is only reliable with many speakers. With 17 speakers (the shared Gujarati set) a 10 %
test share is 1.7 speakers *on average*, and the hash can easily give zero. So a speaker namespace
with fewer than ``min_speakers_for_hash`` speakers uses *quota* mode: the same per-speaker hash
percentage, sorted, with the thresholds moved so validation and test each get
``max(min_eval_speakers, round(n * pct / 100))`` speakers (the lowest hashes go to validation,
then test, as in which_set). Both modes are deterministic and speaker-disjoint; quota mode trades
stability under added speakers for test sets that exist.

Namespaces listed in ``hash_namespaces`` (GSC, MSWC) always use the plain hash so that local
subsets agree with the official lists. Rows that already carry an official split (GSC's
validation_list/testing_list, MSWC's split CSVs) keep it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from typing import Callable, Iterable

from polykws.core import ConfigError

from .manifest import ClipRecord

# GSC: "a large prime-ish number so that the hash is spread evenly" (input_data.py).
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1
SPLIT_MODES = ("auto", "hash", "quota")


def speaker_percentage(speaker: str) -> float:
    """GSC's which_set percentage in [0, 100) for a speaker id (namespace prefix stripped)."""
    raw = speaker.split(":", 1)[1] if ":" in speaker else speaker
    digest = hashlib.sha1(raw.encode("utf-8")).hexdigest()
    return (int(digest, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)


def which_set(filename_or_speaker: str, val_pct: float = 10.0, test_pct: float = 10.0) -> str:
    """GSC's which_set: 'train' | 'val' | 'test' from a file name (``<hash>_nohash_<n>.wav``) or id."""
    name = re.sub(r"_nohash_.*$", "", filename_or_speaker.rsplit("/", 1)[-1])
    p = speaker_percentage(name)
    if p < val_pct:
        return "val"
    if p < val_pct + test_pct:
        return "test"
    return "train"


@dataclass(frozen=True)
class SplitConfig:
    val_pct: float = 10.0
    test_pct: float = 10.0
    mode: str = "auto"
    # auto: namespaces with at least this many speakers use the plain hash, smaller ones quotas.
    min_speakers_for_hash: int = 100
    # quota mode: speakers each eval split gets at least (1 below 10 speakers, else this many).
    min_eval_speakers: int = 2
    hash_namespaces: tuple[str, ...] = ("gsc", "mswc")

    def __post_init__(self) -> None:
        if self.mode not in SPLIT_MODES:
            raise ConfigError(f"split mode must be one of {SPLIT_MODES}, got {self.mode!r}")
        for name in ("val_pct", "test_pct"):
            v = getattr(self, name)
            if not 0.0 <= v < 50.0:
                raise ConfigError(f"{name} must be in [0, 50), got {v!r}")
        if self.val_pct + self.test_pct >= 100.0:
            raise ConfigError("val_pct + test_pct must stay below 100")
        if self.min_speakers_for_hash < 1 or self.min_eval_speakers < 0:
            raise ConfigError("min_speakers_for_hash must be >= 1 and min_eval_speakers >= 0")
        object.__setattr__(self, "hash_namespaces", tuple(self.hash_namespaces))

    def to_dict(self) -> dict:
        return {
            "val_pct": self.val_pct,
            "test_pct": self.test_pct,
            "mode": self.mode,
            "min_speakers_for_hash": self.min_speakers_for_hash,
            "min_eval_speakers": self.min_eval_speakers,
            "hash_namespaces": list(self.hash_namespaces),
        }


def _eval_quota(n: int, cfg: SplitConfig) -> tuple[int, int]:
    """Quota mode's validation and test speaker counts for n speakers (1 each below 10 speakers)."""
    floor = 1 if n < 10 else cfg.min_eval_speakers
    n_val = max(floor, round(n * cfg.val_pct / 100)) if cfg.val_pct > 0 else 0
    n_test = max(floor, round(n * cfg.test_pct / 100)) if cfg.test_pct > 0 else 0
    return n_val, n_test


def _quota_assignment(speakers: list[str], cfg: SplitConfig) -> dict[str, str]:
    n = len(speakers)
    ordered = sorted(speakers, key=lambda s: (speaker_percentage(s), s))
    if n < 3:
        # Too few speakers to hold any out without emptying train: all train (scan reports it).
        return {s: "train" for s in ordered}
    n_val, n_test = _eval_quota(n, cfg)
    while n_val + n_test > n - 1:  # keep at least one training speaker
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        elif n_test > 0:
            n_test -= 1
    out = {}
    for i, s in enumerate(ordered):
        out[s] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    return out


def speaker_splits(speakers: Iterable[str], cfg: SplitConfig, namespace: str = "") -> tuple[dict[str, str], str]:
    """Split assignment for the speakers of one namespace, and the mode that was used."""
    speakers = sorted(set(speakers))
    mode = cfg.mode
    if mode == "auto":
        mode = "hash" if namespace in cfg.hash_namespaces or len(speakers) >= cfg.min_speakers_for_hash else "quota"
    if mode == "hash":
        return {s: which_set(s.split(":", 1)[-1], cfg.val_pct, cfg.test_pct) for s in speakers}, mode
    return _quota_assignment(speakers, cfg), mode


def plan_splits(items: Iterable[tuple[str, str | None]], cfg: SplitConfig = SplitConfig()) -> tuple[list[str], dict[str, str]]:
    """Splits for (speaker_id, official_split or None) pairs, in order; and {namespace: mode}.

    An official split (from GSC's lists or MSWC's CSVs) is kept; every other row gets its
    speaker's split, computed once per speaker namespace.
    """
    return _plan([(speaker, None, official) for speaker, official in items],
                 lambda ns, pairs: speaker_splits((s for s, _ in pairs), cfg, ns))


def _plan(items: list[tuple[str, str | None, str | None]],
          assign: Callable[[str, list[tuple[str, str | None]]], tuple[dict[str, str], str]]) -> tuple[list[str], dict[str, str]]:
    """Each (speaker, keyword, official split) row's split, and {namespace: mode}: official splits are
    kept, and `assign(namespace, its (speaker, keyword) pairs)` splits each namespace's other rows."""
    by_ns: dict[str, list[tuple[str, str | None]]] = {}
    for speaker, keyword, official in items:
        if official is None:
            by_ns.setdefault(_namespace(speaker), []).append((speaker, keyword))
    plan: dict[str, str] = {}
    modes: dict[str, str] = {}
    for ns, pairs in sorted(by_ns.items()):
        assignment, mode = assign(ns, pairs)
        plan.update(assignment)
        modes[ns] = mode
    return [official if official is not None else plan[speaker] for speaker, _, official in items], modes


def stratified_assignment(pairs: Iterable[tuple[str, str]], cfg: SplitConfig = SplitConfig(), min_speakers: int = 3) -> dict[str, str]:
    """Speaker -> split for one namespace's (speaker, keyword) pairs: grouped by speaker, stratified by keyword.

    A small set rarely has every speaker record every word, and a split over speakers alone can
    then leave a keyword without a validation or test voice. Here each keyword with at least
    `min_speakers` speakers gets a validation and a test speaker first (keywords with the fewest
    speakers choose first, from their unassigned speakers in which_set-hash order, never taking a
    keyword's last unassigned speaker, which stays for training); then validation and test are
    topped up to quota mode's counts in the same hash order, and every other speaker trains. It
    depends only on the pairs, so the same recordings give the same split, and a speaker has one
    split for all its clips.
    """
    kw_speakers: dict[str, set[str]] = {}
    speaker_kws: dict[str, set[str]] = {}
    for speaker, keyword in pairs:
        kw_speakers.setdefault(keyword, set()).add(speaker)
        speaker_kws.setdefault(speaker, set()).add(keyword)
    order = sorted(speaker_kws, key=lambda s: (speaker_percentage(s), s))
    n = len(order)
    if n < 3:
        return {s: "train" for s in order}
    target = dict(zip(("val", "test"), _eval_quota(n, cfg)))
    assigned: dict[str, str] = {}
    free = {k: set(v) for k, v in kw_speakers.items()}  # each keyword's speakers not yet in val/test

    def movable(speaker: str) -> bool:
        return speaker not in assigned and all(len(free[k]) >= 2 for k in speaker_kws[speaker])

    def take(speaker: str, split: str) -> None:
        assigned[speaker] = split
        for k in speaker_kws[speaker]:
            free[k].discard(speaker)

    wanted = [s for s in ("val", "test") if target[s] > 0]
    for keyword in sorted(kw_speakers, key=lambda k: (len(kw_speakers[k]), k)):
        if len(kw_speakers[keyword]) < min_speakers:
            continue
        for split in wanted:
            if any(assigned.get(s) == split for s in kw_speakers[keyword]):
                continue
            pick = next((s for s in order if s in kw_speakers[keyword] and movable(s)), None)
            if pick is not None:
                take(pick, split)
    for speaker in order:
        for split in wanted:
            if sum(1 for v in assigned.values() if v == split) < target[split] and movable(speaker):
                take(speaker, split)
                break
    return {s: assigned.get(s, "train") for s in order}


def plan_stratified_splits(items: Iterable[tuple[str, str | None, str | None]], cfg: SplitConfig = SplitConfig(),
                           min_speakers: int = 3) -> tuple[list[str], dict[str, str]]:
    """`plan_splits` for (speaker_id, keyword or None, official split or None) rows, stratified by keyword.

    Namespaces in cfg.hash_namespaces, and namespaces with rows that are no keyword (background
    noise), are split as `plan_splits` splits them; every other namespace by `stratified_assignment`
    (mode "stratified"). Official splits are kept.
    """

    def assign(ns: str, pairs: list[tuple[str, str | None]]) -> tuple[dict[str, str], str]:
        if ns in cfg.hash_namespaces or any(k is None for _, k in pairs):
            return speaker_splits((s for s, _ in pairs), cfg, ns)
        return stratified_assignment(pairs, cfg, min_speakers), "stratified"

    return _plan(list(items), assign)


def _namespace(speaker_id: str) -> str:
    return speaker_id.split(":", 1)[0] if ":" in speaker_id else ""


def assign_splits(records: Iterable[ClipRecord], cfg: SplitConfig = SplitConfig()) -> tuple[list[ClipRecord], dict[str, str]]:
    """Re-split manifest rows by speaker with cfg (e.g. other percentages).

    Rows of the namespaces in cfg.hash_namespaces (GSC, MSWC) keep the split they carry: scanning
    took it from the official lists. Returns (records, {namespace: mode used}).
    """
    records = list(records)
    items = [(r.speaker_id, r.split if _namespace(r.speaker_id) in cfg.hash_namespaces else None) for r in records]
    splits, modes = plan_splits(items, cfg)
    return [replace(r, split=s) for r, s in zip(records, splits)], modes


@dataclass(frozen=True)
class SpeakerFolds:
    """Speaker-level k-fold cross-validation: fold `fold` of `folds` is the test set.

    Each language's speakers are ordered by their which_set hash and dealt round-robin into
    `folds` groups, so fold sizes differ by at most one speaker and every speaker is in exactly
    one test fold over fold = 0..folds-1. The next group (fold + 1 mod folds) is validation, the
    rest train. Official splits (GSC, MSWC lists) are ignored: a fold must cover every speaker.
    """

    folds: int = 5
    fold: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 3:
            raise ConfigError(f"speaker folds must be an integer >= 3 (test, validation and train), got {self.folds!r}")
        if isinstance(self.fold, bool) or not isinstance(self.fold, int) or not 0 <= self.fold < self.folds:
            raise ConfigError(f"fold must be an integer in [0, {self.folds}), got {self.fold!r}")

    def assignment(self, speakers: Iterable[str]) -> dict[str, str]:
        ordered = sorted(set(speakers), key=lambda s: (speaker_percentage(s), s))
        out = {}
        for i, speaker in enumerate(ordered):
            group = i % self.folds
            out[speaker] = "test" if group == self.fold else "val" if group == (self.fold + 1) % self.folds else "train"
        return out


def fold_splits(records: Iterable[ClipRecord], folds: SpeakerFolds, language: str) -> list[ClipRecord]:
    """`language`'s clip rows re-split by speaker fold; other rows (noise, other languages, training-only
    rows) unchanged."""
    records = list(records)

    def refolds(r: ClipRecord) -> bool:
        return r.language == language and not r.is_noise and not r.train_only

    plan = folds.assignment(r.speaker_id for r in records if refolds(r))
    return [replace(r, split=plan[r.speaker_id]) if refolds(r) else r for r in records]


def mark_training_only(records: Iterable[ClipRecord], whole_root: bool = False) -> list[ClipRecord]:
    """Rows marked training-only (always `train`): every clip when `whole_root` (a root the config
    marks `train_only`), else the synthesized pseudo-words (`mul`), which are training material
    wherever they are scanned. Noise rows are never marked."""
    from .synth import MULTILINGUAL

    return [replace(r, split="train", train_only=True) if not r.is_noise and (whole_root or r.language == MULTILINGUAL) else r
            for r in records]

