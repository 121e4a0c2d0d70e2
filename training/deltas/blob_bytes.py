"""Language-blob bytes of a delta: the v2 patch coder's own cost model (no export import).

A language ships as a weight-diff blob (docs/BLOB_FORMAT.md, format 2): one range-coded record
per changed tensor region, listing which elements change (bitmap or gaps) and by how much. The
coder lives in the core (`polykws.core.patchcode`), so this module budgets against the real
encoder:

- `exact_cost(base_tflite, merged_tflite)`: the patch stream's exact bytes for two exported models;
- `tensor_cost(before, after)`: exact bytes of one tensor's record from its int8/int32 arrays;
- `estimate_from_arrays(before, after)`: the same from the arrays' statistics only (how many
  elements change, the entropy of their differences), what the per-family estimates use;
- per-family estimates from shapes (`DeltaLayer.blob_bytes`, what SWR budgets with before
  training), which assume typical statistics (`INT8_DELTA_BITS`, ...), measured on exported
  transfers (docs/BENCHMARKS.md, "Blob v2").

The exporter (`scales="auto"`) stores a touched body tensor as int8 weights on per-channel
float32 scales with an int32 bias whose float32 scale follows the weight scale. Constant
overhead every blob pays (header, digest, labels, CRC) and the language head are not part of
these estimates: they cover a site's *body* bytes only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from polykws.core.patchcode import encode_records, estimate_record_bytes, plan_records, stream_bytes, tflite_regions

# Bits one changed element's value costs in the coder, typical of exported transfers.
INT8_DELTA_BITS = 5.5  # a re-quantized int8 weight
INT32_BIAS_BITS = 11.5  # an int32 bias that follows a changed weight or scale
FLOAT32_SCALE_BITS = 23.0  # a re-fitted float32 scale (its bits' difference from the base's)
# A bias scale is the input scale times the weight scale: a derived record predicts it exactly
# (32 bits of multiplier per record, then a zero residual per element).
DERIVED_SCALE_BITS = 0.5
DERIVED_RECORD_BITS = 32 + 16
# Share of a tensor's int8 weights a dense delta moves (the rest round to the same byte).
DENSE_CHANGED_FRACTION = 0.85


def exact_cost(base_tflite: bytes, merged_tflite: bytes) -> int:
    """Exact patch-stream bytes that turn one exported model into the other (layout-identical)."""
    return stream_bytes(bytes(base_tflite), bytes(merged_tflite), tflite_regions(bytes(base_tflite)))


def _as_bytes(a: np.ndarray) -> tuple[bytes, int]:
    a = np.ascontiguousarray(a)
    if a.dtype.itemsize == 1:
        return a.astype(np.int8).tobytes(), 1
    if a.dtype.itemsize == 4:
        return a.astype("<i4" if a.dtype.kind in "iu" else "<f4").tobytes(), 4
    raise ValueError(f"{a.dtype}: blob records hold 1- or 4-byte elements")


def tensor_cost(before: np.ndarray, after: np.ndarray) -> int:
    """Exact bytes of the record(s) turning `before` into `after` (one tensor), on their own."""
    b, width = _as_bytes(before)
    t, _ = _as_bytes(after)
    records = plan_records(b, t, [(0, len(b), width)])
    return len(encode_records(records)) - len(encode_records([]))


def estimate_from_arrays(before: np.ndarray, after: np.ndarray) -> float:
    """Estimated record bytes from statistics only: changed count, span and the differences' entropy."""
    b, width = _as_bytes(before)
    t, _ = _as_bytes(after)
    records = plan_records(b, t, [(0, len(b), width)])
    total = 0.0
    for r in records:
        # Empirical entropy underestimates small samples of wide values; the coder's magnitude
        # classes do not: bit length + sign + about one bit for the length itself.
        bits = min(_value_bits(r.deltas, width), _value_bits(r.literals, width))
        distinct = len(np.unique(r.deltas))
        total += estimate_record_bytes(r.span, len(r.positions), width, bits, distinct=distinct, bitmap_bits=_bitmap_bits(r))
    return total


