"""Audio loading: container sniffing, both decoders, resampling, pad/crop, and every bad-input reason."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from polykws.datasets.audio import (
    BAD_AUDIO_REASONS,
    BadAudioError,
    decode_audio,
    fit_clip,
    load_audio,
    load_waveform,
    sniff_container,
)

EXPECTED_REASON = {
    "empty": "empty",
    "empty_header_only": "empty",
    "truncated": "truncated",
    "not_audio": "not_audio",
    "nan": "nan",
    "silent": "silent",
    "unreadable": "unreadable",
    "corrupt": "corrupt",
    "overrange": "overrange",
}


def test_each_bad_file_gets_its_named_reason(tmp_path, kit):
    files = kit.bad_files(tmp_path)
    assert set(EXPECTED_REASON.values()) == set(BAD_AUDIO_REASONS)  # every reason is exercised
    for key, path in files.items():
        with pytest.raises(BadAudioError) as info:
            load_audio(path)
        assert info.value.reason == EXPECTED_REASON[key], (key, str(info.value))
        assert info.value.path == str(path)
        assert str(path) in str(info.value)  # the message names the file


def test_a_file_libsndfile_rejects_is_not_rescued_by_pyav(tmp_path, kit):
    # libsndfile opens the damaged FLAC and loses sync; FFmpeg must not conceal it.
    with pytest.raises(BadAudioError) as info:
        decode_audio(kit.corrupt_flac(tmp_path / "c.flac"))
    assert info.value.reason == "corrupt" and "libsndfile" in info.value.detail


def test_pyav_flac_output_is_checked_against_streaminfo_md5(tmp_path, kit):
    from polykws.datasets.audio import _decode_pyav

    p = tmp_path / "ok.flac"
    sf.write(str(p), kit.tone(0.5), 16000, format="FLAC", subtype="PCM_16")
    x, sr = _decode_pyav(p, "flac")
    assert sr == 16000 and x.shape == (8000, 1)
    # Change the recorded MD5 only: the frames still decode, but no longer to what was encoded.
    raw = bytearray(p.read_bytes())
    raw[8 + 18] ^= 0x01
    p.write_bytes(bytes(raw))
    with pytest.raises(BadAudioError) as info:
        _decode_pyav(p, "flac")
    assert info.value.reason == "corrupt" and "MD5" in info.value.detail


@pytest.mark.shared
def test_shared_picovoice_flacs_libsndfile_rejects_are_corrupt(shared_data):
    folder = shared_data / "kws" / "en" / "picovoice_wake_words" / "alexa"
    for name in ("32.flac", "33.flac", "34.flac"):
        with pytest.raises(BadAudioError) as info:
            decode_audio(folder / name)
        assert info.value.reason == "corrupt", str(info.value)
    assert decode_audio(folder / "31.flac")[0].shape[0] > 0


def test_directory_named_like_audio_is_unreadable(tmp_path):
    d = tmp_path / "clip.wav"
    d.mkdir()
    with pytest.raises(BadAudioError) as info:
        decode_audio(d)
    assert info.value.reason == "unreadable"


@pytest.mark.parametrize(
    "fmt,subtype,ext",
    [("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg"), ("OGG", "OPUS", "opus"), ("MP3", "MPEG_LAYER_III", "mp3")],
)
def test_truncated_compressed_files_are_detected(tmp_path, kit, fmt, subtype, ext):
    full = tmp_path / f"full.{ext}"
    sf.write(str(full), kit.tone(2.0), 16000, format=fmt, subtype=subtype)
    assert decode_audio(full)[0].shape[0] > 0
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.8)])
    with pytest.raises(BadAudioError) as info:
        decode_audio(cut)
    assert info.value.reason == "truncated"


def test_silent_noise_file_is_allowed_when_asked(tmp_path, kit):
    p = kit.write_wav(tmp_path / "room.wav", np.full(1600, 2e-5, np.float32))
    with pytest.raises(BadAudioError):
        decode_audio(p)
    x, sr = decode_audio(p, allow_silent=True)
    assert sr == 16000 and x.shape == (1600, 1)


def test_container_is_sniffed_from_bytes_not_extension(tmp_path, kit):
    x = kit.tone(0.5)
    # AAC-in-MP4 named .mp3 (as 120 files of the shared Ukrainian set are): libsndfile cannot
    # read it, PyAV must.
    m4a = kit.write_m4a(tmp_path / "actually_m4a.mp3", x)
    assert sniff_container(m4a.read_bytes()[:64]) == "mp4"
    y = load_audio(m4a)
    assert y.shape == (16000,) and y.dtype == np.float32
    # The AAC encoder delays and smooths, so compare energy, not samples.
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.sum(x**2) / 16000), rel=0.2)
    # A FLAC file named .wav.
    flac = tmp_path / "actually_flac.wav"
    sf.write(str(flac), x, 16000, format="FLAC")
    assert sniff_container(flac.read_bytes()[:64]) == "flac"
    np.testing.assert_allclose(load_audio(flac, clip_samples=None), x, atol=1 / 32768)


def test_sniffer_knows_the_common_magics():
    assert sniff_container(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"
    assert sniff_container(b"fLaC\x00\x00\x00\x22") == "flac"
    assert sniff_container(b"OggS\x00\x02") == "ogg"
    assert sniff_container(b"ID3\x04\x00\x00") == "mp3"
    assert sniff_container(b"\xff\xfb\x90\x64") == "mp3"
    assert sniff_container(b"\xff\xf1\x50\x80") == "aac"
    assert sniff_container(b"\x00\x00\x00\x18ftypM4A ") == "mp4"
    assert sniff_container(b"FORM\x00\x00\x00\x00AIFF") == "aiff"
    assert sniff_container(b"<html><body>") is None


def test_resampling_mono_and_padding(tmp_path, kit):
    # 8 kHz like FSDD: 0.4 s -> 6400 samples at 16 kHz, centred in 1 s.
    x8 = kit.tone(0.4, sample_rate_hz=8000, freq_hz=300)
    p = kit.write_wav(tmp_path / "fsdd_like.wav", x8, sample_rate_hz=8000)
    full = load_waveform(p)
    assert full.shape == (6400,)
    clip = load_audio(p)
    assert clip.shape == (16000,) and clip.dtype == np.float32
    start = (16000 - 6400) // 2
    np.testing.assert_array_equal(clip[start : start + 6400], full)
    assert not clip[:start].any() and not clip[start + 6400 :].any()
    # Stereo is averaged to mono.
    left, right = kit.tone(1.0, freq_hz=200), kit.tone(1.0, freq_hz=500, seed=1)
    sp = tmp_path / "stereo.wav"
    sf.write(str(sp), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(sp), (left + right) / 2, atol=1e-6)
    # 44.1 kHz is resampled (gu was 44.1 kHz upstream).
    p44 = kit.write_wav(tmp_path / "cd.wav", kit.tone(0.5, sample_rate_hz=44100), sample_rate_hz=44100)
    assert load_waveform(p44).shape == (8000,)


def test_long_clip_is_cut_around_the_energy_peak(kit):
    # A 3 s "wake word" recording: quiet room tone with a word from 2.1 s to 2.6 s.
    x = np.full(48000, 1e-3, np.float32)
    word = kit.tone(0.5, amp=0.5)
    x[33600 : 33600 + word.size] += word
    clip = fit_clip(x, 16000)
    assert clip.shape == (16000,)
    # The whole word is inside the chosen window (a centre crop would have cut it off).
    assert np.sum(clip**2) == pytest.approx(np.sum(x[33600 : 33600 + word.size] ** 2), rel=0.01)
    assert np.abs(fit_clip(x[:16000], 16000) - x[:16000]).max() == 0


def test_bad_audio_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(BadAudioError("/x/y.wav", "nan", "3 non-finite samples")))
    assert (err.path, err.reason, err.detail) == ("/x/y.wav", "nan", "3 non-finite samples")
    with pytest.raises(ValueError):
        BadAudioError("/x", "no_such_reason")


@pytest.mark.shared
def test_every_shared_format_decodes(shared_data):
    """One file of each container in the real data: WAV 8k, MP3, M4A-named-.mp3, FLAC, 44.1k-origin WAV."""
    kws = shared_data / "kws"
    picks = {
        "fsdd wav 8 kHz": next((kws / "en" / "fsdd" / "zero").glob("*.wav")),
        "uk mp3": next(p for p in sorted((kws / "uk" / "ukrainian_digits").rglob("*.mp3")) if p.read_bytes()[:3] == b"ID3"),
        "uk m4a named .mp3": next(p for p in sorted((kws / "uk" / "ukrainian_digits").rglob("*.mp3")) if p.read_bytes()[4:8] == b"ftyp"),
        "picovoice flac": next((kws / "en" / "picovoice_wake_words").rglob("*.flac")),
        "gu wav": next((kws / "gu" / "gujarati_digits" / "0").glob("*.wav")),
    }
    for name, path in picks.items():
        x = load_audio(path)
        assert x.shape == (16000,) and x.dtype == np.float32, name
        assert np.isfinite(x).all() and np.abs(x).max() > 1e-3, name
