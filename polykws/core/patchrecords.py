"""Records of the patch stream: the context layout, the record dataclass, coding a record list
to bytes and back, and applying records to a base model (docs/BLOB_FORMAT.md, "Patch stream").

Each record codes its first changed element, an element width, the span to its last changed
element, the positions of the changed elements (a bitmap or gaps, whichever the model prices
lower) and each element's difference from the base or its literal value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from polykws.core.rangecoder import (
    GAMMA_MODEL_SIZE,
    MASK32,
    PROB_INIT,
    PatchCodeError,
    RangeDecoder,
    RangeEncoder,
    gamma_decode,
    gamma_encode,
    gamma_price,
    price_bit,
)

WIDTHS = (1, 4)  # element width coded by one bit: 0 -> 1 byte, 1 -> 4 bytes
MAX_MODEL_BYTES = 0x7FFFFFFF  # keeps every coded number below 2^32

# Context layout: indices into one flat probability array. polykws.firmware.blobformatgen writes it
# into firmware/lib/blob_format.h for the C decoder.
CTX_HDR = 0  # gamma model: record count, skips, spans
CTX_WIDTH = CTX_HDR + GAMMA_MODEL_SIZE  # 1 probability
TREE_SIZE = 256  # an 8-bit binary tree: nodes 1..255
# Each class block starts with a mode bit, a value-mode bit and two bitmap contexts (by the previous bit).
CLS_MODE, CLS_VMODE, CLS_BITMAP = 0, 1, 2
# width-1 (int8 byte) class: values are 8-bit symbols coded with a binary tree per value mode
C1 = CTX_WIDTH + 1
C1_MODE, C1_VMODE, C1_BITMAP = C1 + CLS_MODE, C1 + CLS_VMODE, C1 + CLS_BITMAP
C1_COUNT = C1 + 4
C1_GAP = C1_COUNT + GAMMA_MODEL_SIZE
C1_TREE_DELTA = C1_GAP + GAMMA_MODEL_SIZE
C1_TREE_LITERAL = C1_TREE_DELTA + TREE_SIZE
# width-4 (32-bit word) class: values are Elias-gamma magnitudes and a sign bit
C4 = C1_TREE_LITERAL + TREE_SIZE
C4_MODE, C4_VMODE, C4_BITMAP = C4 + CLS_MODE, C4 + CLS_VMODE, C4 + CLS_BITMAP
C4_SIGN_DELTA, C4_SIGN_LITERAL = C4 + 4, C4 + 5
C4_COUNT = C4 + 6
C4_GAP = C4_COUNT + GAMMA_MODEL_SIZE
C4_MAG_DELTA = C4_GAP + GAMMA_MODEL_SIZE
C4_MAG_LITERAL = C4_MAG_DELTA + GAMMA_MODEL_SIZE
C4_DERIVED = C4_MAG_LITERAL + GAMMA_MODEL_SIZE  # word records: predicted from an earlier region?
NUM_CONTEXTS = C4_DERIVED + 1
CANONICAL_NAN = 0x7FC00000  # every NaN a product yields is taken as this one (platforms differ)

# The context slots each element width codes with: mode, value mode, bitmap, count, gap.
CONTEXTS_BY_WIDTH = {1: (C1_MODE, C1_VMODE, C1_BITMAP, C1_COUNT, C1_GAP), 4: (C4_MODE, C4_VMODE, C4_BITMAP, C4_COUNT, C4_GAP)}

MODE_GAPS, MODE_BITMAP = 0, 1
VALUE_DELTA, VALUE_LITERAL = 0, 1


@dataclass(frozen=True)
class Record:
    """Changed elements of one region: element i sits at start + width * i."""

    start: int
    width: int
    span: int  # elements from the first changed to the last changed, inclusive
    positions: np.ndarray  # int64, strictly increasing, in [0, span)
    deltas: np.ndarray | None  # int64, target - base modulo 2^(8 width), as a signed value, never 0
    literals: np.ndarray | None = None  # int64, the target elements as signed values
    literal: bool | None = None  # which of the two a decoded record carries; None for a plan
    # Derived word records: element p = float32(multiplier * element p of the region starting
    # ref_back words before `start`) + value, as 32-bit patterns (values in `literals`, may be 0).
    ref_back: int = 0
    multiplier: int = 0  # float32 bits

    @property
    def end(self) -> int:
        return self.start + self.width * self.span



def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _unzigzag(z: int) -> int:
    return z >> 1 if z % 2 == 0 else -((z + 1) >> 1)


def _tree_symbol(width_value: int, literal: int) -> int:
    """int8 value -> 8-bit symbol: zigzag; a delta is never 0, so it is shifted down by one."""
    return _zigzag(width_value) - (0 if literal else 1)


def _positions_price(probs: list[int], width: int, mode: int, span: int, positions: np.ndarray) -> float:
    _, _, bitmap, count, gap = CONTEXTS_BY_WIDTH[width]
    cost = 0.0
    if mode == MODE_GAPS:
        cost += gamma_price(probs, count, len(positions))
        prev = -1
        for p in positions.tolist():
            cost += gamma_price(probs, gap, p - prev)
            prev = p
    else:
        changed = np.zeros(span, np.int8)
        changed[positions] = 1
        prev = 0
        for b in changed.tolist():
            cost += price_bit(probs, bitmap + prev, b)
            prev = b
    return cost


def _values_price(probs: list[int], width: int, literal: int, values: list[int]) -> float:
    cost = 0.0
    if width == 1:
        tree = C1_TREE_LITERAL if literal else C1_TREE_DELTA
        for v in values:
            sym = _tree_symbol(v, literal)
            node = 1
            for i in range(7, -1, -1):
                b = (sym >> i) & 1
                cost += price_bit(probs, tree + node, b)
                node = 2 * node + b
    else:
        mag, sign = (C4_MAG_LITERAL, C4_SIGN_LITERAL) if literal else (C4_MAG_DELTA, C4_SIGN_DELTA)
        for v in values:
            cost += gamma_price(probs, mag, abs(v) + literal)
            if v:
                cost += price_bit(probs, sign, 1 if v < 0 else 0)
    return cost


def choose_mode(probs: Sequence[int], record: Record) -> int:
    """The cheaper position coding for `record` given the coder's current contexts (ties: gaps)."""
    if len(record.positions) * 32 < record.span:
        return MODE_GAPS  # sparser than 1 in 32: a bitmap cannot win, skip pricing it
    gaps = _positions_price(list(probs), record.width, MODE_GAPS, record.span, record.positions)
    bitmap = _positions_price(list(probs), record.width, MODE_BITMAP, record.span, record.positions)
    return MODE_BITMAP if bitmap < gaps else MODE_GAPS


