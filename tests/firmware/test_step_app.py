"""The int8 step graph on the Cortex-M4 (app/step_main.cc under QEMU): every head output equals the
host's stream_outputs and the windowed graph's output on the device, bit for bit, for the
every-row schedule and for a detector stride's batched schedule, the latter in the linked form (one
array: the graphs' structure, then the windowed model whose weights and scales they read).

The model is `ds_cnn_s_fb40_valid` with its initial weights, exported to int8 (no training: the
check is the graphs' arithmetic, not the model's accuracy). The last test runs the runtime library
itself (the stream app) on the linked graphs. Needs TFLM_DIR and the other TFLM
checkouts, arm-none-eabi-gcc and qemu-system-arm; skips with the reason otherwise, as in CI.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

pytestmark = pytest.mark.tflm

# Keywords first: the untrained model's favourite class is a keyword, so a stream has events.
LABELS = [f"kw{i}" for i in range(10)] + ["_silence_", "_unknown_"]


@pytest.fixture(scope="module")
def window_tflite(tmp_path_factory):
    import torch
    from polykws.datasets.frontend import micro_frontend, stream_features
    from polykws.export.api import export_base
    from polykws.training.models import create_model

    from .conftest import signal_stream

    torch.manual_seed(0)
    model = create_model("ds_cnn_s_fb40_valid", num_classes=12, input_shape=(49, 40))
    # Windows of the test signal's own features calibrate the export, and their batch statistics
    # become the BatchNorm statistics, so every layer's output varies with the signal instead of
    # resting on one value: the detections then depend on the arithmetic under test.
    feats = stream_features(signal_stream(), micro_frontend())
    x = np.stack([feats[i : i + 49] for i in range(0, feats.shape[0] - 49, 7)]).astype(np.float32)
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
                m.reset_running_stats()
        model(torch.from_numpy(x)[:, None])
    model.eval()
    return export_base(model, micro_frontend(), LABELS, x, tmp_path_factory.mktemp("valid")).tflite


@pytest.mark.parametrize(("stride_frames", "linked"), [(None, False), (5, True), (6, True)])
def test_step_graph_on_the_m4_equals_host_and_windowed_graph(stride_frames, linked, toolchain, window_tflite, tmp_path):
    from polykws.export.stepgraph import (
        detector_schedule,
        every_row_schedule,
        link_graphs,
        rows_per_step_for,
        streaming_graphs,
    )
    from polykws.firmware.stepbench import generate_step_sources, run_step_bench

    third, _ = toolchain
    graphs = streaming_graphs(window_tflite, 1 if stride_frames is None else rows_per_step_for(2, stride_frames))
    frames = np.random.default_rng(1).integers(-128, 128, size=(120, 40), dtype=np.int8)
    schedule = every_row_schedule(graphs, 120) if stride_frames is None else detector_schedule(graphs, 120, stride_frames)
    gen = generate_step_sources(tmp_path / "gen", window_tflite, graphs, frames, schedule,
                                linked=link_graphs(graphs, window_tflite) if linked else None)
    bench = run_step_bench(gen, "mps2-an386", "cmsis-nn", third)
    expected_windows = 120 - 48 if stride_frames is None else len(range(48, 120, stride_frames))
    assert bench.heads == bench.windows == expected_windows
    assert bench.host_mismatches == 0 and bench.window_mismatches == 0
    assert bench.steps == len(schedule)
    assert bench.instructions_per_step > 0 and bench.instructions_per_head > 0


def _variant(window: bytes, seed: int) -> bytes:
    """A language: the same layout, a third of the first conv's weight bytes redrawn."""
    from polykws.export.tflite_graph import TfliteGraph

    g = TfliteGraph(window)
    start, end = g.tensors[g.ops[0].inputs[1]].data_span
    rng = np.random.default_rng(seed)
    out = bytearray(window)
    for i in rng.choice(end - start, size=(end - start) // 3, replace=False):
        out[start + i] = int(rng.integers(0, 256))
    return bytes(out)


# At 120 ms the chain's first step on the grid begins before the stream (it reads zeros there).
@pytest.mark.parametrize("stride_ms", [200, 100, 120])
def test_the_runtime_on_streaming_graphs_detects_what_the_windowed_host_detects(stride_ms, toolchain, window_tflite, signal_pcm, tmp_path):
    """The stream app (the runtime library) built with the base's linked step and head graphs, two
    blob languages, and a script that switches language and resets mid-stream: its detections
    under QEMU equal the host's windowed detector's, event for event."""
    from polykws.datasets.frontend import micro_frontend
    from polykws.export.blob import encode_blob, encode_flash_image
    from polykws.export.streaming import DetectorConfig
    from polykws.firmware.streamcheck import (
        StreamCommand,
        build_stream_app,
        host_detections_scripted,
        run_stream,
    )

    third, sources = toolchain
    labels = LABELS
    # Threshold 0: a keyword fires whenever it is on top and the refractory period allows, so the
    # stream has many events to compare.
    thresholds = bytes(255 if lb.startswith("_") else 0 for lb in labels)
    blobs = [encode_blob(window_tflite, _variant(window_tflite, seed), lang, labels, {"lang": lang}, thresholds=thresholds)
             for lang, seed in (("lt", 1), ("uk", 2))]
    image = encode_flash_image(window_tflite, blobs)
    fe, det = micro_frontend(), DetectorConfig(stride_ms=stride_ms, average_window_ms=2 * stride_ms, refractory_ms=300)
    pcm = np.concatenate([signal_pcm, signal_pcm])
    commands = [StreamCommand(60_123, "switch", "uk"), StreamCommand(130_050, "reset"), StreamCommand(190_000, "switch", "lt")]
    host = host_detections_scripted(image, "lt", pcm, fe, det, commands)
    elf = build_stream_app(tmp_path / "gen", image, base_lang="en", base_labels=labels, lang="lt", thresholds=256, frontend=fe,
                           detector=det, board="mps2-an386", kernels="cmsis-nn", third_party=third, sources=sources,
                           step_graphs=True)
    run = run_stream(elf, pcm, "mps2-an386", commands=commands)
    assert run.memory["model_ram"] > len(window_tflite), "the app must run the linked graphs (prefix + model in RAM)"
    assert len(host) >= 20 and len({c for c, _ in host}) >= 2
    assert run.detections == host


def test_the_example_built_against_a_step_graph_package_equals_the_windowed_host(toolchain, window_tflite, signal_pcm, tmp_path):
    """`make sdk` with the base's streaming graphs, then the CMake example against the package: the
    same C API, the linked graphs underneath, the windowed host's detections."""
    from polykws.datasets.frontend import micro_frontend
    from polykws.export.blob import encode_blob, encode_flash_image
    from polykws.export.streaming import DetectorConfig
    from polykws.firmware.sdk import build_example, build_sdk, run_example
    from polykws.firmware.streamcheck import generate_stream_sources, host_detections

    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    third, sources = toolchain
    thresholds = {lb: 0 for lb in LABELS if not lb.startswith("_")}
    blob = encode_blob(window_tflite, _variant(window_tflite, 1), "lt", LABELS, {"lang": "lt"},
                       thresholds=bytes(255 if lb.startswith("_") else 0 for lb in LABELS))
    image = encode_flash_image(window_tflite, [blob])
    fe, det = micro_frontend(), DetectorConfig(stride_ms=200, average_window_ms=400, refractory_ms=300)
    gen = generate_stream_sources(tmp_path / "gen", image, base_lang="en", base_labels=LABELS, lang="lt", thresholds=256,
                                  frontend=fe, detector=det, board="mps2-an386", sources=sources, step_graphs=True)
    sdk = build_sdk(gen, tmp_path / "sdk", "mps2-an386", "cmsis-nn", third, sources)
    symbols = subprocess.run(["arm-none-eabi-nm", str(sdk / "lib" / "libpolykws.a")], capture_output=True, text=True, check=True)
    assert "pkw_sg_prefix" in symbols.stdout, "the package must carry the linked graphs"
    run = run_example(build_example(sdk, tmp_path / "build"), signal_pcm, "mps2-an386")
    host = host_detections(image, "lt", signal_pcm, fe, det, thresholds)
    assert len(host) >= 10 and run.detections == host
