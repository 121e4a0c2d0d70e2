"""The posterior a detector thresholds: the head's int8 logits, and the int8 softmax over them at a temperature.

An int8 softmax (scale 1/256) saturates: a head that is sure of itself gives 255/256 to keywords
and to negatives alike, so no threshold tells them apart. Dividing the logits by a temperature
``T`` before the softmax gives the top of the scale its resolution back. This module lets the host
measure that without running the model once per temperature, and ships the chosen one:

- :func:`logits_model`: the same flatbuffer with its output switched to the head's int8 logits
  (the FULLY_CONNECTED that feeds the SOFTMAX), so one TFLM run yields the logits;
- :func:`softmax_int8`: TFLM's int8 softmax (the reference kernel, which CMSIS-NN's
  ``arm_softmax_s8`` equals) on those logits, for any input scale; bit-exact, which
  ``tests/export/test_posterior.py`` holds against the TFLM runtime;
- :func:`head_temperature`: the model with ``T = 2**k`` folded into the head's quantization
  parameters. The head's weight and bias scales and its output scale are all divided by ``T``:
  every requantization multiplier (input scale x weight scale / output scale) is bit-identical,
  so the int8 logits do not change, while the softmax reads them at scale ``s / T``. A power of
  two keeps every float32 exact. The blob patches these scale bytes like any other, so a
  language's temperature ships in its blob and the firmware runs it unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from polykws.export.convert import ExportError
from polykws.export.quantize import round_half_away
from polykws.export.requant import head_op_index
from polykws.export.tflite_graph import TfliteGraph, _vector_span

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
# gemmlowp fixed-point formats of TFLite's int8 softmax.
_SCALED_DIFF_INTEGER_BITS = 5
_ACCUMULATION_INTEGER_BITS = 12
# exp(-2^k) for the barrel shifter of gemmlowp's exp_on_negative_values, k = -2..4 (Q0.31).
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))
# Subgraph table field 2 (outputs): vtable offset 4 + 2 * 2.
_SUBGRAPH_OUTPUTS = 8
# Powers of two only: exact in float32, so the head's integer arithmetic is untouched.
MAX_LOG2_TEMPERATURE = 6


# ---------------------------------------------------------------------------------------------
# gemmlowp fixed point, vectorized over int64 arrays holding int32 values


def _srdhm(a: np.ndarray, b) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    x = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    q = np.where(x >= 0, x >> 31, -((-x) >> 31))  # C division truncates toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)


def _rounding_divide_by_pot(x: np.ndarray, exponent) -> np.ndarray:
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def _saturating_shift_left(x: np.ndarray, exponent: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT with a positive exponent."""
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, np.asarray(x, np.int64) << exponent))


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    x = a + (1 << 28)  # a + 1/8: the Taylor expansion is around -1/8
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = _rounding_divide_by_pot(x4, 2)
    poly = _rounding_divide_by_pot(_srdhm(x4_over_4 + x3, 715827883) + x2, 1)
    return 1895147668 + _srdhm(1895147668, x + poly)


def _exp_on_negative_values(a: np.ndarray) -> np.ndarray:
    """exp(a) in Q0.31 for a <= 0 in Q5.26."""
    fractional_bits = 31 - _SCALED_DIFF_INTEGER_BITS
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        _saturating_shift_left(a_mod_quarter_minus_one_quarter, _SCALED_DIFF_INTEGER_BITS))
    remainder = a_mod_quarter_minus_one_quarter - a
    for exponent, multiplier in _EXP_BARREL:
        if _SCALED_DIFF_INTEGER_BITS > exponent:
            result = np.where(remainder & (1 << (fractional_bits + exponent)), _srdhm(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    s = np.asarray(a, np.int64) + INT32_MAX
    half_denominator = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))  # RoundingHalfSum(a, One)
    x = 1515870810 + _srdhm(half_denominator, -1010580540)  # 48/17 - 32/17 * d, in Q2.29
    for _ in range(3):
        one_minus = (1 << 29) - _srdhm(half_denominator, x)
        x = x + _saturating_shift_left(_srdhm(x, one_minus), 2)
    return _saturating_shift_left(x, 1)


def _reciprocal(x: np.ndarray, integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's GetReciprocal: (Q0.31 scale, num_bits_over_unit)."""
    u = np.asarray(x, np.int64) & 0xFFFFFFFF
    clz = 32 - np.frexp(u.astype(np.float64))[1].astype(np.int64)  # u < 2^32 is exact in float64
    shifted = ((u << clz) - (1 << 31)) & 0xFFFFFFFF
    shifted = np.where(shifted >= (1 << 31), shifted - (1 << 32), shifted)
    return _one_over_one_plus_x_for_x_in_0_1(shifted), integer_digits - clz


def softmax_params(input_scale: float, beta: float = 1.0) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, diff_min) as TFLM's softmax Prepare computes them."""
    real = min(float(beta) * float(np.float32(input_scale)) * (1 << (31 - _SCALED_DIFF_INTEGER_BITS)), (1 << 31) - 1.0)
    q, shift = math.frexp(real)
    q_fixed = int(round_half_away(q * (1 << 31)))  # TfLiteRound
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < 0:
        raise ExportError(f"softmax input scale {input_scale} x beta {beta} is below TFLite's supported range")
    radius = math.floor(((1 << _SCALED_DIFF_INTEGER_BITS) - 1) * (1 << (31 - _SCALED_DIFF_INTEGER_BITS)) / (1 << shift))
    return q_fixed, shift, -radius


