"""The task schema: what a keyword-spotting task is (language, keywords, extra classes, options).

It lives apart from the feature builder so that the layouts (`sources.gsc.gsc_task`), the scanner
and the pipeline's config can name tasks without importing `features`, which imports the scanner.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from polykws.core import ConfigError

from .manifest import ANY_LANGUAGE, NOISE_LABEL, SILENCE_LABEL, UNKNOWN_LABEL, ClipRecord

RESERVED_LABELS = (SILENCE_LABEL, UNKNOWN_LABEL, NOISE_LABEL)
# _unknown_ (or partial-keyword) clips per keyword clip, at most.
MAX_UNKNOWN_FRACTION = 50.0


@dataclass(frozen=True, kw_only=True)
class TaskOptions:
    """What a task takes besides its language and keywords. Defined once: the runtime `TaskSpec`
    and the pipeline's YAML task entry (`polykws.pipeline.config.TaskConfig`) both extend it."""

    silence: bool = True
    unknown: bool = True
    # None: as many as an average keyword class; else this fraction of the split's keyword clips.
    silence_fraction: float | None = None
    # _unknown_ clips per keyword clip; above 1 for a detector, whose negatives outnumber its
    # keywords on any stream (None: as many as an average keyword class).
    unknown_fraction: float | None = None
    # Partial keywords (the first or last part of a training keyword clip, augment.PartialConfig)
    # added to _unknown_ in the train split, per keyword clip: a window that holds half a keyword
    # must not fire. 0: none.
    partial_keyword_fraction: float = 0.0
    # Share of _silence_ examples that are digital zeros (the rest are noise crops).
    true_silence_fraction: float = 0.1
    # Restrict the non-target words used for _unknown_ (empty: all of them).
    unknown_words: tuple[str, ...] = ()
    # Other languages whose words (every label, each clip in its own split) also feed _unknown_:
    # speech a device hears and must not answer to. A task whose own corpus has no other words
    # (digits only) gets an _unknown_ class this way.
    unknown_languages: tuple[str, ...] = ()
    # Only rows from these sources (empty: all).
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "unknown_words", tuple(self.unknown_words))
        object.__setattr__(self, "unknown_languages", tuple(self.unknown_languages))
        object.__setattr__(self, "sources", tuple(self.sources))
        if self.unknown_languages and not self.unknown:
            raise ConfigError("task unknown_languages needs unknown: true (their words feed _unknown_)")
        if self.silence_fraction is not None and not 0.0 < self.silence_fraction <= 1.0:
            raise ConfigError(f"task silence_fraction must be in (0, 1], got {self.silence_fraction!r}")
        if self.unknown_fraction is not None and not 0.0 < self.unknown_fraction <= MAX_UNKNOWN_FRACTION:
            raise ConfigError(f"task unknown_fraction must be in (0, {MAX_UNKNOWN_FRACTION:g}], got {self.unknown_fraction!r}")
        if not 0.0 <= self.partial_keyword_fraction <= MAX_UNKNOWN_FRACTION:
            raise ConfigError(f"task partial_keyword_fraction must be in [0, {MAX_UNKNOWN_FRACTION:g}], got {self.partial_keyword_fraction!r}")
        if self.partial_keyword_fraction and not self.unknown:
            raise ConfigError("task partial_keyword_fraction needs unknown: true (partial keywords are _unknown_ examples)")
        if not 0.0 <= self.true_silence_fraction <= 1.0:
            raise ConfigError(f"task true_silence_fraction must be in [0, 1], got {self.true_silence_fraction!r}")

    def task_options(self) -> dict[str, Any]:
        """These options alone, as `TaskSpec` keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(TaskOptions)}


@dataclass(frozen=True)
class TaskSpec(TaskOptions):
    """A keyword-spotting task: language, keywords (in class order), and the two extra classes.

    A keyword ``"uk:one"`` matches label ``one`` of language ``uk`` (for multi-language tasks with
    language ``"*"``); a plain keyword matches the label in ``language``.
    """

    language: str
    keywords: tuple[str, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "keywords", tuple(self.keywords))
        if not self.language:
            raise ConfigError("task language must be set")
        if not self.keywords:
            raise ConfigError("task needs at least one keyword")
        if len(set(self.keywords)) != len(self.keywords):
            raise ConfigError(f"task keywords repeat: {self.keywords}")
        if self.language in self.unknown_languages:
            raise ConfigError(f"task unknown_languages names the task's own language {self.language!r} (its words are unknown_words)")
        bad = [k for k in self.keywords if k in RESERVED_LABELS or not k]
        if bad:
            raise ConfigError(f"task keywords may not be empty or reserved labels: {bad}")

    @property
    def labels(self) -> tuple[str, ...]:
        extra = ((SILENCE_LABEL,) if self.silence else ()) + ((UNKNOWN_LABEL,) if self.unknown else ())
        return self.keywords + extra

    def matches_language(self, record: ClipRecord) -> bool:
        return self.language == ANY_LANGUAGE or record.language == self.language

    def keyword_of(self, record: ClipRecord) -> str | None:
        qualified = f"{record.language}:{record.label}"
        if qualified in self._keyword_set:
            return qualified
        if self.language == ANY_LANGUAGE or record.language == self.language:
            if record.label in self._keyword_set:
                return record.label
        return None

    @property
    def _keyword_set(self) -> frozenset:
        return frozenset(self.keywords)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
