"""Language models as in-place patches of the base's int8 flatbuffer.

Inputs: the base's int8 graph, the base's float graph (what the quantizer saw) and the
language's float graph from the same converter. All three have the same operators in the same
order, so weights are matched op by op - no tensor-name matching, no model-specific code.

Per weighted op (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED):
- untouched (float weights and bias bit-identical to the base): the base's bytes stay;
- touched body tensor: int8 on the base's per-channel scales, clamped (`frozen`), or on scales
  re-fitted to the new weights (`refit`), or per channel the base's scale unless it would clamp
  or the channel was rescaled as a whole (`auto`: a re-fitted scale that gives back the base's
  int8 row, where the frozen one would rewrite most of it, as BatchNorm-only transfer does).
  Deltas trained on the base's int8 grid never clamp and are sparse edits, so `auto` stores
  exactly the bytes they moved. Biases follow their channel's scale. Activation ranges stay the
  base's;
- the head (the FULLY_CONNECTED feeding the output SOFTMAX) is language-specific: by default its
  per-row scales are re-fitted and its output range is re-fitted on the language's calibration
  logits (a frozen range clamps logits and turns the top classes into argmax ties). Re-fitted
  rows may use fewer than 8 bits (`head_weight_bits`: int8 values within +-(2^(bits-1)-1)), which
  the device runs unchanged and the blob codes in fewer bytes. Rows past the language's
  `num_labels` keep the base's bytes: nothing reads them (argmax_first).

The result is written into a copy of the base's bytes; only tensor data and quantization
vectors change, which `tflite_graph.assert_layout_identical` then proves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from polykws.core.int8 import head_weight_bits_error
from polykws.export.convert import ExportError
from polykws.export.quantize import (
    INT8_MIN,
    INT32_MIN,
    WEIGHT_QMAX,
    activation_qparams,
    bias_scales,
    quantize_bias,
    quantize_weights,
    weight_scales,
)
from polykws.export.tflite_graph import OpInfo, TensorInfo, TfliteGraph

SCALE_POLICIES = ("frozen", "refit", "auto")
HEAD_POLICIES = ("frozen", "refit")
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# Padding rows' logit sits this many output steps below the int8 minimum: saturates to -128.
PAD_MARGIN_STEPS = 256
# With padding rows, the head's output range reaches at least this far below its maximum, so a
# padding slot's softmax probability (at most e^-12 of the top class's) quantizes to exactly 0
# and the real classes' probabilities are not diluted on the device.
PAD_LOGIT_GAP = 12.0


@dataclass
class TensorReport:
    op: int
    opcode: str
    role: str  # "body" or "head"
    touched: bool
    policy: str
    channels: int
    channels_refit: int = 0
    clamped_weights: int = 0
    changed_weight_bytes: int = 0
    changed_bias_values: int = 0
    changed_scales: int = 0

    def to_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class Requantized:
    data: bytes
    reports: list[TensorReport] = field(default_factory=list)
    head_output: tuple[float, int] | None = None  # (scale, zero point) of the head's output

    def summary(self) -> dict:
        touched = [r for r in self.reports if r.touched]
        return {
            "touched_tensors": len(touched),
            "channels_refit": sum(r.channels_refit for r in self.reports),
            "clamped_weights": sum(r.clamped_weights for r in self.reports),
            "changed_weight_bytes": sum(r.changed_weight_bytes for r in self.reports),
            "changed_bias_values": sum(r.changed_bias_values for r in self.reports),
            "changed_scales": sum(r.changed_scales for r in self.reports),
        }


def weighted_op_pairs(gq: TfliteGraph, gf: TfliteGraph) -> list[tuple[OpInfo, OpInfo]]:
    """(int8 op, float op) pairs for every weighted op; refuses graphs that do not line up."""
    if gq.opcodes() != gf.opcodes():
        raise ExportError(f"int8 and float graphs have different op lists: {gq.opcodes()} vs {gf.opcodes()}")
    pairs = []
    for oq, of in zip(gq.ops, gf.ops):
        if oq.opcode not in WEIGHTED_OPS:
            continue
        wq, wf = gq.tensors[oq.inputs[1]], gf.tensors[of.inputs[1]]
        if wq.shape != wf.shape or len(oq.inputs) < 3 or oq.inputs[2] < 0 or of.inputs[2] < 0:
            raise ExportError(f"op {oq.index} {oq.opcode}: weight shapes {wq.shape} vs {wf.shape} or a missing bias")
        pairs.append((oq, of))
    return pairs


def head_op_index(g: TfliteGraph) -> int:
    """The FULLY_CONNECTED whose output feeds the output SOFTMAX (else the last FULLY_CONNECTED)."""
    out = g.outputs[0]
    for op in g.ops:
        if op.opcode == "SOFTMAX" and op.outputs[0] == out:
            producer = [p for p in g.ops if op.inputs[0] in p.outputs]
            if producer and producer[0].opcode == "FULLY_CONNECTED":
                return producer[0].index
    fcs = [op.index for op in g.ops if op.opcode == "FULLY_CONNECTED"]
    if not fcs:
        raise ExportError("no FULLY_CONNECTED head found in the graph")
    return fcs[-1]


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.tobytes() == b.tobytes()


class _Patcher:
    def __init__(self, base: bytes):
        self.out = bytearray(base)

    def _put(self, span: tuple[int, int] | None, raw: bytes, what: str) -> None:
        if span is None or span[1] - span[0] != len(raw):
            raise ExportError(f"{what}: {len(raw)} bytes do not fit the base's field {span}")
        self.out[span[0] : span[1]] = raw

    def data(self, t: TensorInfo, arr: np.ndarray) -> None:
        dtype = {"INT8": "<i1", "INT32": "<i4"}[t.type_name]
        self._put(t.data_span, np.ascontiguousarray(arr, dtype=dtype).tobytes(), f"tensor {t.index} data")

    def scales(self, t: TensorInfo, scales: np.ndarray) -> None:
        self._put(t.scale_span, np.asarray(scales, dtype="<f4").tobytes(), f"tensor {t.index} scales")

    def zero_points(self, t: TensorInfo, zps: np.ndarray) -> None:
        self._put(t.zero_point_span, np.asarray(zps, dtype="<i8").tobytes(), f"tensor {t.index} zero points")


def _per_channel(a: np.ndarray, axis: int) -> np.ndarray:
    """View with channels first: (channels, rest)."""
    return np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)


def verify_requantizer(gq: TfliteGraph, gf: TfliteGraph, skip_rows: dict[int, int] | None = None) -> int:
    """Requantize every weight and bias of the float graph on its own scales; must equal the int8 graph's bytes.

    Returns the number of values checked. `skip_rows` maps an op index to the number of leading
    channels to check (head padding rows, whose scales the exporter rewrites, are skipped).
    """
    checked = 0
    for oq, of in weighted_op_pairs(gq, gf):
        wq_t, bq_t = gq.tensors[oq.inputs[1]], gq.tensors[oq.inputs[2]]
        axis = wq_t.quantized_dimension
        w_f, b_f = gf.array(of.inputs[1]), gf.array(of.inputs[2])
        s = weight_scales(w_f, axis)
        n = (skip_rows or {}).get(oq.index, len(s))
        stored = wq_t.scales
        if not np.array_equal(s.astype(np.float32)[:n], stored[:n]):
            raise ExportError(f"op {oq.index} {oq.opcode}: recomputed weight scales differ from the converter's")
        q, _ = quantize_weights(w_f, s, axis)
        if not np.array_equal(_per_channel(q, axis)[:n], _per_channel(gq.array(wq_t), axis)[:n]):
            bad = int(np.sum(_per_channel(q, axis)[:n] != _per_channel(gq.array(wq_t), axis)[:n]))
            raise ExportError(f"op {oq.index} {oq.opcode}: requantized weights differ from the converter's in {bad} values")
        s_in = float(gq.tensors[oq.inputs[0]].scales[0])
        qb = quantize_bias(b_f, s_in, s)
        if not np.array_equal(qb[:n], gq.array(bq_t)[:n]):
            raise ExportError(f"op {oq.index} {oq.opcode}: requantized bias differs from the converter's")
        if not np.array_equal(bias_scales(s_in, s).astype(np.float32)[:n], bq_t.scales[:n]):
            raise ExportError(f"op {oq.index} {oq.opcode}: recomputed bias scales differ from the converter's")
        checked += int(_per_channel(q, axis)[:n].size + n)
    return checked


def head_qmax(head_weight_bits: int) -> int:
    """The largest |int8| of a head row quantized to `head_weight_bits` (8: the converter's 127)."""
    return (1 << (head_weight_bits - 1)) - 1


def _choose_scales(
    w_new: np.ndarray, q_base: np.ndarray, s_base: np.ndarray, axis: int, policy: str, qmax: int = WEIGHT_QMAX
) -> tuple[np.ndarray, np.ndarray]:
    """(per-channel double scales, per-channel 'refit' flags); re-fitted scales put max |w| at +-qmax."""
    s_refit = weight_scales(w_new, axis, qmax)
    if policy == "frozen":
        return s_base.copy(), np.zeros(len(s_base), bool)
    if policy == "refit":
        return s_refit, ~np.isclose(s_refit, s_base, rtol=0, atol=0)
    # auto: per channel, the base's scale unless the new weights would clamp on it, or unless the
    # channel was rescaled as a whole. The frozen grid is what transfer trains on, so a re-fit
    # there would rewrite bytes the delta never paid for; a channel that outgrew its scale (a
    # float delta, full fine-tuning) is re-fitted. A rescaled channel (BatchNorm's gamma folded
    # in) rewrites most of its bytes on the frozen grid, while a re-fitted scale gives back the
    # base's int8 row exactly: the blob then carries one scale instead of the row. A sparse
    # edit on the grid changes few bytes, so it keeps the base's scale and its paid bytes.
    q_frozen, clamped = quantize_weights(w_new, s_base, axis)
    q_refit, _ = quantize_weights(w_new, s_refit, axis)
    base_rows = _per_channel(q_base, axis)
    rewritten = np.sum(_per_channel(q_frozen, axis) != base_rows, axis=1)
    rescaled = np.all(_per_channel(q_refit, axis) == base_rows, axis=1) & (2 * rewritten > base_rows.shape[1])
    use_refit = (clamped > 0) | rescaled
    return np.where(use_refit, s_refit, s_base), use_refit & (s_refit != s_base)


def _check_policies(scales: str, head_scales: str, head_range: str, head_weight_bits: int = 8) -> None:
    """Raise unless every scale/range policy names a known one."""
    if (why := head_weight_bits_error(head_weight_bits)) is not None:
        raise ExportError(f"head_weight_bits {why}")
    if scales not in SCALE_POLICIES:
        raise ExportError(f"scales must be one of {SCALE_POLICIES}, got {scales!r}")
    if head_scales not in HEAD_POLICIES or head_range not in HEAD_POLICIES:
        raise ExportError(f"head_scales and head_range must be one of {HEAD_POLICIES}")


@dataclass
class _OpRequantizer:
    """Requantizes weighted ops into `patch`, appending one TensorReport per op to `result`."""

    gq: TfliteGraph
    patch: _Patcher
    result: Requantized
    num_labels: int
    base_num_labels: int
    head_logit_range: tuple[float, float] | None
    scales: str
    head_scales: str
    head_range: str
    head_weight_bits: int = 8

    def op(self, oq: OpInfo, w_base: np.ndarray, b_base: np.ndarray, w_new: np.ndarray, b_new: np.ndarray, is_head: bool) -> None:
        """Patch one op's weights, bias and scales; an untouched body op keeps the base's bytes."""
        wq_t, bq_t = self.gq.tensors[oq.inputs[1]], self.gq.tensors[oq.inputs[2]]
        axis = wq_t.quantized_dimension
        s_in = float(self.gq.tensors[oq.inputs[0]].scales[0])
        q_base_w, q_base_b = self.gq.array(wq_t), self.gq.array(bq_t)
        s_base = wq_t.scales.copy()  # float32, what the device multiplies by
        touched = not (_bitwise_equal(w_new, w_base) and _bitwise_equal(b_new, b_base))
        rep = TensorReport(oq.index, oq.opcode, "head" if is_head else "body", touched, self.head_scales if is_head else self.scales, len(s_base))
        self.result.reports.append(rep)
        if not is_head and not touched:
            return

        if is_head:
            s, refit = self.head_weight_scales(oq, w_new, q_base_w, s_base, axis)
        else:
            s, refit = _choose_scales(w_new, q_base_w, s_base, axis, self.scales)
        q_w, clamped = quantize_weights(w_new, s, axis)
        q_b = quantize_bias(b_new, s_in, s).astype(np.int64)
        if is_head:
            clamped = self.patch_head_output(oq, q_w, q_b, q_base_w, q_base_b, clamped, axis, len(s))

        self.patch.data(wq_t, q_w)
        self.patch.scales(wq_t, s.astype(np.float32))
        self.patch.data(bq_t, q_b.astype(np.int32))
        self.patch.scales(bq_t, bias_scales(s_in, s).astype(np.float32))

        rep.channels_refit = int(np.sum(refit))
        rep.clamped_weights = int(np.sum(clamped))
        rep.changed_weight_bytes = int(np.sum(q_w != q_base_w))
        rep.changed_bias_values = int(np.sum(q_b.astype(np.int32) != q_base_b))
        rep.changed_scales = int(np.sum(s.astype(np.float32) != wq_t.scales))

    def head_weight_scales(self, oq: OpInfo, w_new: np.ndarray, q_base_w: np.ndarray, s_base: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """The head's per-row scales and 'refit' flags under `head_scales`."""
        if oq.opcode != "FULLY_CONNECTED" or axis != 0:
            raise ExportError(f"op {oq.index}: the head must be a per-row quantized FULLY_CONNECTED, got {oq.opcode} (axis {axis})")
        s, refit = _choose_scales(w_new, q_base_w, s_base, axis, "refit", head_qmax(self.head_weight_bits))
        if self.head_scales == "frozen":
            # Base scales where the base has a real row; rows it padded have no scale to keep.
            keep = np.arange(len(s)) < self.base_num_labels
            s = np.where(keep, s_base, s)
            refit = refit & ~keep
        # Padding rows keep the base's bytes (weights and scales): only their bias changes.
        real = np.arange(len(s)) < self.num_labels
        return np.where(real, s, s_base), refit & real

    def head_output_qparams(self, out_t: TensorInfo, rows: int) -> tuple[float, int]:
        """The head output's (scale, zero point) under `head_range`."""
        if self.head_range != "refit":
            return out_t.scales[0], int(out_t.zero_points[0])
        if self.head_logit_range is None:
            raise ExportError("head_range='refit' needs the language's calibration logit range")
        lo, hi = self.head_logit_range
        if self.num_labels < rows:
            lo = min(lo, hi - PAD_LOGIT_GAP)
        return activation_qparams(lo, hi)

    def patch_head_output(
        self, oq: OpInfo, q_w: np.ndarray, q_b: np.ndarray, q_base_w: np.ndarray, q_base_b: np.ndarray, clamped: np.ndarray, axis: int, rows: int
    ) -> np.ndarray:
        """Patch the head's output range and restore its padding rows in place; returns the clamp counts of real rows."""
        out_t = self.gq.tensors[oq.outputs[0]]
        out_scale, out_zp = self.head_output_qparams(out_t, rows)
        # Slots past num_labels keep the base's bytes (weights, scales and bias): the device and
        # the host evaluator take the arg-max over the language's own labels only
        # (evaluate.argmax_first), so they are never read and cost the blob nothing.
        pad = np.arange(rows) >= self.num_labels
        _per_channel(q_w, axis)[pad] = _per_channel(q_base_w, axis)[pad]
        q_b[pad] = q_base_b[pad]
        self.patch.scales(out_t, np.array([out_scale], np.float32))
        self.patch.zero_points(out_t, np.array([out_zp], np.int64))
        self.result.head_output = (float(out_scale), int(out_zp))
        return np.where(pad, 0, clamped)


def requantize_language(
    base_q: bytes,
    base_f: bytes,
    lang_f: bytes,
    *,
    num_labels: int,
    base_num_labels: int,
    head_logit_range: tuple[float, float] | None,
    scales: str = "frozen",
    head_scales: str = "refit",
    head_range: str = "refit",
    head_weight_bits: int = 8,
) -> Requantized:
    """The language's int8 flatbuffer, built by patching the base's bytes (see module doc)."""
    _check_policies(scales, head_scales, head_range, head_weight_bits)
    gq, gbf, glf = TfliteGraph(base_q, "base int8"), TfliteGraph(base_f, "base float"), TfliteGraph(lang_f, "language float")
    if gbf.structure() != glf.structure():
        raise ExportError("the language model's float graph differs in structure from the base's: not the same architecture")
    pairs = weighted_op_pairs(gq, gbf)
    lang_pairs = {oq.index: of for oq, of in weighted_op_pairs(gq, glf)}
    head_idx = head_op_index(gq)
    patch = _Patcher(base_q)
    result = Requantized(b"")
    requantizer = _OpRequantizer(gq, patch, result, num_labels, base_num_labels, head_logit_range, scales, head_scales, head_range,
                                 head_weight_bits)
    for oq, obf in pairs:
        olf = lang_pairs[oq.index]
        w_base, b_base = gbf.array(obf.inputs[1]), gbf.array(obf.inputs[2])
        w_new, b_new = glf.array(olf.inputs[1]), glf.array(olf.inputs[2])
        requantizer.op(oq, w_base, b_base, w_new, b_new, is_head=oq.index == head_idx)
    result.data = bytes(patch.out)
    return result


def _pad_bias(q_rows: np.ndarray, s_in: float, s_rows: np.ndarray, out_scale: float, out_zp: int) -> np.ndarray:
    """int32 bias that pins a padding row's output to -128 whatever the input.

    The accumulator is bias + sum((q_in - zp_in) * q_w), and |q_in - zp_in| <= 255, so the bias
    sits PAD_MARGIN_STEPS output steps below the minimum plus the row's worst-case sum.
    """
    if len(s_rows) == 0:
        return np.zeros(0, np.int64)
    pad_logit = (INT8_MIN - PAD_MARGIN_STEPS - out_zp) * out_scale
    base = quantize_bias(np.full(len(s_rows), pad_logit, np.float32), s_in, s_rows).astype(np.int64)
    worst = 255 * np.abs(q_rows.astype(np.int64)).reshape(len(s_rows), -1).sum(axis=1)
    return np.clip(base - worst, INT32_MIN + 1, 0)


def pad_head_rows(base_q: bytes, num_labels: int) -> bytes:
    """The base's own head padding: rows >= num_labels get weight 0, a sane scale and an output pinned to -128."""
    gq = TfliteGraph(base_q, "base int8")
    oq = gq.ops[head_op_index(gq)]
    wq_t, bq_t = gq.tensors[oq.inputs[1]], gq.tensors[oq.inputs[2]]
    out_t = gq.tensors[oq.outputs[0]]
    rows = wq_t.shape[wq_t.quantized_dimension]
    if num_labels >= rows:
        return bytes(base_q)
    s_in = float(gq.tensors[oq.inputs[0]].scales[0])
    s = wq_t.scales.copy()
    s_pad = np.float32(np.max(s[:num_labels]))
    scales_new = np.concatenate([s[:num_labels], np.full(rows - num_labels, s_pad)])
    q_w = gq.array(wq_t)
    _per_channel(q_w, wq_t.quantized_dimension)[num_labels:] = 0
    q_b = gq.array(bq_t).astype(np.int64)
    out_scale, out_zp = float(out_t.scales[0]), int(out_t.zero_points[0])
    rmin, rmax = (INT8_MIN - out_zp) * out_scale, (127 - out_zp) * out_scale
    if rmin > rmax - PAD_LOGIT_GAP:
        out_scale, out_zp = activation_qparams(rmax - PAD_LOGIT_GAP, rmax)
    q_b[num_labels:] = _pad_bias(_per_channel(q_w, wq_t.quantized_dimension)[num_labels:], s_in, np.full(rows - num_labels, s_pad), float(out_scale), out_zp)
    patch = _Patcher(base_q)
    patch.scales(out_t, np.array([out_scale], np.float32))
    patch.zero_points(out_t, np.array([out_zp], np.int64))
    patch.data(wq_t, q_w)
    patch.scales(wq_t, scales_new.astype(np.float32))
    patch.data(bq_t, q_b.astype(np.int32))
    bs = bq_t.scales.copy()
    bs[num_labels:] = bias_scales(s_in, np.full(rows - num_labels, s_pad))
    patch.scales(bq_t, bs)
    return bytes(patch.out)


__all__ = [
    "HEAD_POLICIES",
    "SCALE_POLICIES",
    "Requantized",
    "TensorReport",
    "head_op_index",
    "head_qmax",
    "pad_head_rows",
    "requantize_language",
    "verify_requantizer",
    "weighted_op_pairs",
    "WEIGHT_QMAX",
]
