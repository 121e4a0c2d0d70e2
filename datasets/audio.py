"""Audio loading: real container sniffing, two real decoders, mono, 16 kHz, 1 s.

Decoding order:
1. The container is identified from its magic bytes, never from the file extension (the shared
   Ukrainian set has M4A/AAC files named ``*.mp3``).
2. Containers libsndfile handles (WAV/RF64/W64, FLAC, OGG Vorbis/Opus, MP3, AIFF, CAF, AU) are read
   with soundfile; everything else (MP4/M4A/AAC, AMR, WebM/Matroska, ASF/WMA) with PyAV, the FFmpeg
   wheel. PyAV gets a second try only when libsndfile cannot *open* a container it claims (an ID3
   tag in front of AAC, a WAV codec libsndfile lacks). A file libsndfile opens and then fails to
   decode is ``corrupt``: FFmpeg would conceal the damage and return invented samples, so it is
   never asked. PyAV itself decodes with error concealment off (``err_detect``: CRC checks, stop
   at the first error), and a FLAC it decodes must match the MD5 its STREAMINFO block records.
3. Channels are averaged to mono and the signal is resampled to the target rate with torchaudio's
   windowed-sinc resampler (one cached kernel per rate pair).
4. ``load_audio`` fits the result to exactly one clip: short clips are zero-padded symmetrically
   (the word stays centred, which time-shift augmentation later randomises), long clips are cut to
   the 1 s window that holds the most energy. A 3 s wake-word recording therefore keeps the word,
   not the middle of whatever silence surrounds it.

Every failure is a :class:`BadAudioError` naming the file and one reason from ``BAD_AUDIO_REASONS``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
from pathlib import Path

import numpy as np

from polykws.core import PolykwsError

DEFAULT_SAMPLE_RATE_HZ = 16000
DEFAULT_CLIP_SAMPLES = 16000

# Peak below -80 dBFS (about 3 LSB of int16) is digital silence, not a quiet recording.
SILENCE_PEAK = 1e-4
# Float files may overshoot full scale a little (mastering, resampling); 4x (+12 dB) is no
# recording level but a scaling error, and the features would be dominated by it.
OVERRANGE_PEAK = 4.0

BAD_AUDIO_REASONS = {
    "empty": "the file holds no audio samples (0 bytes, or a header with no data)",
    "truncated": "the file ends before the length its header declares, or decoding stopped mid-stream",
    "not_audio": "the first bytes match no known audio container",
    "nan": "decoded samples contain NaN or infinity",
    "corrupt": "a decoder found damaged data inside a recognised container (lost sync, CRC or MD5 mismatch)",
    "overrange": f"float samples peak above {OVERRANGE_PEAK:g}x full scale (a scaling error, not a level)",
    "silent": f"the whole file is digital silence (peak below {SILENCE_PEAK:g} full scale)",
    "unreadable": "the file (or its folder) cannot be opened, or no decoder can decode its (recognised) container",
}


class BadAudioError(PolykwsError):
    """One audio file could not be used. ``reason`` is a key of ``BAD_AUDIO_REASONS``."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = "") -> None:
        if reason not in BAD_AUDIO_REASONS:
            raise ValueError(f"unknown bad-audio reason {reason!r}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        msg = f"{self.path}: {reason} ({detail or BAD_AUDIO_REASONS[reason]})"
        super().__init__(msg)

    def __reduce__(self):  # picklable across worker processes
        return (BadAudioError, (self.path, self.reason, self.detail))


# Containers libsndfile reads; the rest goes to PyAV.
SOUNDFILE_CONTAINERS = frozenset({"wav", "rf64", "w64", "flac", "ogg", "mp3", "aiff", "caf", "au"})
PYAV_CONTAINERS = frozenset({"mp4", "aac", "amr", "matroska", "asf"})


def sniff_container(head: bytes) -> str | None:
    """Name the container from a file's first bytes (at least 12 wanted), or None if unknown."""
    if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RF64" and head[8:12] == b"WAVE":
        return "rf64"
    if head[:4] == b"riff" and len(head) >= 16 and head[4:8] == b"\x2e\x91\xcf\x11":
        return "w64"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"caff":
        return "caf"
    if head[:4] == b".snd":
        return "au"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:6] == b"#!AMR\n" or head[:9] == b"#!AMR-WB\n":
        return "amr"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"\x30\x26\xb2\x75":
        return "asf"
    if head[:3] == b"ID3":
        # An ID3v2 tag precedes MPEG audio (mp3) and sometimes raw ADTS AAC; libsndfile reads
        # the mp3 case and PyAV gets the AAC case as a fallback.
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        layer = (head[1] >> 1) & 0x3
        # MPEG frame sync: layer bits 00 mean ADTS (AAC), anything else is MPEG-1/2 audio.
        return "aac" if layer == 0 else "mp3"
    return None