def choose_value_mode(probs: Sequence[int], record: Record) -> int:
    """Differences from the base, or the target values themselves (a re-trained head), whichever is cheaper."""
    if record.literals is None:
        return VALUE_DELTA
    delta = _values_price(list(probs), record.width, VALUE_DELTA, record.deltas.tolist())
    literal = _values_price(list(probs), record.width, VALUE_LITERAL, record.literals.tolist())
    return VALUE_LITERAL if literal < delta else VALUE_DELTA


def encode_value(enc: RangeEncoder, probs: list[int], width: int, literal: int, v: int) -> None:
    """One element value: a delta from the base element or a literal, as the decoders read it."""
    if width == 1:
        tree = C1_TREE_LITERAL if literal else C1_TREE_DELTA
        sym = _tree_symbol(v, literal)
        node = 1
        for i in range(7, -1, -1):
            b = (sym >> i) & 1
            enc.bit(probs, tree + node, b)
            node = 2 * node + b
    else:
        mag, sign = (C4_MAG_LITERAL, C4_SIGN_LITERAL) if literal else (C4_MAG_DELTA, C4_SIGN_DELTA)
        gamma_encode(enc, probs, mag, abs(v) + literal)
        if v:
            enc.bit(probs, sign, 1 if v < 0 else 0)


