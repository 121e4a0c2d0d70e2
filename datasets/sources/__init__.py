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

from .registry import (  # noqa: F401
    SOURCES,
    SPEAKER_PARSERS,
    Candidate,
    LayoutSkip,
    SourceLayout,
    SpeakerParser,
    clip_hash_speaker,
    detect_layout,
    get_layout,
    register_source,
    register_speaker_parser,
)

# Layouts and parsers register on import; detect_layout tries folder (the catch-all) last.
from . import speakers as _speakers  # noqa: F401
from . import gsc as _gsc  # noqa: F401
from . import mswc as _mswc  # noqa: F401
from . import folder as _folder  # noqa: F401
from . import keywords as _keywords  # noqa: F401