def _wav_declared_data_bytes(path: Path, file_size: int) -> tuple[int, int] | None:
    """(declared data bytes, data offset) from a RIFF/WAVE header, or None if it cannot be parsed.

    libsndfile silently reads what is there when a WAV is cut short, so the declared size is
    compared to the bytes actually present to detect truncation.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF":
            return None
        pos = 12
        while pos + 8 <= file_size:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                return size, pos + 8
            pos += 8 + size + (size & 1)
    return None


def _ogg_truncation(path: Path, file_size: int) -> str | None:
    """Walk the Ogg pages; a page running past the end, or no end-of-stream flag, means a cut file."""
    pos = 0
    last_flags = 0
    with open(path, "rb") as f:
        while pos < file_size:
            f.seek(pos)
            header = f.read(27)
            if len(header) < 27 or header[:4] != b"OggS":
                return f"Ogg page header broken at byte {pos}"
            nsegs = header[26]
            table = f.read(nsegs)
            if len(table) < nsegs:
                return f"Ogg segment table cut at byte {pos}"
            end = pos + 27 + nsegs + sum(table)
            if end > file_size:
                return f"last Ogg page needs {end} bytes, file has {file_size}"
            last_flags = header[5]
            pos = end
    if not last_flags & 0x04:
        return "the last Ogg page has no end-of-stream flag"
    return None


def _id3v2_size(head: bytes) -> int:
    if head[:3] != b"ID3" or len(head) < 10:
        return 0
    syncsafe = head[6:10]
    size = (syncsafe[0] << 21) | (syncsafe[1] << 14) | (syncsafe[2] << 7) | syncsafe[3]
    return 10 + size + (10 if head[5] & 0x10 else 0)


def _mp3_truncation(path: Path, file_size: int) -> str | None:
    """Compare the stream length a Xing/Info (LAME) or VBRI header declares with the file.

    Raw CBR streams without such a header carry no length, so they cannot be checked.
    """
    with open(path, "rb") as f:
        head = f.read(10)
        start = _id3v2_size(head)
        f.seek(start)
        frame = f.read(256)
    for tag in (b"Xing", b"Info"):
        i = frame.find(tag)
        if i >= 0 and i + 8 <= len(frame):
            flags = struct.unpack(">I", frame[i + 4 : i + 8])[0]
            off = i + 8 + (4 if flags & 0x1 else 0)
            if flags & 0x2 and off + 4 <= len(frame):
                declared = struct.unpack(">I", frame[off : off + 4])[0]
                have = file_size - start
                # Trailing ID3v1 tags (128 bytes) may or may not be counted by the encoder.
                if declared > have:
                    return f"Xing/Info header declares {declared} stream bytes, file has {have}"
            return None
    i = frame.find(b"VBRI")
    if i >= 0 and i + 14 <= len(frame):
        declared = struct.unpack(">I", frame[i + 10 : i + 14])[0]
        if declared > file_size - start:
            return f"VBRI header declares {declared} stream bytes, file has {file_size - start}"
    return None


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level stderr chatter (libmpg123 resync notes) while a decoder runs."""
    try:
        fd = os.dup(2)
    except OSError:  # pragma: no cover - no stderr
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


class _CannotOpen(Exception):
    """libsndfile does not accept the container: another decoder may try."""


def _stream_failure_reason(path: Path, container: str, declared_frames: int) -> str:
    """"truncated" or "corrupt" for a file libsndfile opened and then could not decode.

    libsndfile reports both a cut FLAC file and a damaged one as "lost sync". FFmpeg, with error
    concealment off, tells them apart: in a cut file only the last packet, the one that reaches
    the end of the file, fails. Its samples are never used: only its verdict.
    """
    if container != "flac" or declared_frames <= 0:
        return "corrupt"
    import av

    size = path.stat().st_size
    try:
        with av.open(str(path)) as c:
            stream = c.streams.audio[0]
            stream.codec_context.options = dict(PYAV_CODEC_OPTIONS)
            for packet in c.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    reaches_end = packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size >= size
                    return "truncated" if reaches_end else "corrupt"
                if any(f.is_corrupt for f in frames):
                    return "corrupt"
    except Exception:  # noqa: BLE001 - any other FFmpeg failure means damaged data
        return "corrupt"
    return "corrupt"