def _bitmap_bits(r) -> float:
    """Entropy of the record's changed-element bitmap given the previous bit (the bitmap's context)."""
    bits = np.zeros(r.span, np.int8)
    bits[r.positions] = 1
    prev = np.concatenate(([0], bits[:-1]))
    total = 0.0
    for c in (0, 1):
        sel = bits[prev == c]
        if len(sel):
            q = sel.mean()
            if 0 < q < 1:
                total += len(sel) * float(-(q * np.log2(q)) - (1 - q) * np.log2(1 - q))
    return total


def _value_bits(values: np.ndarray, width: int) -> float:
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    empirical = float(-(p * np.log2(p)).sum())
    lengths = np.floor(np.log2(np.abs(values.astype(np.float64)) + 1)) + 1
    # int8: an adaptive tree reaches the empirical entropy once it has seen enough values; words:
    # an adaptive unary length, the bits below the top one and a sign.
    if width == 1 and len(values) >= 256:
        return empirical
    return max(empirical, float(lengths.mean()) + (1.0 if width == 1 else 4.0))


def out_channels(module: nn.Module) -> int:
    return int(module.weight.shape[0])


def channel_requant_bytes(channels: int) -> int:
    """Re-fitted scales of `channels` output channels: weight scale, bias scale (derived from the
    weight scale), int32 bias: three records."""
    if channels <= 0:
        return 0
    return int(round(estimate_record_bytes(channels, channels, 4, FLOAT32_SCALE_BITS)
                     + estimate_record_bytes(channels, channels, 4, DERIVED_SCALE_BITS) + DERIVED_RECORD_BITS / 8
                     + estimate_record_bytes(channels, channels, 4, INT32_BIAS_BITS)))


def scale_pair_cost(weight_scales_before: np.ndarray, weight_scales_after: np.ndarray, input_scale: float) -> int:
    """Exact bytes of a site's weight-scale and bias-scale records (bias scale = input x weight
    scale in float32, as the exporter stores it), coded as the blob codes them."""
    s_in = np.float32(input_scale)
    w0 = np.asarray(weight_scales_before, np.float32)
    w1 = np.asarray(weight_scales_after, np.float32)
    before = np.concatenate([w0, (s_in * w0).astype(np.float32)]).tobytes()
    after = np.concatenate([w1, (s_in * w1).astype(np.float32)]).tobytes()
    n = 4 * len(w0)
    return len(encode_records(plan_records(before, after, [(0, n, 4), (n, 2 * n, 4)]))) - len(encode_records([]))


def bias_bytes(module: nn.Module) -> int:
    """Every int32 bias entry of the site changes; the int8 weights and scales do not."""
    n = out_channels(module)
    return int(round(estimate_record_bytes(n, n, 4, INT32_BIAS_BITS)))


def tensor_rewrite_bytes(module: nn.Module) -> int:
    """A delta dense on the weight tensor moves most int8 weight bytes, and its channels' scales
    are re-fitted (hence their int32 biases change too)."""
    n = int(module.weight.numel())
    weights = estimate_record_bytes(n, int(n * DENSE_CHANGED_FRACTION), 1, INT8_DELTA_BITS)
    return int(round(weights)) + channel_requant_bytes(out_channels(module))


def sparse_weight_bytes(nonzeros: int, numel: int | None = None) -> int:
    """`nonzeros` changed int8 weights scattered over a tensor of `numel` (gap-coded)."""
    if nonzeros <= 0:
        return 0
    span = max(numel or 0, nonzeros)
    return int(round(estimate_record_bytes(span, nonzeros, 1, INT8_DELTA_BITS)))


def layer_body_bytes(layer) -> int:
    """Bytes a delta layer's site adds to the blob: the exact v2 record of its changed int8
    weights on the base's grid (an estimate from the family when it is not on the grid), plus
    its int32 bias record when the family moves the bias."""
    with torch.no_grad():
        if layer.grid is None:
            return int(type(layer).blob_bytes(layer.base_layer, layer.cfg))
        q0, q1 = layer.grid.int8_pair(layer.base_weight(), layer.delta_weight())
        total = tensor_cost(q0, q1) if bool((q0 != q1).any()) else 0
        db = layer.delta_bias()
        if db is not None and bool((db != 0).any()):
            total += bias_bytes(layer.base_layer)
        return int(total)
