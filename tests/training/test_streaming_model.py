"""Streaming inference of a valid-padded DS-CNN: every window's logits equal the windowed model's,
each stem row is computed once, and a model that pads time is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polykws.training.models import create_model, list_models
from polykws.training.models.streaming import StreamingDSCNN

# Both compute the same rows with the same ops; only the pooling's summation order may differ.
ATOL = 1e-5


def _valid_models() -> list[str]:
    return [name for name in list_models() if create_model(name, num_classes=3).spec.time_padding == "valid"]


def _trained_like(name: str, seed: int = 0):
    """A model with non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=7).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model


def _stream(streamer: StreamingDSCNN, frames: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, list[int]]:
    outs, ends, i = [], [], 0
    while i < frames.shape[1]:
        k = int(rng.integers(0, 23))  # chunks of 0..22 frames, across stem boundaries
        o, e = streamer.push(frames[:, i: i + k])
        outs.append(o)
        ends += e
        i += k
    return torch.cat(outs, dim=1), ends


def test_the_registry_has_a_streaming_variant():
    assert "ds_cnn_s_fb40_valid" in _valid_models()


@pytest.mark.parametrize("name", _valid_models())
def test_every_window_of_a_stream_equals_the_windowed_model(name):
    model = _trained_like(name)
    frames, feats = model.input_shape
    x = torch.randn(2, 5 * frames + 7, feats)
    streamer = StreamingDSCNN(model)
    logits, ends = _stream(streamer, x, np.random.default_rng(0))
    stride = model.spec.first_stride[0]
    # One output per stem stride once the first window is full, to the end of the stream.
    first = ends[0]
    assert ends == list(range(first, x.shape[1] + 1, stride)) and streamer.window_start(first) == 0
    with torch.no_grad():
        windowed = torch.stack([model(x[:, streamer.window_start(e): streamer.window_start(e) + frames].unsqueeze(1)) for e in ends], dim=1)
    assert logits.shape == windowed.shape
    torch.testing.assert_close(logits, windowed, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", _valid_models())
def test_each_stem_row_is_computed_once_and_reset_starts_a_new_stream(name):
    model = _trained_like(name, seed=1)
    frames, feats = model.input_shape
    rows = []
    hook = model.conv0.register_forward_hook(lambda _m, _i, out: rows.append(out.shape[2]))
    x = torch.randn(1, 3 * frames, feats)
    streamer = StreamingDSCNN(model)
    first, _ = _stream(streamer, x, np.random.default_rng(1))
    kernel, stride = model.spec.first_kernel[0], model.spec.first_stride[0]
    assert sum(rows) == (x.shape[1] - kernel) // stride + 1  # one stem row per stride, never again
    hook.remove()
    streamer.reset()
    again, _ = _stream(streamer, x, np.random.default_rng(2))
    torch.testing.assert_close(again, first, atol=ATOL, rtol=0)


def test_a_model_that_pads_time_or_trains_is_refused():
    with pytest.raises(ValueError, match=r"ds_cnn_s_fb40 pads time 'same'; only a model with time_padding='valid'"):
        StreamingDSCNN(create_model("ds_cnn_s_fb40", num_classes=3).eval())
    with pytest.raises(ValueError, match="eval-mode"):
        StreamingDSCNN(create_model("ds_cnn_s_fb40_valid", num_classes=3))
    with pytest.raises(ValueError, match=r"push takes \(N, T, 40\) frames"):
        StreamingDSCNN(create_model("ds_cnn_s_fb40_valid", num_classes=3).eval()).push(torch.zeros(1, 4, 10))


def test_a_stream_costs_one_row_per_layer_per_stem_stride():
    from polykws.training.models.streaming import stream_macs_per_second
    from polykws.training.profile import count_params_macs

    model = create_model("ds_cnn_s_fb40_valid", num_classes=12).eval()
    # 50 stem rows a second (10 ms frames, stride 2), each 5 columns x 64 channels: the stem's 80
    # taps, each block's 9 depthwise and 64 pointwise taps, and one 64x12 head per row.
    assert stream_macs_per_second(model) == 50 * (5 * 64 * 80 + 4 * 5 * 64 * (9 + 64) + 64 * 12) == 5_990_400
    window = count_params_macs(model).total_macs
    assert window == 1_914_368
    # A windowed detector pays a window per stride: the stream is cheaper from a 40 ms stride on.
    assert window * 1000 / 40 > stream_macs_per_second(model) > window * 1000 / 400