def _decode_soundfile(path: Path, container: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    # libmpg123 prints resync notes straight to fd 2; only the mp3 path needs muting.
    quiet = _quiet_stderr() if container == "mp3" else contextlib.nullcontext()
    with quiet:
        try:
            f = sf.SoundFile(str(path))
        except Exception as exc:  # libsndfile raises LibsndfileError/RuntimeError for unknown formats
            raise _CannotOpen(f"{type(exc).__name__}: {exc}") from None
        with f:
            declared = f.frames
            sr = f.samplerate
            try:
                data = f.read(dtype="float32", always_2d=True)
            except Exception as exc:  # the container opened, so a failure here is damage in the stream
                detail = f"libsndfile: {exc}".replace(str(path), "<file>")
                raise BadAudioError(path, _stream_failure_reason(path, container, declared), detail) from None
    # MP3/OGG frame counts are estimates; for exact containers a short read means a cut file.
    if container in ("flac", "aiff", "caf", "au", "w64", "rf64") and declared > 0 and data.shape[0] < declared:
        raise BadAudioError(path, "truncated", f"decoded {data.shape[0]} of {declared} declared frames")
    return data, sr


# FFmpeg's error detection: verify frame CRCs and stop at the first damaged frame instead of
# concealing it with invented samples.
PYAV_CODEC_OPTIONS = {"err_detect": "crccheck+bitstream+buffer+explode"}


def _flac_streaminfo_md5(path: Path) -> tuple[bytes, int] | None:
    """(MD5 of the unencoded samples, bits per sample) from a FLAC STREAMINFO block; None if unset."""
    with open(path, "rb") as f:
        head = f.read(42)
    if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
        return None
    info = head[8:42]
    bits = ((info[12] & 0x01) << 4 | info[13] >> 4) + 1
    md5 = info[18:34]
    return (md5, bits) if any(md5) else None


def _check_flac_md5(path: Path, native: list[np.ndarray]) -> None:
    """Compare PyAV's native-format FLAC output with the encoder's MD5 of the original samples."""
    import hashlib

    recorded = _flac_streaminfo_md5(path)
    if recorded is None:
        return
    md5, bits = recorded
    if not native or native[0].dtype.kind != "i" or bits not in (8, 16, 24, 32):
        return
    # Packed native frames are (1, samples*channels), interleaved like the encoder's input.
    samples = np.concatenate([c.reshape(-1) for c in native]).astype(np.int64)
    if bits == 24 and native[0].dtype == np.int32:
        samples >>= 8  # FFmpeg left-aligns 24-bit FLAC in s32
    width = bits // 8
    raw = (samples & ((1 << bits) - 1)).astype("<u8").view(np.uint8).reshape(-1, 8)[:, :width].tobytes()
    if hashlib.md5(raw).digest() != md5:
        raise BadAudioError(path, "corrupt", "decoded FLAC samples do not match the MD5 in its STREAMINFO block")


def _decode_pyav(path: Path, container_name: str = "") -> tuple[np.ndarray, int]:
    import av

    chunks: list[np.ndarray] = []
    native: list[np.ndarray] = []
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise BadAudioError(path, "not_audio", "the container has no audio stream")
        stream = container.streams.audio[0]
        stream.codec_context.options = dict(PYAV_CODEC_OPTIONS)
        sr = stream.rate or stream.codec_context.sample_rate
        # fltp: float planar, one row per channel, independent of the codec's native format.
        resampler = av.AudioResampler(format="fltp")
        try:
            for frame in container.decode(stream):
                if frame.is_corrupt:
                    raise BadAudioError(path, "corrupt", f"FFmpeg flags a damaged frame at sample {sum(c.shape[1] for c in chunks)}")
                if container_name == "flac" and not frame.format.is_planar:
                    native.append(frame.to_ndarray())
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except av.error.FFmpegError as exc:
            if chunks:
                raise BadAudioError(path, "corrupt", f"decoding failed after {sum(c.shape[1] for c in chunks)} samples: {exc}") from None
            raise
    if not chunks:
        return np.zeros((0, 1), np.float32), int(sr or 0)
    if container_name == "flac":
        _check_flac_md5(path, native)
    data = np.concatenate(chunks, axis=1).T.astype(np.float32, copy=False)
    return np.ascontiguousarray(data), int(sr)


def decode_audio(path: str | os.PathLike, *, allow_silent: bool = False) -> tuple[np.ndarray, int]:
    """Decode a whole file: (float32 array of shape (frames, channels), native sample rate).

    Raises BadAudioError for every failure, with a reason from BAD_AUDIO_REASONS. allow_silent
    is for background-noise files, where near-digital silence is a legitimate recording.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise BadAudioError(path, "unreadable", "not a regular file")
        with open(path, "rb") as f:
            head = f.read(64)
    except BadAudioError:
        raise
    except OSError as exc:
        raise BadAudioError(path, "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}") from None
    if size == 0:
        raise BadAudioError(path, "empty", "0 bytes")
    container = sniff_container(head)
    if container is None:
        raise BadAudioError(path, "not_audio", f"unknown leading bytes {head[:8]!r}")
    if container == "wav":
        declared = _wav_declared_data_bytes(path, size)
        if declared is not None:
            data_bytes, offset = declared
            if data_bytes == 0:
                raise BadAudioError(path, "empty", "WAV data chunk is empty")
            # 0xFFFFFFFF is the streaming placeholder some recorders write; it is not a length.
            if data_bytes != 0xFFFFFFFF and offset + data_bytes > size:
                raise BadAudioError(path, "truncated", f"header declares {data_bytes} data bytes, file has {size - offset}")
    elif container in ("ogg", "mp3"):
        problem = (_ogg_truncation if container == "ogg" else _mp3_truncation)(path, size)
        if problem:
            raise BadAudioError(path, "truncated", problem)

    errors: list[str] = []
    data = sr = None
    decoders = ("soundfile", "pyav") if container in SOUNDFILE_CONTAINERS else ("pyav",)
    for decoder in decoders:
        try:
            data, sr = _decode_soundfile(path, container) if decoder == "soundfile" else _decode_pyav(path, container)
            break
        except BadAudioError:
            raise
        except _CannotOpen as exc:
            errors.append(f"{decoder}: {exc}".replace(str(path), "<file>"))
        except Exception as exc:  # decoder libraries raise many types; keep each one's message
            errors.append(f"{decoder}: {type(exc).__name__}: {exc}".replace(str(path), "<file>"))
    if data is None:
        raise BadAudioError(path, "unreadable", f"{container} container, but " + "; ".join(errors))
    if data.shape[0] == 0 or not sr:
        raise BadAudioError(path, "empty", f"{container} container decodes to 0 samples")
    if not np.isfinite(data).all():
        raise BadAudioError(path, "nan", f"{int((~np.isfinite(data)).sum())} non-finite samples")
    if float(np.abs(data).max()) > OVERRANGE_PEAK:
        raise BadAudioError(path, "overrange", f"peak {float(np.abs(data).max()):.3g}x full scale")
    if not allow_silent and float(np.abs(data).max()) < SILENCE_PEAK:
        raise BadAudioError(path, "silent", f"peak {float(np.abs(data).max()):.2e} full scale")
    return data, int(sr)


@functools.lru_cache(maxsize=16)
def _resampler(orig_hz: int, new_hz: int):
    import torchaudio

    return torchaudio.transforms.Resample(orig_hz, new_hz)


def to_mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1, dtype=np.float32) if data.ndim == 2 else data.astype(np.float32, copy=False)


def resample(x: np.ndarray, orig_hz: int, new_hz: int) -> np.ndarray:
    """Band-limited resampling (torchaudio sinc interpolation, Hann window)."""
    if orig_hz == new_hz:
        return x.astype(np.float32, copy=False)
    import torch

    with torch.no_grad():
        y = _resampler(int(orig_hz), int(new_hz))(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return y.numpy()


def fit_clip(x: np.ndarray, clip_samples: int, hop_samples: int = 160) -> np.ndarray:
    """Pad (centred) or crop (to the most energetic window) a mono signal to exactly clip_samples."""
    n = x.shape[0]
    if n == clip_samples:
        return x.astype(np.float32, copy=True)
    if n < clip_samples:
        out = np.zeros(clip_samples, np.float32)
        start = (clip_samples - n) // 2
        out[start : start + n] = x
        return out
    energy = np.concatenate(([0.0], np.cumsum(x.astype(np.float64) ** 2)))
    starts = np.arange(0, n - clip_samples + 1, hop_samples)
    if starts[-1] != n - clip_samples:
        starts = np.append(starts, n - clip_samples)
    window_energy = energy[starts + clip_samples] - energy[starts]
    start = int(starts[int(np.argmax(window_energy))])
    return x[start : start + clip_samples].astype(np.float32, copy=True)


def load_waveform(
    path: str | os.PathLike, sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ, *, allow_silent: bool = False
) -> np.ndarray:
    """The whole file as float32 mono at sample_rate_hz (no pad/crop): for noise and long files."""
    data, sr = decode_audio(path, allow_silent=allow_silent)
    return resample(to_mono(data), sr, sample_rate_hz)


def load_audio(
    path: str | os.PathLike,
    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ,
    clip_samples: int | None = DEFAULT_CLIP_SAMPLES,
) -> np.ndarray:
    """One clip as float32 mono at sample_rate_hz, exactly clip_samples long (None: keep length)."""
    x = load_waveform(path, sample_rate_hz)
    return x if clip_samples is None else fit_clip(x, clip_samples, hop_samples=max(1, sample_rate_hz // 100))


# Bump when anything above changes the samples load_audio returns: feature caches key on it.
LOADER_VERSION = 1