def _decode_value(dec: RangeDecoder, probs: list[int], width: int, literal: int) -> int:
    if width == 1:
        tree = C1_TREE_LITERAL if literal else C1_TREE_DELTA
        node = 1
        for _ in range(8):
            node = 2 * node + dec.bit(probs, tree + node)
        return _unzigzag(node - 256 + (0 if literal else 1))
    mag, sign = (C4_MAG_LITERAL, C4_SIGN_LITERAL) if literal else (C4_MAG_DELTA, C4_SIGN_DELTA)
    m = gamma_decode(dec, probs, mag) - literal
    if m == 0:
        return 0
    return -m if dec.bit(probs, sign) else m


def encode_records(records: Sequence[Record], boundaries: list[int] | None = None) -> bytes:
    """The range-coded patch stream of `records` (sorted, non-overlapping).

    `boundaries`, when given, receives the coder's output position (bytes emitted or pending)
    after each record.
    """
    enc = RangeEncoder()
    probs = [PROB_INIT] * NUM_CONTEXTS
    gamma_encode(enc, probs, CTX_HDR, len(records) + 1)
    prev_end = 0
    for r in records:
        if r.start < prev_end or r.span < 1 or len(r.positions) == 0:
            raise PatchCodeError("overlapping_patches", f"record at {r.start} is unsorted, overlapping or empty")
        gamma_encode(enc, probs, CTX_HDR, r.start - prev_end + 1)
        enc.bit(probs, CTX_WIDTH, WIDTHS.index(r.width))
        gamma_encode(enc, probs, CTX_HDR, r.span)
        if r.width == 4:
            enc.bit(probs, C4_DERIVED, 1 if r.ref_back else 0)
            if r.ref_back:
                gamma_encode(enc, probs, CTX_HDR, r.ref_back)
                for i in range(31, -1, -1):
                    enc.direct((r.multiplier >> i) & 1)
        mode_ctx, vmode_ctx, bitmap, count, gap = CONTEXTS_BY_WIDTH[r.width]
        mode = choose_mode(probs, r)
        enc.bit(probs, mode_ctx, mode)
        if r.ref_back:
            literal = 1  # residuals from the prediction, coded with the literal word model
        else:
            literal = choose_value_mode(probs, r) if r.literal is None else int(r.literal)
            enc.bit(probs, vmode_ctx, literal)
        values = (r.literals if literal else r.deltas).tolist()
        if mode == MODE_GAPS:
            gamma_encode(enc, probs, count, len(values))
            prev = -1
            for p, v in zip(r.positions.tolist(), values):
                gamma_encode(enc, probs, gap, p - prev)
                encode_value(enc, probs, r.width, literal, v)
                prev = p
        else:
            changed = np.zeros(r.span, np.int8)
            changed[r.positions] = 1
            it = iter(values)
            prev = 0
            for b in changed.tolist():
                enc.bit(probs, bitmap + prev, b)
                if b:
                    encode_value(enc, probs, r.width, literal, next(it))
                prev = b
        prev_end = r.end
        if boundaries is not None:
            boundaries.append(len(enc.out) + enc.cache_size - 1)
    return enc.finish()


def record_stream_bytes(records: Sequence[Record]) -> list[float]:
    """Stream bytes each record takes where it stands in the stream (boundary differences)."""
    bounds: list[int] = []
    total = len(encode_records(records, bounds))
    if not records:
        return []
    edges = [0] + bounds
    sizes = [float(b - a) for a, b in zip(edges[:-1], edges[1:])]
    sizes[-1] += total - bounds[-1]  # the flush goes to the last record
    return sizes


def decode_records(stream: bytes, model_size: int) -> list[Record]:
    """Parse a patch stream (rules of docs/BLOB_FORMAT.md, "Patch stream", in order)."""
    records: list[Record] = []
    for_each_record(stream, model_size, lambda r: records.append(r))
    return records


