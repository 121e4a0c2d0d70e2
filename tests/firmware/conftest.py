"""Fixtures for firmware tests: a small but real int8 TFLite model built with the LiteRT schema.

The model (RESHAPE, MEAN, FULLY_CONNECTED; int8 in/out, int32 bias) is a valid flatbuffer that the
TFLM runtime executes; language variants change weight bytes in place, so they are
layout-identical to the base exactly like the exporter's models. It keeps firmware tests free of
TensorFlow conversions; the `tflm` test additionally uses a real exported DS-CNN pack when one
is available.
"""

from __future__ import annotations

import numpy as np
import pytest


def build_int8_fc_model(seed: int = 0, frames: int = 49, features: int = 10, slots: int = 12,
                        mean_axes: tuple[int, ...] = (1, 2), output_qparams: tuple[float, int] = (0.05, 3),
                        weight_scale: float = 0.02, softmax: bool = False) -> bytes:
    """input (1,49,10,1) -> RESHAPE (1,7,7,10) -> MEAN over `mean_axes` -> RESHAPE (1,10) -> FULLY_CONNECTED -> (1,slots).

    MEAN is the pooling of packs exported with `mean` (the firmware's fast path serves them); its
    input and output scales and zero points differ so the requantization is exercised.
    ``softmax=True`` ends the graph as the exporter does: the head's int8 logits (scale
    ``output_qparams[0]``) go through SOFTMAX to an output at (1/256, -128), which the stream
    scoring needs (it reads the logits and computes TFLM's softmax itself).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    rng = np.random.default_rng(seed)
    n_in = frames * features
    side, ch = 7, n_in // 49
    weights = rng.integers(-127, 128, size=(slots, ch), dtype=np.int8)
    bias = rng.integers(-2000, 2000, size=(slots,), dtype=np.int32)

    def buffer(data: bytes | None) -> "s.BufferT":
        b = s.BufferT()
        b.data = list(data) if data else None
        return b

    def qparams(scale: float, zp: int) -> "s.QuantizationParametersT":
        q = s.QuantizationParametersT()
        q.scale = [scale]
        q.zeroPoint = [zp]
        return q

    def tensor(name: str, shape, ttype, buf: int, q=None) -> "s.TensorT":
        t = s.TensorT()
        t.name = name
        t.shape = list(shape)
        t.type = ttype
        t.buffer = buf
        t.quantization = q
        return t

    i32 = lambda v: np.array(v, "<i4").tobytes()  # noqa: E731
    model = s.ModelT()
    model.version = 3
    model.buffers = [buffer(None), buffer(None), buffer(None), buffer(i32([1, side, side, ch])), buffer(i32(list(mean_axes))),
                     buffer(None), buffer(i32([1, ch])), buffer(None), buffer(weights.tobytes()), buffer(bias.astype("<i4").tobytes()),
                     buffer(None)] + ([buffer(None)] if softmax else [])  # fmt: skip
    in_scale, pooled_scale, w_scale = 0.1, 0.037, weight_scale
    tensors = [
        tensor("input", (1, frames, features, 1), s.TensorType.INT8, 1, qparams(in_scale, -4)),
        tensor("grid", (1, side, side, ch), s.TensorType.INT8, 2, qparams(in_scale, -4)),
        tensor("grid_shape", (4,), s.TensorType.INT32, 3),
        tensor("mean_axes", (len(mean_axes),), s.TensorType.INT32, 4),
        tensor("pooled", (1, 1, 1, ch), s.TensorType.INT8, 5, qparams(pooled_scale, 7)),
        tensor("flat_shape", (2,), s.TensorType.INT32, 6),
        tensor("flat", (1, ch), s.TensorType.INT8, 7, qparams(pooled_scale, 7)),
        tensor("weights", (slots, ch), s.TensorType.INT8, 8, qparams(w_scale, 0)),
        tensor("bias", (slots,), s.TensorType.INT32, 9, qparams(pooled_scale * w_scale, 0)),
        tensor("logits" if softmax else "output", (1, slots), s.TensorType.INT8, 10, qparams(*output_qparams)),
    ]
    if softmax:
        tensors.append(tensor("output", (1, slots), s.TensorType.INT8, 11, qparams(1.0 / 256.0, -128)))
    codes = []
    for code in (s.BuiltinOperator.RESHAPE, s.BuiltinOperator.MEAN, s.BuiltinOperator.FULLY_CONNECTED) + ((s.BuiltinOperator.SOFTMAX,) if softmax else ()):
        oc = s.OperatorCodeT()
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = code
        oc.version = 1
        codes.append(oc)
    model.operatorCodes = codes

    def op(index, inputs, outputs, opt_type=None, opt=None):
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = index, inputs, outputs
        if opt_type is not None:
            o.builtinOptionsType, o.builtinOptions = opt_type, opt
        return o

    keep = s.ReducerOptionsT()
    keep.keepDims = True
    ops = [
        op(0, [0, 2], [1]),
        op(1, [1, 3], [4], s.BuiltinOptions.ReducerOptions, keep),
        op(0, [4, 5], [6]),
        op(2, [6, 7, 8], [9], s.BuiltinOptions.FullyConnectedOptions, s.FullyConnectedOptionsT()),
    ]
    if softmax:
        beta = s.SoftmaxOptionsT()
        beta.beta = 1.0
        ops.append(op(3, [9], [10], s.BuiltinOptions.SoftmaxOptions, beta))
    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = tensors, [0], [len(tensors) - 1], ops
    model.subgraphs = [sg]
    b = flatbuffers.Builder(4096)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def language_variant(base: bytes, seed: int, fraction: float = 0.05) -> bytes:
    """Same layout, different weights: rewrite a fraction of the FULLY_CONNECTED weight bytes in place."""
    from polykws.export.tflite_graph import TfliteGraph

    g = TfliteGraph(base)
    w = next(t for t in g.tensors if t.name == "weights")
    start, end = w.data_span
    rng = np.random.default_rng(seed)
    out = bytearray(base)
    idx = rng.choice(end - start, size=max(1, int((end - start) * max(fraction, 0.2))), replace=False)
    for i in idx:
        out[start + i] = int(rng.integers(0, 256))
    return bytes(out)


@pytest.fixture(scope="session")
def int8_models():
    base = build_int8_fc_model()
    return base, {"lt": language_variant(base, 1), "uk": language_variant(base, 2)}


@pytest.fixture(scope="session")
def int8_model_factory():
    return build_int8_fc_model


@pytest.fixture(scope="session")
def int8_variant_factory():
    return language_variant


def signal_stream() -> np.ndarray:
    """8 s of int16 PCM that reaches every corner of the micro frontend: silence, a full-scale square
    wave past the quantizer's clip, tones, noise at several levels, syllable-like bursts, a chirp."""
    rng = np.random.default_rng(3)
    t = np.arange(16000) / 16000
    parts = [
        np.zeros(8000),
        0.999 * np.sign(np.sin(2 * np.pi * 2000 * t)),  # full scale after silence: past the quantizer's clip
        0.25 * np.sin(2 * np.pi * 440 * t),
        0.05 * np.sin(2 * np.pi * 3000 * t),
        rng.normal(0, 0.01, 16000),
        rng.normal(0, 0.2, 16000),
        rng.normal(0, 0.3, 16000) * np.abs(np.sin(2 * np.pi * 3 * t)) ** 2,  # syllable-like bursts
        0.5 * np.sin(2 * np.pi * (100 * t + 3500 * t**2)),  # chirp 100 Hz -> 7.1 kHz
        np.zeros(16000 // 3),
    ]
    audio = np.concatenate(parts)
    return np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="session")
def signal_pcm() -> np.ndarray:
    return signal_stream()


@pytest.fixture(scope="session")
def toolchain():
    """(ThirdParty, FrontendSources) for the TFLM apps under QEMU, or a skip naming what is missing
    (tests that also need cmake check it themselves)."""
    import shutil

    from polykws.firmware.build import ThirdParty
    from polykws.firmware.frontendcheck import FrontendSources

    from polykws.core import PolykwsError

    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (.ci/run installs it from Debian)")
    try:
        return ThirdParty.from_env("cmsis-nn"), FrontendSources.from_env()
    except PolykwsError as exc:
        pytest.skip(str(exc))
