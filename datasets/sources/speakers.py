"""Speaker-id parsers for the folder-layout sources in ../shared/data/kws and the synthesized corpus.

Each parser was written against the real file names of its source (see docs/DATA.md for
examples). A name that does not match returns None and the file is skipped as ``no_speaker``
rather than being given a made-up speaker.
"""

from __future__ import annotations

import re

from polykws.core import ConfigError

from .registry import register_speaker_parser

_NOHASH = re.compile(r"^(?P<spk>[^_]+)_nohash_\d+")


def gsc_style(name: str) -> str | None:
    """``<speaker>_nohash_<n>.wav`` (Google Speech Commands and datasets that copy its naming)."""
    m = _NOHASH.match(name)
    return m.group("spk") if m else None


def _regex(pattern: str, group: str = "spk"):
    rx = re.compile(pattern)

    def parse(name: str) -> str | None:
        m = rx.match(name)
        return m.group(group) if m else None

    parse.__doc__ = f"speaker = group {group!r} of {pattern}"
    return parse


def user_regex(pattern: str):
    """A user's speaker pattern (`--speaker-regex`): one group, matched at the start of the file name."""
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--speaker-regex {pattern!r}: not a regular expression ({exc})") from None
    if rx.groups != 1:
        raise ConfigError(f"--speaker-regex {pattern!r}: needs exactly one group (the speaker), has {rx.groups}")

    def parse(name: str) -> str | None:
        m = rx.match(name)
        return m.group(1) if m and m.group(1) else None

    parse.__doc__ = f"speaker = group 1 of {pattern}"
    return parse


# Digit words (and the spellings contributors used) that Bengali file names mix with the
# speaker's name: "ek_arushi_ (3)", "ARUSHI_F_8_EK_04", "sourav_Ek_ (41)", "milan_pnach_ (15)".
_BN_WORDS = {
    "sunno", "sonno", "shunno", "shunyo", "ek", "ak", "akk", "aak", "dui", "tin", "char", "panch",
    "pnach", "choy", "chhoy", "choi", "chay", "sat", "saat", "shat", "sath", "saath", "aat",
    "aath", "ath", "at", "noi", "noy", "nay",
}
# One contributor's name is misspelled in one folder ("dui_dabashri").
_BN_ALIASES = {"dabashri": "debashri"}


def bengali_digits(name: str) -> str | None:
    """The one token that is not a digit word, a gender letter, an age, a number or '18KHz'.

    Upper- and lower-case spellings of a name ("ARUSHI_F_8_EK", "ek_arushi_") are one speaker;
    merging can only make splits more conservative. "My recording N" files are one group.
    """
    stem = name.rsplit(".", 1)[0]
    if stem.lower().startswith("my recording"):
        return "my_recording"
    tokens = [t for t in re.split(r"[\s_()\-]+", stem.lower()) if t]
    names = [
        t for t in tokens
        if t not in _BN_WORDS and t not in ("m", "f") and not t.isdigit() and not re.fullmatch(r"\d+khz", t)
        and not re.fullmatch(r"\d+", t)
    ]
    if not names:
        return None
    return _BN_ALIASES.get(names[0], names[0])


# GSC subsets share GSC's speaker hashes, so they share the "gsc" namespace (and its splits).
register_speaker_parser("speech_commands_v001_vinsis", gsc_style, namespace="gsc")
register_speaker_parser("speech_commands_anrose", gsc_style, namespace="gsc")
register_speaker_parser("lt_speech_commands", gsc_style)  # "07_nohash_1.wav": speakers 01-25
register_speaker_parser("fsdd", _regex(r"^\d+_(?P<spk>[a-z]+)_\d+\."))  # "0_george_12.wav"
register_speaker_parser("ukrainian_digits", _regex(r"^(?P<spk>(?:man|woman)_\d+)_\d+\."))  # "woman_26_01.mp3"
register_speaker_parser("arabic_digits", _regex(r"^(?P<spk>\d{8})_[A-Z]+_\d+\."))  # "00000001_NO_01.wav"
register_speaker_parser("gujarati_digits", _regex(r"^(?P<spk>R\d+S\d+)T\d+D\d+\."))  # "R1S1T1D0.wav"
register_speaker_parser("bengali_digits", bengali_digits)
# Picovoice's wake-word benchmark names clips 0.flac, 1.wav, ...: no speaker ids exist.
register_speaker_parser("picovoice_wake_words", None)
# The synthesized corpus: "<speaker>_<take>.wav", one voice configuration per speaker.
register_speaker_parser("espeak", _regex(r"^(?P<spk>[A-Za-z0-9-]+)_\d+\.wav$"))
