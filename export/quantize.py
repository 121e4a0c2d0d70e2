"""int8 arithmetic of the TFLite converter, reproduced so language models can be built on the base's scales.

Measured on TF 2.21 with weights and biases crafted to sit on rounding ties (see
tests/export/test_quantize.py), the converter quantizes
- weights per output channel, symmetric, narrow range, all in float32:
  ``scale = f32(max|w_c|) / 127``, ``q = round_half_away(w * f32(1 / scale))``, clamped to
  [-127, 127]; an all-zero channel gets the range +-5e-7 (scale 3.937008e-09);
- biases to int32: ``bias_scale = f32(input_scale * weight_scale_c)`` (a float32 product),
  ``q = round_half_away(b * f32(1 / bias_scale))``;
- activations asymmetric over [min(rmin, 0), max(rmax, 0)] with a nudged zero point.

`requantize` code applies exactly this arithmetic on given scales; exporting a base asserts
that it reproduces the converter's own bytes (api.export_base), which is what makes "untouched
tensors keep their bytes, touched ones move only where the float weights moved" true.
"""

from __future__ import annotations

import numpy as np

from polykws.core.int8 import WEIGHT_QMAX, ZERO_CHANNEL_HALF_RANGE

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

_F32 = np.float32


def round_half_away(x: np.ndarray) -> np.ndarray:
    """std::round / TfLiteRound: halves go away from zero (numpy's round goes to even)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _inverse(scales: np.ndarray) -> np.ndarray:
    """f32(1.0 / scale): the reciprocal the converter multiplies by."""
    return (1.0 / np.asarray(scales, dtype=np.float32).astype(np.float64)).astype(np.float32)


def _channel_shape(ndim: int, axis: int) -> list[int]:
    shape = [1] * ndim
    shape[axis] = -1
    return shape


def weight_scales(w: np.ndarray, axis: int, qmax: int = WEIGHT_QMAX) -> np.ndarray:
    """Per-channel symmetric float32 scales, as the converter computes them (qmax 127).

    A smaller `qmax` puts the channel's largest weight at +-qmax: the values span fewer int8
    codes (a 6-bit head: qmax 31), which the device runs unchanged and a blob codes in fewer bits.
    """
    w = np.asarray(w, dtype=np.float32)
    axes = tuple(a for a in range(w.ndim) if a != axis)
    amax = np.max(np.abs(w), axis=axes) if axes else np.abs(w)
    amax = np.where(amax > 0, amax, ZERO_CHANNEL_HALF_RANGE).astype(np.float32)
    return (amax / _F32(qmax)).astype(np.float32)


def quantize_weights(w: np.ndarray, scales: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weights, per-channel count of values clamped to +-127) on the given float32 scales."""
    w = np.asarray(w, dtype=np.float32)
    inv = _inverse(scales).reshape(_channel_shape(w.ndim, axis))
    q = round_half_away((w * inv).astype(np.float32))
    clipped = (q > WEIGHT_QMAX) | (q < -WEIGHT_QMAX)
    axes = tuple(a for a in range(w.ndim) if a != axis)
    clip_count = clipped.sum(axis=axes) if axes else clipped.astype(int)
    return np.clip(q, -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8), clip_count


def bias_scales(input_scale: float, w_scales: np.ndarray) -> np.ndarray:
    """float32 product input_scale * weight_scale_c (what the converter stores and divides by)."""
    return (_F32(input_scale) * np.asarray(w_scales, dtype=np.float32)).astype(np.float32)


def quantize_bias(b: np.ndarray, input_scale: float, w_scales: np.ndarray) -> np.ndarray:
    inv = _inverse(bias_scales(input_scale, w_scales))
    q = round_half_away((np.asarray(b, dtype=np.float32) * inv).astype(np.float32))
    return np.clip(q, INT32_MIN + 1, INT32_MAX).astype(np.int32)


def activation_qparams(rmin: float, rmax: float) -> tuple[np.float32, int]:
    """int8 asymmetric (scale, zero_point) for a real range, nudged so 0.0 is exact (the converter's rule)."""
    rmin = min(float(rmin), 0.0)
    rmax = max(float(rmax), 0.0)
    if rmax == rmin:
        return np.float32(1.0), 0
    qmin, qmax = float(INT8_MIN), float(INT8_MAX)
    scale = (rmax - rmin) / (qmax - qmin)
    zp_from_min = qmin - rmin / scale
    if zp_from_min < qmin:
        zp = INT8_MIN
    elif zp_from_min > qmax:
        zp = INT8_MAX
    else:
        zp = int(round_half_away(zp_from_min))
    return np.float32(scale), zp


def quantize_activations(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float features -> int8 model input, as TFLM's reference QUANTIZE kernel does it.

    ``round(x / scale) + zero_point`` with the division in float32 and halves away from zero;
    the firmware quantizes its frontend output the same way.
    """
    ratio = np.asarray(x, dtype=np.float32) / np.float32(scale)  # float32 division, as in C
    q = round_half_away(ratio.astype(np.float64)) + zero_point
    return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, dtype=np.float32) - zero_point) * np.float32(scale)
