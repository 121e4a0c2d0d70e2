"""The embedded default corpus: a small multilingual keyword corpus synthesized offline with espeak-ng.

``polykws data synth --out DIR`` (or :func:`synthesize_corpus`) writes the folder-per-keyword
layout, so everything downstream treats it like recorded data:

    DIR/<lang>/espeak/<word>/<speaker>_<take>.wav     16 kHz mono PCM16, one word per file
    DIR/_background_noise_/<kind>_<n>.wav              synthesized background noise (all languages)
    DIR/synth.json                                     the config, vocabulary and espeak-ng version

Each language has 20 words: 10 commands (yes no up down left right on off stop go, translated)
and the 10 digits. A task picks one group as keywords and the other feeds ``_unknown_``.

Negatives at scale: with ``pseudo_words > 0`` the corpus also holds the language ``mul`` (ISO 639
"multiple languages"), made of pseudo-words of three syllables, each read by one of
``pseudo_voices`` (espeak-ng's Latin-script languages) with that language's letter-to-sound rules,
so the words carry many languages' phonology and no language's vocabulary:

    DIR/mul/espeak/<voice>_<pseudoword>/<speaker>_<take>.wav

A task feeds them to ``_unknown_`` with ``unknown_languages: [..., mul]``. They are training
material only: evaluation streams (polykws.datasets.streams) never hold them.

A *speaker* is one voice configuration: an espeak-ng voice variant (m1..m8, f1..f5, klatt, croak,
whisper, and the named variants), a base pitch, pitch range, speaking rate, level and lead-in,
drawn from a seeded RNG. Speakers are named ``v00``..``vNN`` and the same id means the same split in
every language, so splits stay speaker-disjoint.

Determinism: espeak-ng keeps synthesis state across utterances inside a process (its random
generator and voice-source state), and that state cannot be reset through the API. Each language
(and the noise) is therefore synthesized in a fresh process, in a fixed order, after
``espeak_ng_SetRandSeed``; the output is byte-identical for the same seed, config and espeak-ng
build, however many workers run. Drive: ctypes against the ``espeakng-loader`` wheel's
libespeak-ng.so and data (no apt, no subprocess).
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import shutil
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from polykws.core import ConfigError, PolykwsError, atomic_write_json, stable_hash

from ._parallel import _single_thread_init, default_workers, mp_context, progress_bar
from .manifest import NOISE_LABEL

SYNTH_VERSION = 1
ESPEAK_RATE_HZ = 22050
OUT_RATE_HZ = 16000

# Ten commands (GSC's ten, translated) and the ten digits, per language, in class order.
VOCABULARY: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "commands": ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"),
        "digits": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    },
    "de": {
        "commands": ("ja", "nein", "hoch", "runter", "links", "rechts", "an", "aus", "stopp", "los"),
        "digits": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
    },
    "fr": {
        "commands": ("oui", "non", "haut", "bas", "gauche", "droite", "allume", "éteins", "arrête", "avance"),
        "digits": ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"),
    },
    "es": {
        "commands": ("sí", "no", "arriba", "abajo", "izquierda", "derecha", "enciende", "apaga", "para", "adelante"),
        "digits": ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"),
    },
    "it": {
        "commands": ("sì", "no", "su", "giù", "sinistra", "destra", "accendi", "spegni", "fermo", "vai"),
        "digits": ("zero", "uno", "due", "tre", "quattro", "cinque", "sei", "sette", "otto", "nove"),
    },
    "nl": {
        "commands": ("ja", "nee", "omhoog", "omlaag", "links", "rechts", "aan", "uit", "stop", "ga"),
        "digits": ("nul", "een", "twee", "drie", "vier", "vijf", "zes", "zeven", "acht", "negen"),
    },
    "pt": {
        "commands": ("sim", "não", "cima", "baixo", "esquerda", "direita", "liga", "desliga", "para", "vai"),
        "digits": ("zero", "um", "dois", "três", "quatro", "cinco", "seis", "sete", "oito", "nove"),
    },
    "pl": {
        "commands": ("tak", "nie", "góra", "dół", "lewo", "prawo", "włącz", "wyłącz", "stop", "jedź"),
        "digits": ("zero", "jeden", "dwa", "trzy", "cztery", "pięć", "sześć", "siedem", "osiem", "dziewięć"),
    },
}
# The languages of the real recordings in ../shared (SOURCES.md), with those corpora's own labels, so
# that a synthesized clip is a row of the same class: uk and ar file their digits under English
# names, bn under romanized ones and gu under numerals. They have no synthesized commands; lt's
# commands are the ten GSC-style words its corpus records.
VOCABULARY.update({
    "uk": {"digits": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")},
    "ar": {"digits": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")},
    "bn": {"digits": ("sunno", "ek", "dui", "tin", "char", "panch", "choy", "sat", "aat", "noi")},
    "gu": {"digits": ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")},
    "lt": {
        "commands": ("taip", "ne", "stop", "labas", "ačiū", "iki", "startas", "pauzė", "įjunk", "išjunk"),
        "digits": ("nulis", "vienas", "du", "trys", "keturi", "penki", "šeši", "septyni", "aštuoni", "devyni"),
    },
})
# What espeak-ng reads for a label that is not written in its language's script (default: the
# label). Arabic carries its short vowels: espeak-ng guesses them badly from bare consonants.
SPOKEN: dict[str, dict[str, str]] = {
    "uk": dict(zip(VOCABULARY["uk"]["digits"], ("нуль", "один", "два", "три", "чотири", "п'ять", "шість", "сім", "вісім", "дев'ять"))),
    "ar": dict(zip(VOCABULARY["ar"]["digits"], ("صِفْر", "وَاحِد", "اِثْنَان", "ثَلَاثَة", "أَرْبَعَة", "خَمْسَة", "سِتَّة", "سَبْعَة", "ثَمَانِيَة", "تِسْعَة"))),
    "bn": dict(zip(VOCABULARY["bn"]["digits"], ("শূন্য", "এক", "দুই", "তিন", "চার", "পাঁচ", "ছয়", "সাত", "আট", "নয়"))),
    "gu": dict(zip(VOCABULARY["gu"]["digits"], ("શૂન્ય", "એક", "બે", "ત્રણ", "ચાર", "પાંચ", "છ", "સાત", "આઠ", "નવ"))),
}
ESPEAK_VOICE = {"en": "en-us", "de": "de", "fr": "fr", "es": "es", "it": "it", "nl": "nl", "pt": "pt", "pl": "pl",
                "uk": "uk", "ar": "ar", "bn": "bn", "gu": "gu", "lt": "lt"}

# Human-sounding espeak-ng variants (espeak-ng-data/voices/!v); robotic novelty ones are left out.
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "croak", "whisper", "Alex", "Andy", "Annie", "Gene", "Jacky", "Lee",
    "Michael", "Mike", "Storm", "adam", "anika", "aunty", "belinda", "benjamin", "boris", "caleb",
    "david", "ed", "edward", "grandma", "grandpa", "gustave", "ian", "iven", "john", "linda", "max",
    "michel", "miguel", "norbert", "paul", "pedro", "quincy", "rob", "robert", "sandro", "shelby",
    "steph", "travis", "victor", "zac",
)
# The pseudo-word language (ISO 639-2 "mul", multiple languages) and the espeak-ng languages
# that read its words: Latin-script ones, whose letter-to-sound rules turn the same letters into
# their own phonemes (a non-Latin voice would switch to English for Latin text).
MULTILINGUAL = "mul"
PSEUDO_VOICES = (
    "af", "an", "az", "bs", "ca", "cs", "cy", "da", "de", "en-us", "eo", "es", "et", "eu", "fi", "fr", "ga",
    "gd", "hr", "ht", "hu", "id", "is", "it", "lt", "lv", "ms", "mt", "nb", "nl", "pl", "pt", "ro", "sk",
    "sl", "sq", "sv", "sw", "tn", "tr", "uz",
)
# Pseudo-word letters: onsets and vowels every Latin-script voice above can read. Three
# syllables, so no pseudo-word is one of the one- or two-syllable words a task is likely to spot,
# and short enough to fit a one-second window at espeak-ng's slowest rate here.
_PSEUDO_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kl", "pl", "st", "tr")
_PSEUDO_VOWELS = ("a", "e", "i", "o", "u")
_PSEUDO_CODAS = ("n", "s", "r", "l", "k", "t", "m")
NOISE_KINDS = ("white", "pink", "brown", "hum", "fan", "clicks", "babble")
# Syllables for babble noise: speech-like texture without any vocabulary word in it.
_BABBLE_SYLLABLES = ("ba", "do", "ki", "me", "lu", "ra", "sho", "te", "vi", "ga", "no", "pe", "zu", "ha", "ml")


@dataclass(frozen=True)
class SynthConfig:
    languages: tuple[str, ...] = ("en", "de", "fr", "es", "it", "nl")
    # Word groups per language (keys of VOCABULARY[lang]); a task picks keywords from one.
    groups: tuple[str, ...] = ("commands", "digits")
    speakers: int = 40
    takes: int = 1
    noise_files_per_kind: int = 2
    noise_seconds: float = 6.0
    seed: int = 0
    # Pseudo-words per voice in the `mul` language (0: no `mul`), each said by
    # `pseudo_speakers_per_word` of the `speakers` voice configurations (seeded pick).
    pseudo_words: int = 0
    pseudo_voices: tuple[str, ...] = PSEUDO_VOICES
    pseudo_speakers_per_word: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "languages", tuple(self.languages))
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "pseudo_voices", tuple(self.pseudo_voices))
        unknown = [lang for lang in self.languages if lang not in VOCABULARY]
        if unknown:
            raise ConfigError(f"synth languages {unknown} have no vocabulary; known: {sorted(VOCABULARY)}"
                              + (f" (`{MULTILINGUAL}` comes from pseudo_words)" if MULTILINGUAL in unknown else ""))
        if (not self.languages and not self.pseudo_words) or len(set(self.languages)) != len(self.languages):
            raise ConfigError(f"synth languages must be unique and non-empty (or pseudo_words > 0), got {self.languages}")
        if not 0 <= self.pseudo_words <= 2000:
            raise ConfigError(f"synth pseudo_words must be in [0, 2000], got {self.pseudo_words}")
        if self.pseudo_words:
            if not self.pseudo_voices or len(set(self.pseudo_voices)) != len(self.pseudo_voices):
                raise ConfigError(f"synth pseudo_voices must be non-empty and unique, got {list(self.pseudo_voices)}")
            bad = [v for v in self.pseudo_voices if not v or "_" in v or "/" in v or "+" in v]
            if bad:
                raise ConfigError(f"synth pseudo_voices must be espeak-ng language names (no '_', '/' or '+'), got {bad}")
            if not 1 <= self.pseudo_speakers_per_word <= self.speakers:
                raise ConfigError(f"synth pseudo_speakers_per_word must be in [1, speakers={self.speakers}], got {self.pseudo_speakers_per_word}")
        for g in self.groups:
            if g not in ("commands", "digits"):
                raise ConfigError(f"synth group {g!r} unknown; known: commands, digits")
        if not self.groups:
            raise ConfigError("synth needs at least one word group")
        empty = [lang for lang in self.languages if not any(g in VOCABULARY[lang] for g in self.groups)]
        if empty:
            raise ConfigError(f"synth languages {empty} have none of the groups {list(self.groups)}; "
                              + "; ".join(f"{lang} has {sorted(VOCABULARY[lang])}" for lang in empty))
        if not 1 <= self.speakers <= 1000:
            raise ConfigError(f"synth speakers must be in [1, 1000], got {self.speakers}")
        if not 1 <= self.takes <= 20:
            raise ConfigError(f"synth takes must be in [1, 20], got {self.takes}")
        if self.noise_files_per_kind < 0 or not 1.0 <= self.noise_seconds <= 120.0:
            raise ConfigError("synth noise_files_per_kind must be >= 0 and noise_seconds in [1, 120]")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["languages"], d["groups"], d["pseudo_voices"] = list(self.languages), list(self.groups), list(self.pseudo_voices)
        if not self.pseudo_words:
            # Without pseudo-words the dict, and so the corpus hash that reuses finished folders, is the vocabulary corpus's alone.
            for name in ("pseudo_words", "pseudo_voices", "pseudo_speakers_per_word"):
                del d[name]
        return d

    @property
    def corpus_languages(self) -> tuple[str, ...]:
        """The corpus's language folders: the vocabulary languages, then `mul` when it has pseudo-words."""
        return self.languages + ((MULTILINGUAL,) if self.pseudo_words else ())

    def words(self, lang: str) -> tuple[str, ...]:
        if lang == MULTILINGUAL:
            return tuple(f"{voice}_{w}" for voice, words in pseudo_vocabulary(self).items() for w in words)
        return tuple(unicodedata.normalize("NFC", w) for g in self.groups for w in VOCABULARY[lang].get(g, ()))


