"""The device hears: the streaming firmware's detections on QEMU equal the host's, event for event
(needs TFLM_DIR, the other TFLM checkouts and kissfft; skips with a reason otherwise, as in CI).

A pack of a (1, 49, 40, 1)-input int8 model whose head ends in SOFTMAX (output at 1/256, -128), as
the exporter's does, and one blob language is built into the streaming app (app/stream_main.cc): PCM from a host file over
semihosting -> on-device micro frontend -> ring -> model every stride -> detector. The host runs
`polykws.export.streaming.detect` over the tflite-micro runtime on the same samples.
"""

from __future__ import annotations

import numpy as np
import pytest
from polykws.datasets.frontend import micro_frontend
from polykws.export.blob import encode_blob, encode_flash_image
from polykws.export.streaming import DetectorConfig

pytestmark = pytest.mark.tflm

LABELS = ["_silence_", "_unknown_"] + [f"kw{i}" for i in range(8)]


def _base(int8_model_factory) -> bytes:
    # Small weights keep the logits, and so the softmax, off their rails.
    return int8_model_factory(seed=3, features=40, slots=12, output_qparams=(0.05, 0), weight_scale=1e-3, softmax=True)


def test_stream_app_detections_equal_the_host(toolchain, int8_model_factory, int8_variant_factory, signal_pcm, tmp_path):
    from polykws.firmware.streamcheck import (
        blob_thresholds,
        build_stream_app,
        host_detections,
        run_stream,
    )

    third, sources = toolchain
    base = _base(int8_model_factory)
    lt = int8_variant_factory(base, 9, fraction=0.5)
    # The language's thresholds ship in its blob; _silence_ and _unknown_ never fire, whatever they hold.
    thresholds = {lb: (255 if lb.startswith("_") else 30 + 25 * (i % 5)) for i, lb in enumerate(LABELS)}
    image = encode_flash_image(base, [encode_blob(base, lt, "lt", LABELS, {"lang": "lt"}, thresholds=bytes(thresholds.values()))])
    assert blob_thresholds(image, "lt") == thresholds
    fe, det = micro_frontend(), DetectorConfig(stride_ms=100, average_window_ms=200, refractory_ms=300)
    pcm = signal_pcm  # silence, tones, noise, bursts, a chirp, a full-scale square wave
    keyword_thresholds = {lb: t for lb, t in thresholds.items() if not lb.startswith("_")}
    host = host_detections(image, "lt", pcm, fe, det, keyword_thresholds)
    assert len(host) >= 3 and len({k for k, _ in host}) >= 2, "the stream must make several keywords fire on the host"
    # The generated fallback thresholds never fire: every detection must come from the blob's.
    elf = build_stream_app(tmp_path / "gen", image, base_lang="en", base_labels=[f"en{i}" for i in range(12)], lang="lt",
                           thresholds=256, frontend=fe, detector=det, board="mps2-an386", kernels="cmsis-nn",
                           third_party=third, sources=sources)
    run = run_stream(elf, pcm, "mps2-an386")
    assert run.model_frames == (len(pcm) // fe.stride_samples - 2 + 1) // 2
    assert run.threshold_source == "blob"
    assert run.detections == host


def test_language_switches_and_resets_mid_stream_equal_the_host(toolchain, int8_model_factory, int8_variant_factory, signal_pcm, tmp_path):
    """The rest of the runtime's API under a stream: polykws_select_language keeps the frontend and
    the ring and restarts the detector with the new language's thresholds; polykws_reset starts
    everything afresh. The app runs a command script; the host emulates it (host_detections_scripted)."""
    from polykws.firmware.streamcheck import (
        StreamCommand,
        build_stream_app,
        host_detections_scripted,
        run_stream,
    )

    third, sources = toolchain
    base = _base(int8_model_factory)
    blobs = []
    for lang, seed, offset in (("lt", 9, 0), ("uk", 11, 2)):
        thresholds = bytes(255 if lb.startswith("_") else 30 + 25 * ((i + offset) % 5) for i, lb in enumerate(LABELS))
        blobs.append(encode_blob(base, int8_variant_factory(base, seed, fraction=0.5), lang, LABELS, {"lang": lang}, thresholds=thresholds))
    image = encode_flash_image(base, blobs)
    fe, det = micro_frontend(), DetectorConfig(stride_ms=100, average_window_ms=200, refractory_ms=300)
    pcm = np.concatenate([signal_pcm, signal_pcm])
    # Mid-step sample positions, so a command lands between two frontend steps.
    commands = [StreamCommand(60_123, "switch", "uk"), StreamCommand(130_050, "reset"), StreamCommand(190_000, "switch", "lt")]
    host = host_detections_scripted(image, "lt", pcm, fe, det, commands)
    elf = build_stream_app(tmp_path / "gen", image, base_lang="en", base_labels=[f"en{i}" for i in range(12)], lang="lt",
                           thresholds=256, frontend=fe, detector=det, board="mps2-an386", kernels="cmsis-nn",
                           third_party=third, sources=sources)
    run = run_stream(elf, pcm, "mps2-an386", commands=commands)
    # Every part of the script detects something, so each command's effect is visible.
    assert len(host) >= 8 and run.detections == host
    # The counts restart at the reset, and the frontend with them: its first frame needs a whole window again.
    assert run.model_frames == ((len(pcm) - 130_050) // fe.stride_samples - 2 + 1) // 2
    plain_lt = host_detections_scripted(image, "lt", pcm, fe, det, [])
    assert host != plain_lt