def softmax_int8(logits: np.ndarray, input_scale: float, beta: float = 1.0) -> np.ndarray:
    """TFLM's int8 softmax (output scale 1/256, zero point -128) over the last axis of int8 `logits`."""
    q = np.asarray(logits)
    if q.dtype != np.int8:
        raise ExportError(f"softmax_int8 takes int8 logits, got {q.dtype}")
    multiplier, left_shift, diff_min = softmax_params(input_scale, beta)
    diff = q.astype(np.int64) - q.max(axis=-1, keepdims=True)
    valid = diff >= diff_min
    scaled = _srdhm(np.where(valid, diff, 0) * (1 << left_shift), multiplier)
    exps = _exp_on_negative_values(scaled)
    total = np.sum(np.where(valid, _rounding_divide_by_pot(exps, _ACCUMULATION_INTEGER_BITS), 0), axis=-1, keepdims=True)
    scale, bits_over_unit = _reciprocal(total, _ACCUMULATION_INTEGER_BITS)
    out = _rounding_divide_by_pot(_srdhm(scale, exps), bits_over_unit + 31 - 8) - 128
    return np.where(valid, np.clip(out, -128, 127), -128).astype(np.int8)


def logit_margin_int8(logits: np.ndarray) -> np.ndarray:
    """Per class, its int8 logit minus the largest other class's, clipped to [0, 255], as int8 (p - 128)."""
    q = np.asarray(logits).astype(np.int64)
    if q.shape[-1] < 2:
        raise ExportError("a logit margin needs at least two classes")
    top2 = np.sort(q, axis=-1)[..., -2:]
    best_other = np.where(q == top2[..., 1:], top2[..., :1], top2[..., 1:])
    return (np.clip(q - best_other, 0, 255) - 128).astype(np.int8)


def keyword_vs_rest_int8(probs: np.ndarray, is_keyword: np.ndarray) -> np.ndarray:
    """int8 softmax outputs (I, classes) -> the keywords' summed probability (clipped to 255) on
    the likeliest keyword, 0 on the other keywords, the other classes unchanged (as int8, p - 128)."""
    p = np.asarray(probs).astype(np.int64) + 128
    is_keyword = np.asarray(is_keyword, bool)
    if p.shape[-1] != is_keyword.shape[0] or not is_keyword.any():
        raise ExportError(f"keyword vs rest needs a keyword mask over the {p.shape[-1]} classes with a keyword in it")
    kw = np.flatnonzero(is_keyword)
    out = np.where(is_keyword, 0, p)
    top = kw[np.argmax(p[:, kw], axis=-1)]
    out[np.arange(p.shape[0]), top] = np.minimum(p[:, kw].sum(axis=-1), 255)
    return (out - 128).astype(np.int8)


# ---------------------------------------------------------------------------------------------
# Flatbuffer views


def _head(g: TfliteGraph):
    idx = head_op_index(g)
    op = g.ops[idx]
    sm = [o for o in g.ops if o.opcode == "SOFTMAX" and o.inputs[0] == op.outputs[0] and o.outputs[0] == g.outputs[0]]
    if not sm:
        raise ExportError("the model's output is not a SOFTMAX over its FULLY_CONNECTED head")
    return op


def logits_model(tflite: bytes) -> tuple[bytes, float]:
    """(the model with the head's int8 logits as its output, the logits' scale)."""
    from ai_edge_litert import schema_py_generated as schema

    g = TfliteGraph(tflite, "model")
    head = _head(g)
    sg = schema.Model.GetRootAsModel(g.data, 0).Subgraphs(0)
    span = _vector_span(sg._tab, _SUBGRAPH_OUTPUTS, 4)
    if span is None or span[1] - span[0] != 4:
        raise ExportError("the model must have exactly one output")
    out = bytearray(g.data)
    out[span[0] : span[1]] = np.array([head.outputs[0]], "<i4").tobytes()
    return bytes(out), float(g.tensors[head.outputs[0]].scales[0])


def head_temperature(tflite: bytes, log2_temperature: int) -> bytes:
    """The model with softmax temperature ``2**log2_temperature`` folded into the head (module doc)."""
    k = int(log2_temperature)
    if not 0 <= k <= MAX_LOG2_TEMPERATURE:
        raise ExportError(f"log2 temperature must be in [0, {MAX_LOG2_TEMPERATURE}], got {log2_temperature!r}")
    g = TfliteGraph(tflite, "model")
    head = _head(g)
    out = bytearray(g.data)
    factor = np.float32(2.0 ** -k)
    for t in (g.tensors[head.inputs[1]], g.tensors[head.inputs[2]], g.tensors[head.outputs[0]]):
        if t.scale_span is None:
            raise ExportError(f"head tensor {t.index} has no quantization scales")
        a, b = t.scale_span
        scales = np.frombuffer(g.data[a:b], "<f4")
        new = (scales * factor).astype("<f4")
        if not np.array_equal(new.astype(np.float64) * 2.0**k, scales.astype(np.float64)):
            raise ExportError(f"head tensor {t.index}: a scale underflows float32 at temperature 2**{k}")
        out[a:b] = new.tobytes()
    return bytes(out)