def pseudo_vocabulary(cfg: SynthConfig) -> dict[str, tuple[str, ...]]:
    """`cfg.pseudo_words` distinct pseudo-words per voice (seeded by the seed and the voice alone)."""
    out = {}
    for voice in cfg.pseudo_voices:
        rng = np.random.default_rng(_seed(cfg.seed, "pseudo", voice))
        words: list[str] = []
        seen: set[str] = set()
        while len(words) < cfg.pseudo_words:
            w = "".join(str(rng.choice(_PSEUDO_ONSETS)) + str(rng.choice(_PSEUDO_VOWELS)) for _ in range(3))
            if rng.random() < 0.4:
                w += str(rng.choice(_PSEUDO_CODAS))
            if w not in seen:
                seen.add(w)
                words.append(w)
        out[voice] = tuple(words)
    return out


# ---------------------------------------------------------------------------------------------
# espeak-ng through ctypes (runs only inside job processes)


class _Espeak:
    AUDIO_OUTPUT_SYNCHRONOUS = 2
    INITIALIZE_DONT_EXIT = 0x8000
    RATE, VOLUME, PITCH, RANGE = 1, 2, 3, 4
    POS_CHARACTER, CHARS_UTF8 = 1, 1

    def __init__(self, seed: int) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        rate = lib.espeak_Initialize(self.AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), self.INITIALIZE_DONT_EXIT)
        if rate != ESPEAK_RATE_HZ:
            raise PolykwsError(f"espeak-ng initialisation failed or runs at {rate} Hz (expected {ESPEAK_RATE_HZ})")
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

        def on_audio(wav, n, _events):
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = callback_type(on_audio)  # keep a reference: espeak calls it later
        lib.espeak_SetSynthCallback(self._callback)
        lib.espeak_ng_SetRandSeed(seed & 0x7FFFFFFF)
        self.lib = lib

    def say(self, text: str, voice: str, rate_wpm: int, pitch: int, pitch_range: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise PolykwsError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((self.RATE, rate_wpm), (self.PITCH, pitch), (self.RANGE, pitch_range), (self.VOLUME, 100)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, self.POS_CHARACTER, 0, self.CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0 if self._chunks else np.zeros(0, np.float32)


def _espeak_version() -> str:
    try:
        import importlib.metadata as md

        return f"espeakng-loader {md.version('espeakng-loader')}"
    except Exception:  # pragma: no cover
        return "unknown"


# ---------------------------------------------------------------------------------------------
# Jobs (each runs in a fresh process)


def _seed(*parts) -> int:
    return int(stable_hash(list(parts), 16), 16) & ((1 << 63) - 1)


def _to_16k(x: np.ndarray) -> np.ndarray:
    from .audio import resample

    return resample(x, ESPEAK_RATE_HZ, OUT_RATE_HZ)


def _wav_bytes(x: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), OUT_RATE_HZ, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def speaker_params(cfg: SynthConfig, lang: str, k: int) -> dict:
    """Voice configuration of speaker k in lang (seeded; one variant per speaker, cycling). A `mul`
    speaker's voice has no language: `voice` is the variant, said with each word's own language."""
    order = np.random.default_rng(_seed(cfg.seed, "variants", lang)).permutation(len(VARIANTS))
    rng = np.random.default_rng(_seed(cfg.seed, "speaker", lang, k))
    variant = VARIANTS[order[k % len(VARIANTS)]]
    return {
        "voice": variant if lang == MULTILINGUAL else f"{ESPEAK_VOICE[lang]}+{variant}",
        "pitch": int(rng.integers(20, 81)),
        "range": int(rng.integers(20, 91)),
        "rate": int(rng.integers(130, 211)),
        "peak_db": float(rng.uniform(-16.0, -3.0)),
        "lead_ms": float(rng.uniform(20.0, 150.0)),
    }


def _synth_language(job: tuple) -> dict:
    cfg_dict, lang, out_dir = job
    cfg = SynthConfig(**cfg_dict)
    tts = _Espeak(_seed(cfg.seed, "espeak", lang))
    staging = Path(out_dir)
    clips = nbytes = 0
    for word in cfg.words(lang):
        folder = staging / word
        folder.mkdir(parents=True, exist_ok=True)
        if lang == MULTILINGUAL:
            voice_lang, text = word.split("_", 1)
            pick = np.random.default_rng(_seed(cfg.seed, "pseudo-speakers", word)).choice(cfg.speakers, cfg.pseudo_speakers_per_word, replace=False)
            speakers = sorted(int(k) for k in pick)
        else:
            voice_lang, text, speakers = "", SPOKEN.get(lang, {}).get(word, word), list(range(cfg.speakers))
        for k in speakers:
            p = speaker_params(cfg, lang, k)
            voice = f"{voice_lang}+{p['voice']}" if voice_lang else p["voice"]
            for take in range(cfg.takes):
                jitter = np.random.default_rng(_seed(cfg.seed, "take", lang, word, k, take))
                rate = p["rate"] + int(jitter.integers(-8, 9)) if take else p["rate"]
                pitch = int(np.clip(p["pitch"] + (int(jitter.integers(-4, 5)) if take else 0), 0, 99))
                x = tts.say(text, voice, rate, pitch, p["range"])
                if x.size == 0 or np.abs(x).max() == 0:
                    raise PolykwsError(f"espeak-ng produced no audio for {lang} {word!r} with {voice}")
                # Trim espeak's trailing silence, add this speaker's lead-in, set its level.
                nz = np.flatnonzero(np.abs(x) > 1e-3)
                x = x[: nz[-1] + 1 + int(0.05 * ESPEAK_RATE_HZ)]
                x = np.concatenate([np.zeros(int(p["lead_ms"] * ESPEAK_RATE_HZ / 1000), np.float32), x])
                x = _to_16k(x)
                x *= np.float32(10 ** (p["peak_db"] / 20) / max(1e-6, float(np.abs(x).max())))
                data = _wav_bytes(x)
                (folder / f"v{k:02d}_{take}.wav").write_bytes(data)
                clips += 1
                nbytes += len(data)
    return {"language": lang, "clips": clips, "bytes": nbytes}


def _colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec /= f ** (exponent / 2.0)
    spec[0] = 0.0
    return np.fft.irfft(spec, n)


def _band(x: np.ndarray, lo_hz: float, hi_hz: float, rate: int = OUT_RATE_HZ) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1.0 / rate)
    spec[(f < lo_hz) | (f > hi_hz)] = 0.0
    return np.fft.irfft(spec, x.size)


def _noise_signal(kind: str, rng: np.random.Generator, n: int, tts: _Espeak | None) -> np.ndarray:
    t = np.arange(n) / OUT_RATE_HZ
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _colored_noise(rng, n, 1.0)
    elif kind == "brown":
        x = _band(_colored_noise(rng, n, 2.0), 20.0, 8000.0)
    elif kind == "hum":
        mains = rng.choice([50.0, 60.0])
        x = sum(rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 2 * np.pi)) for h in range(1, 8))
        x = x + 0.05 * _colored_noise(rng, n, 1.0) / 0.05
    elif kind == "fan":
        x = _band(_colored_noise(rng, n, 1.0), 30.0, rng.uniform(1500.0, 4000.0))
        blade = rng.uniform(80.0, 300.0)
        x = x * (1.0 + 0.3 * np.sin(2 * np.pi * blade * t))
    elif kind == "clicks":
        x = 0.02 * rng.standard_normal(n)
        for start in rng.integers(0, n - 400, size=int(rng.integers(15, 60))):
            decay = np.exp(-np.arange(400) / rng.uniform(20.0, 120.0))
            x[start : start + 400] += rng.uniform(0.3, 1.0) * decay * rng.standard_normal(400)
    elif kind == "babble":
        x = np.zeros(n)
        for _ in range(int(rng.integers(8, 16))):
            lang = str(rng.choice(sorted(ESPEAK_VOICE)))
            text = " ".join(str(rng.choice(_BABBLE_SYLLABLES)) for _ in range(int(rng.integers(4, 10))))
            voice = f"{ESPEAK_VOICE[lang]}+{VARIANTS[int(rng.integers(0, len(VARIANTS)))]}"
            y = _to_16k(tts.say(text, voice, int(rng.integers(140, 220)), int(rng.integers(20, 80)), 50)).astype(np.float64)
            if y.size == 0:
                continue
            y = y[:n]
            start = int(rng.integers(0, max(1, n - y.size)))
            x[start : start + y.size] += rng.uniform(0.3, 1.0) * y / max(1e-6, np.abs(y).max())
        x = _band(x, 100.0, 3500.0)  # heard through a wall: muffled
    else:  # pragma: no cover - guarded by NOISE_KINDS
        raise ValueError(kind)
    x = np.asarray(x, np.float64)
    rms_db = rng.uniform(-40.0, -22.0)
    x *= 10 ** (rms_db / 20) / max(1e-9, float(np.sqrt(np.mean(x**2))))
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _synth_noise(job: tuple) -> dict:
    cfg_dict, _, out_dir = job
    cfg = SynthConfig(**cfg_dict)
    tts = _Espeak(_seed(cfg.seed, "espeak", "noise"))
    staging = Path(out_dir)
    staging.mkdir(parents=True, exist_ok=True)
    n = int(cfg.noise_seconds * OUT_RATE_HZ)
    files = nbytes = 0
    for kind in NOISE_KINDS:
        for i in range(cfg.noise_files_per_kind):
            rng = np.random.default_rng(_seed(cfg.seed, "noise", kind, i))
            data = _wav_bytes(_noise_signal(kind, rng, n, tts))
            (staging / f"{kind}_{i}.wav").write_bytes(data)
            files += 1
            nbytes += len(data)
    return {"language": NOISE_LABEL, "clips": files, "bytes": nbytes}


