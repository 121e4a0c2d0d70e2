"""The int8 step graph on the Cortex-M4 (app/step_main.cc under QEMU): every head output equals the
host's stream_outputs and the windowed graph's output on the device, bit for bit, for the
every-row schedule and for a detector stride's batched schedule, the latter in the linked form (one
array: the graphs' structure, then the windowed model whose weights and scales they read).

The model is `ds_cnn_s_fb40_valid` with its initial weights, exported to int8 (no training: the
check is the graphs' arithmetic, not the model's accuracy). Needs TFLM_DIR and the other TFLM
checkouts, arm-none-eabi-gcc and qemu-system-arm; skips with the reason otherwise, as in CI.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from polykws.core import PolykwsError

pytestmark = pytest.mark.tflm


@pytest.fixture(scope="module")
def window_tflite(tmp_path_factory):
    import torch
    from polykws.datasets.frontend import micro_frontend
    from polykws.export.api import export_base
    from polykws.training.models import create_model

    torch.manual_seed(0)
    model = create_model("ds_cnn_s_fb40_valid", num_classes=12, input_shape=(49, 40)).eval()
    # Calibration features spread over the micro frontend's range, so every layer's scale is used.
    x = np.random.default_rng(0).uniform(0.0, 26.0, size=(64, 49, 40)).astype(np.float32)
    labels = ["_silence_", "_unknown_"] + [f"kw{i}" for i in range(10)]
    return export_base(model, micro_frontend(), labels, x, tmp_path_factory.mktemp("valid")).tflite


@pytest.mark.parametrize(("stride_frames", "linked"), [(None, False), (5, True)])
def test_step_graph_on_the_m4_equals_host_and_windowed_graph(stride_frames, linked, window_tflite, tmp_path):
    from polykws.export.stepgraph import (
        detector_schedule,
        every_row_schedule,
        link_graphs,
        rows_per_step_for,
        streaming_graphs,
    )
    from polykws.firmware.build import ThirdParty
    from polykws.firmware.stepbench import generate_step_sources, run_step_bench

    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    try:
        third = ThirdParty.from_env("cmsis-nn")
    except PolykwsError as exc:
        pytest.skip(str(exc))
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
