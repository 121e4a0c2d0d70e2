"""Patch coding of blob format v2: per-tensor records, range-coded (docs/BLOB_FORMAT.md, "Patch stream").

One coder, shared by the blob container (`polykws.export.blob`) and by the byte cost model SWR
budgets against (`polykws.training.deltas.blob_bytes`), so an estimate and a shipped blob are
the same arithmetic. numpy and the standard library only.

A language model differs from the base in a few tensors' data and quantization vectors. Each
such tensor region becomes one record: its first changed element, an element width (1 for int8
bytes, 4 for int32 biases, float32 scales and int64 zero points taken as 32-bit words), the
span to its last changed element, the positions of the changed elements (a bitmap or gaps,
whichever codes shorter) and each element's difference from the base, modulo 2^(8 x width).
Everything is coded with an LZMA-style adaptive binary range coder (11-bit probabilities,
shift-5 adaptation); numbers are Elias-gamma binarized with a context per unary position and
for the two bits below the leading one.

The coder is split by layer: `polykws.core.rangecoder` (the binary range coder and number
binarization), `polykws.core.patchrecords` (context layout, record coding and application) and
`polykws.core.tfliteregions` (where a .tflite's typed vectors lie). This module plans records
and prices them, and re-exports the other modules' public names: users import the coder from here.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from polykws.core.patchrecords import (
    C4_DERIVED,
    CONTEXTS_BY_WIDTH,
    CTX_HDR,
    CTX_WIDTH,
    MAX_MODEL_BYTES,
    MODE_BITMAP,
    MODE_GAPS,
    NUM_CONTEXTS,
    Record,
    VALUE_DELTA,
    VALUE_LITERAL,
    WIDTHS,
    apply_records,
    choose_mode,
    choose_value_mode,
    decode_records,
    encode_records,
    encode_value,
    float32_product_bits,
    record_stream_bytes,
)
from polykws.core.rangecoder import (
    MASK32,
    PROB_INIT,
    PatchCodeError,
    RangeDecoder,
    RangeEncoder,
    gamma_decode,
    gamma_encode,
)
from polykws.core.tfliteregions import tflite_regions

__all__ = [
    "C4_DERIVED",
    "CONTEXTS_BY_WIDTH",
    "CTX_HDR",
    "CTX_WIDTH",
    "MAX_MODEL_BYTES",
    "MODE_BITMAP",
    "MODE_GAPS",
    "NUM_CONTEXTS",
    "PROB_INIT",
    "PatchCodeError",
    "RangeDecoder",
    "RangeEncoder",
    "Record",
    "VALUE_DELTA",
    "VALUE_LITERAL",
    "WIDTHS",
    "apply_records",
    "choose_mode",
    "choose_value_mode",
    "decode_records",
    "encode_records",
    "encode_value",
    "entropy_bound_bytes",
    "estimate_record_bytes",
    "float32_product_bits",
    "gamma_decode",
    "gamma_encode",
    "plan_records",
    "record_cost",
    "record_stream_bytes",
    "stream_bytes",
    "tflite_regions",
]

# --------------------------------------------------------------------------------------------
# planning: which regions, which elements


def plan_records(base: bytes, target: bytes, regions: Sequence[tuple[int, int, int]] = ()) -> list[Record]:
    """One record per region holding a change; bytes outside every region are width-1 regions.

    `regions`: (start, end, width) of typed vectors (tflite_regions gives them for a .tflite).
    Only the encoder's efficiency depends on them; any base/target pair of equal length codes.
    """
    if len(base) != len(target):
        raise PatchCodeError("size_mismatch", f"base is {len(base)} bytes, target {len(target)}")
    a = np.frombuffer(base, np.uint8)
    b = np.frombuffer(target, np.uint8)
    diff = np.flatnonzero(a != b)
    if len(diff) == 0:
        return []
    cover = _cover(len(base), regions)
    records = []
    for start, end, width in cover:
        lo, hi = np.searchsorted(diff, [start, end])
        if lo == hi:
            continue
        if width == 1:
            idx = diff[lo:hi] - start
            first = int(idx[0])
            pos = idx - first
            d = (b[start + idx].astype(np.int64) - a[start + idx].astype(np.int64)) & 0xFF
            d = np.where(d >= 128, d - 256, d)
            lit = b[start + idx].astype(np.int64)
            lit = np.where(lit >= 128, lit - 256, lit)
            records.append(Record(start + first, 1, int(pos[-1]) + 1, pos.astype(np.int64), d.astype(np.int64), lit))
        else:
            ea = np.frombuffer(base, "<u4", count=(end - start) // 4, offset=start).astype(np.int64)
            eb = np.frombuffer(target, "<u4", count=(end - start) // 4, offset=start).astype(np.int64)
            idx = np.flatnonzero(ea != eb)
            first = int(idx[0])
            d = (eb[idx] - ea[idx]) & MASK32
            d = np.where(d >= 1 << 31, d - (1 << 32), d)
            pos = idx - first
            lit = eb[idx]
            lit = np.where(lit >= 1 << 31, lit - (1 << 32), lit)
            rec = Record(start + 4 * first, 4, int(pos[-1]) + 1, pos.astype(np.int64), d.astype(np.int64), lit.astype(np.int64))
            records.append(_derive(rec, (start, end), target, [c for c in cover if c[2] == 4 and c[1] <= rec.start]) or rec)
    return records


def _derive(rec: Record, region: tuple[int, int], target: bytes, earlier: list[tuple[int, int, int]]) -> Record | None:
    """`rec` as float32 products of an earlier, equally long word region's target values and one
    multiplier, when that predicts at least 3/4 of its changed elements exactly (a bias scale is
    the input scale times the weight scale: bias_scales in export/quantize.py)."""
    k = len(rec.positions)
    if k < 4:
        return None
    r_start, r_end = region
    first = (rec.start - r_start) // 4
    idx = first + rec.positions
    t_rec = np.frombuffer(target, "<u4", count=(r_end - r_start) // 4, offset=r_start)[idx]
    best, best_hits = None, int(0.75 * k) - 1
    for q_start, q_end, _ in earlier:
        if q_end - q_start != r_end - r_start or q_end > rec.start:
            continue
        q = np.frombuffer(target, "<u4", count=(q_end - q_start) // 4, offset=q_start)[idx]
        qf, tf = q.view(np.float32), t_rec.view(np.float32)
        ok = np.isfinite(qf) & np.isfinite(tf) & (qf != 0)
        if not ok.any():
            continue
        with np.errstate(all="ignore"):
            ratio = (tf[ok] / qf[ok]).astype(np.float32)
        for c in {int(x) for x in ratio[:3].view(np.uint32)} | {int(np.median(ratio).astype(np.float32).view(np.uint32))}:
            for cand in (c - 1, c, c + 1):
                cand &= MASK32
                hits = int(np.sum(float32_product_bits(cand, q) == t_rec))
                if hits > best_hits:
                    best_hits = hits
                    ref_start = q_start + 4 * first
                    resid = (t_rec.astype(np.int64) - float32_product_bits(cand, q).astype(np.int64)) & MASK32
                    resid = np.where(resid >= 1 << 31, resid - (1 << 32), resid)
                    best = Record(rec.start, 4, rec.span, rec.positions, None, resid.astype(np.int64), True,
                                  (rec.start - ref_start) // 4, cand)
    return best


def _cover(size: int, regions: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Sorted, non-overlapping regions covering [0, size): the typed ones, width-1 fill between."""
    typed = sorted({(int(s), int(e), int(w)) for s, e, w in regions if 0 <= s < e <= size and w in WIDTHS and (e - s) % w == 0})
    out: list[tuple[int, int, int]] = []
    pos = 0
    for s, e, w in typed:
        if s < pos:  # overlaps one already taken (shared buffers): skip it
            continue
        if s > pos:
            out.append((pos, s, 1))
        out.append((s, e, w))
        pos = e
    if pos < size:
        out.append((pos, size, 1))
    return out