def _run_job(job: tuple) -> dict:
    return _synth_noise(job) if job[1] == NOISE_LABEL else _synth_language(job)


# ---------------------------------------------------------------------------------------------


def synthesize_corpus(cfg: SynthConfig, out: str | os.PathLike, *, workers: int | None = None, progress: bool = False) -> dict:
    """Synthesize the corpus into out (see module doc). Resumable: finished parts are kept.

    Each language (and the noise folder) is built in a staging folder and renamed into place when
    complete, with a marker holding the config hash; a rerun skips parts whose marker matches and
    rebuilds the others. Returns a summary dict.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_hash = stable_hash({"synth": cfg.to_dict(), "version": SYNTH_VERSION, "espeak": _espeak_version()})
    parts = [(lang, out / lang / "espeak") for lang in cfg.corpus_languages]
    if cfg.noise_files_per_kind:
        parts.append((NOISE_LABEL, out / NOISE_LABEL))
    todo = []
    for name, final in parts:
        marker = final / ".synth-complete.json"
        if marker.is_file() and json.loads(marker.read_text()).get("config_hash") == cfg_hash:
            continue
        staging = final.parent / f".{final.name}.synth-staging"
        shutil.rmtree(staging, ignore_errors=True)
        todo.append((name, final, staging))
    results: list[dict] = []
    if todo:
        workers = default_workers() if workers is None else max(1, workers)
        ctx = mp_context()
        jobs = [(cfg.to_dict(), name, str(staging)) for name, _, staging in todo]
        # max_tasks_per_child=1: every part starts from espeak-ng's initial state (see module doc).
        with progress_bar("synthesizing", len(jobs), progress) as advance, ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)), mp_context=ctx, max_tasks_per_child=1, initializer=_single_thread_init
        ) as pool:
            for (name, final, staging), res in zip(todo, pool.map(_run_job, jobs)):
                atomic_write_json(staging / ".synth-complete.json", {"config_hash": cfg_hash, **res})
                shutil.rmtree(final, ignore_errors=True)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging, final)
                results.append(res)
                advance()
    # Summarise from the markers, so reused parts count too.
    clips = nbytes = noise_files = 0
    for name, final in parts:
        info = json.loads((final / ".synth-complete.json").read_text())
        if name == NOISE_LABEL:
            noise_files = int(info["clips"])
        else:
            clips += int(info["clips"])
        nbytes += int(info["bytes"])
    words = {lang: list(cfg.words(lang)) for lang in cfg.corpus_languages}
    vocabulary = {lang: {g: list(VOCABULARY[lang][g]) for g in cfg.groups if g in VOCABULARY[lang]} for lang in cfg.languages}
    if cfg.pseudo_words:
        vocabulary[MULTILINGUAL] = {voice: list(w) for voice, w in pseudo_vocabulary(cfg).items()}
    atomic_write_json(
        out / "synth.json",
        {"config": cfg.to_dict(), "config_hash": cfg_hash, "espeak": _espeak_version(), "version": SYNTH_VERSION,
         "vocabulary": vocabulary,
         "speakers": {lang: [speaker_params(cfg, lang, k) for k in range(cfg.speakers)] for lang in cfg.corpus_languages}},
    )
    return {
        "clips": clips,
        "noise_files": noise_files,
        "bytes": nbytes,
        "languages": list(cfg.corpus_languages),
        "words_per_language": {lang: len(w) for lang, w in words.items()},
        "built_parts": len(results),
        "reused_parts": len(parts) - len(results),
        "noise_dir": NOISE_LABEL,
    }
