"""Fixture generators for the datasets tests: every file is written into tmp_path by the test."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def tone(seconds: float = 0.5, sample_rate_hz: int = 16000, freq_hz: float = 440.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A vowel-like test signal: harmonics of freq_hz under a smooth envelope, plus a little noise."""
    n = int(round(seconds * sample_rate_hz))
    t = np.arange(n) / sample_rate_hz
    sig = sum(np.sin(2 * np.pi * freq_hz * k * t) / k for k in range(1, 6))
    env = np.hanning(n) if n > 1 else np.ones(n)
    rng = np.random.default_rng(seed)
    x = amp * env * sig / 2.3 + 0.002 * rng.standard_normal(n)
    return x.astype(np.float32)


def write_wav(path: Path, x: np.ndarray, sample_rate_hz: int = 16000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sample_rate_hz, subtype=subtype, format="WAV")
    return path


def write_opus(path: Path, x: np.ndarray, sample_rate_hz: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sample_rate_hz, format="OGG", subtype="OPUS")
    return path


def write_m4a(path: Path, x: np.ndarray, sample_rate_hz: int = 16000) -> Path:
    """AAC in an MP4 container, written with PyAV (libsndfile cannot read or write it)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=sample_rate_hz)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1).astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = sample_rate_hz
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def bad_files(folder: Path) -> dict[str, Path]:
    """One file per bad-audio reason (plus variants), all generated here."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["empty"] = folder / "empty.wav"
    files["empty"].write_bytes(b"")
    # A well-formed WAV header whose data chunk holds nothing.
    files["empty_header_only"] = write_wav(folder / "header_only.wav", np.zeros(0, np.float32))
    full = write_wav(folder / "full.wav", tone(0.5))
    files["truncated"] = folder / "truncated.wav"
    files["truncated"].write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    full.unlink()
    files["not_audio"] = folder / "readme.wav"
    files["not_audio"].write_text("this is a text file with an audio extension\n")
    nan = tone(0.5)
    nan[100:110] = np.nan
    files["nan"] = write_wav(folder / "nan.wav", nan, subtype="FLOAT")
    files["silent"] = write_wav(folder / "silent.wav", np.zeros(8000, np.float32))
    # RIFF/WAVE whose fmt chunk names a codec (0x7A7A) no decoder knows: recognised, undecodable.
    fmt = struct.pack("<HHIIHH", 0x7A7A, 1, 16000, 32000, 2, 16)
    data = np.zeros(1000, np.int16).tobytes()
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    files["unreadable"] = folder / "odd_codec.wav"
    files["unreadable"].write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    files["corrupt"] = corrupt_flac(folder / "corrupt.flac")
    files["overrange"] = write_wav(folder / "loud.wav", 1000.0 * tone(0.5), subtype="FLOAT")
    return files


def corrupt_flac(path: Path) -> Path:
    """A FLAC file with 8 bytes inverted in the middle of its audio frames (header intact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(1.0), 16000, format="FLAC", subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 8] = bytes(b ^ 0xFF for b in raw[mid : mid + 8])
    path.write_bytes(bytes(raw))
    return path


@pytest.fixture(scope="session")
def kit():
    """The generators above as one object (importlib mode: test modules cannot import conftest)."""
    import types

    return types.SimpleNamespace(tone=tone, write_wav=write_wav, write_opus=write_opus, write_m4a=write_m4a, bad_files=bad_files, corrupt_flac=corrupt_flac)