def for_each_record(stream: bytes, model_size: int, sink) -> None:
    """Decode `stream` record by record, handing each to `sink` as soon as it is complete."""
    dec = RangeDecoder(bytes(stream))
    probs = [PROB_INIT] * NUM_CONTEXTS
    count = gamma_decode(dec, probs, CTX_HDR) - 1
    prev_end = 0
    for i in range(count):
        start = prev_end + gamma_decode(dec, probs, CTX_HDR) - 1
        width = WIDTHS[dec.bit(probs, CTX_WIDTH)]
        span = gamma_decode(dec, probs, CTX_HDR)
        end = start + width * span
        if end > model_size:
            raise PatchCodeError("out_of_range", f"record {i} [{start}, {end}) exceeds the model's {model_size} bytes")
        ref_back = multiplier = 0
        if width == 4 and dec.bit(probs, C4_DERIVED):
            ref_back = gamma_decode(dec, probs, CTX_HDR)
            if 4 * ref_back > start or start - 4 * ref_back + 4 * span > start:
                raise PatchCodeError("out_of_range", f"record {i}: its reference {ref_back} words back is not wholly before it")
            for _ in range(32):
                multiplier = (multiplier << 1) | dec.direct()
        mode_ctx, vmode_ctx, bitmap, count_ctx, gap = CONTEXTS_BY_WIDTH[width]
        mode = dec.bit(probs, mode_ctx)
        literal = 1 if ref_back else dec.bit(probs, vmode_ctx)
        positions: list[int] = []
        values: list[int] = []
        if mode == MODE_GAPS:
            k = gamma_decode(dec, probs, count_ctx)
            p = -1
            for _ in range(k):
                p += gamma_decode(dec, probs, gap)
                if p >= span:
                    raise PatchCodeError("out_of_range", f"record {i}: element {p} is past its span of {span}")
                positions.append(p)
                values.append(_decode_value(dec, probs, width, literal))
        else:
            prev = 0
            for p in range(span):
                prev = dec.bit(probs, bitmap + prev)
                if prev:
                    positions.append(p)
                    values.append(_decode_value(dec, probs, width, literal))
        arr = np.asarray(values, np.int64)
        pos = np.asarray(positions, np.int64)
        sink(Record(start, width, span, pos, None if literal else arr, arr if literal else None, bool(literal), ref_back, multiplier))
        prev_end = end
    if dec.pos != len(dec.data):
        raise PatchCodeError("bad_size", f"{len(dec.data) - dec.pos} bytes after the last record of the patch stream")


def float32_product_bits(multiplier: int, words: np.ndarray) -> np.ndarray:
    """IEEE float32 products multiplier x words (all as bit patterns), every NaN made CANONICAL_NAN."""
    m = np.array([multiplier], np.uint32).view(np.float32)[0]
    with np.errstate(all="ignore"):
        prod = (m * np.asarray(words, np.uint32).view(np.float32)).astype(np.float32)
    bits = prod.view(np.uint32).copy()
    bits[np.isnan(prod)] = CANONICAL_NAN
    return bits


def apply_records(out: bytearray, records: Sequence[Record]) -> None:
    """Add each record's differences into `out` in place (modulo 2^(8 width), little-endian)."""
    for r in records:
        if r.end > len(out):
            raise PatchCodeError("out_of_range", f"record [{r.start}, {r.end}) exceeds the model's {len(out)} bytes")
        mask = 0xFF if r.width == 1 else MASK32
        view = np.frombuffer(bytes(out[r.start : r.end]), np.uint8 if r.width == 1 else "<u4").astype(np.int64)
        if r.ref_back:
            ref_start = r.start - 4 * r.ref_back
            ref = np.frombuffer(bytes(out[ref_start : ref_start + 4 * r.span]), "<u4")
            pred = float32_product_bits(r.multiplier, ref).astype(np.int64)
            view[r.positions] = (pred[r.positions] + r.literals) & mask
        elif r.literal:
            view[r.positions] = r.literals & mask
        else:
            view[r.positions] = (view[r.positions] + r.deltas) & mask
        out[r.start : r.end] = view.astype(np.uint8 if r.width == 1 else "<u4").tobytes()