# --------------------------------------------------------------------------------------------
# costs


def stream_bytes(base: bytes, target: bytes, regions: Sequence[tuple[int, int, int]] | None = None) -> int:
    """Exact bytes of the patch stream that turns `base` into `target`."""
    regs = tflite_regions(base) if regions is None else regions
    return len(encode_records(plan_records(bytes(base), bytes(target), regs)))


def estimate_record_bytes(span: int, changed: int, width: int, value_bits: float, distinct: int | None = None,
                          bitmap_bits: float | None = None) -> float:
    """Estimated bytes of one record from statistics: `changed` of `span` elements change, each
    value carrying `value_bits` (its entropy in the coder's alphabet), `distinct` values seen.

    Positions cost the span's binary entropy (what the adaptive bitmap or gap coder approaches),
    or `bitmap_bits` when the caller measured the bitmap's entropy given the previous bit (the
    bitmap coder's context);
    adaptive models pay a learning cost per distinct value; a record header costs a few bytes.
    """
    if changed <= 0:
        return 0.0
    span = max(span, changed)
    p = changed / span
    position_bits = 0.0 if p >= 1.0 else span * (-(p * math.log2(p)) - (1 - p) * math.log2(1 - p))
    if bitmap_bits is not None and p >= 0.25:
        position_bits = min(position_bits, bitmap_bits)
    # gap coding (sparse records) pays about 0.3 bit a gap over the entropy; an adaptive bitmap
    # (11-bit probabilities moving by 1/32) about 0.05 bit an element
    position_bits += (0.3 * changed if p < 0.25 else 0.05 * span * min(1.0, 4 * (1 - p))) + 2 * math.log2(span + 1)
    # an adaptive model pays for learning its distribution: a few bits per tree level per
    # distinct value's worth of nodes (int8 trees); word magnitudes learn a handful of classes
    d = distinct if distinct is not None else min(changed, 24)
    learning_bits = 2.0 * math.sqrt(d) * math.log2(changed + 1) if width == 1 else 2.0 * d
    header_bits = 48.0
    return (position_bits + changed * value_bits + learning_bits + header_bits) / 8.0


def record_cost(record: Record) -> int:
    """Bytes one record adds to a stream coded from fresh contexts (what it costs on its own)."""
    return len(encode_records([record])) - len(encode_records([]))


def entropy_bound_bytes(base: bytes, target: bytes) -> dict[str, float]:
    """A size floor estimate for the change: changed bytes, and an order-0 entropy estimate.

    Values: each changed byte costs the empirical order-0 entropy of the changed bytes' values,
    taken as differences from the base or as the target bytes themselves, whichever is lower.
    Positions: the entropy of the file's changed/unchanged bitmap given the previous byte's bit
    (runs of changes cost little). What any byte-oriented patch has to carry, whatever its coder,
    short of modelling the values' context; the v2 coder's contexts can beat it slightly.
    """
    a = np.frombuffer(bytes(base), np.uint8)
    b = np.frombuffer(bytes(target), np.uint8)
    changed = a != b
    k = int(changed.sum())
    if k == 0:
        return {"changed_bytes": 0, "entropy_bytes": 0.0}

    def h0(v: np.ndarray) -> float:
        counts = np.bincount(v, minlength=256)
        p = counts[counts > 0] / len(v)
        return float(-(p * np.log2(p)).sum() * len(v))

    idx = np.flatnonzero(changed)
    value_bits = min(h0(((b[idx].astype(np.int64) - a[idx]) & 0xFF)), h0(b[idx].astype(np.int64)))
    prev = np.concatenate(([False], changed[:-1]))
    position_bits = 0.0
    for c in (False, True):
        sel = changed[prev == c]
        if len(sel):
            q = float(sel.mean())
            if 0.0 < q < 1.0:
                position_bits += len(sel) * (-(q * math.log2(q)) - (1 - q) * math.log2(1 - q))
    return {"changed_bytes": k, "entropy_bytes": (value_bits + position_bits) / 8.0}
