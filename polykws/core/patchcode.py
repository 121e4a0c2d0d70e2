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
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from polykws.core.errors import PolykwsError

PROB_BITS = 11
PROB_ONE = 1 << PROB_BITS
PROB_INIT = PROB_ONE // 2
MOVE_BITS = 5
TOP = 1 << 24
MASK32 = 0xFFFFFFFF

GAMMA_MAX_BITS = 32  # a coded number is 1 .. 2^32-1
GAMMA_MANT_CTX = 2  # bits below the leading one that get their own context
GAMMA_MODEL_SIZE = GAMMA_MAX_BITS + (GAMMA_MAX_BITS + 1) * GAMMA_MANT_CTX  # 98 probabilities

WIDTHS = (1, 4)  # element width coded by one bit: 0 -> 1 byte, 1 -> 4 bytes
MAX_MODEL_BYTES = 0x7FFFFFFF  # keeps every coded number below 2^32

# Context layout: indices into one flat probability array (firmware/blob.c uses the same).
CTX_HDR = 0  # gamma model: record count, skips, spans
CTX_WIDTH = CTX_HDR + GAMMA_MODEL_SIZE  # 1 probability
TREE_SIZE = 256  # an 8-bit binary tree: nodes 1..255
# width-1 (int8 byte) class: values are 8-bit symbols coded with a binary tree per value mode
C1 = CTX_WIDTH + 1
C1_MODE, C1_VMODE, C1_BITMAP = C1, C1 + 1, C1 + 2  # bitmap: 2 contexts, by the previous bit
C1_COUNT = C1 + 4
C1_GAP = C1_COUNT + GAMMA_MODEL_SIZE
C1_TREE_DELTA = C1_GAP + GAMMA_MODEL_SIZE
C1_TREE_LITERAL = C1_TREE_DELTA + TREE_SIZE
# width-4 (32-bit word) class: values are Elias-gamma magnitudes and a sign bit
C4 = C1_TREE_LITERAL + TREE_SIZE
C4_MODE, C4_VMODE, C4_BITMAP = C4, C4 + 1, C4 + 2
C4_SIGN_DELTA, C4_SIGN_LITERAL = C4 + 4, C4 + 5
C4_COUNT = C4 + 6
C4_GAP = C4_COUNT + GAMMA_MODEL_SIZE
C4_MAG_DELTA = C4_GAP + GAMMA_MODEL_SIZE
C4_MAG_LITERAL = C4_MAG_DELTA + GAMMA_MODEL_SIZE
C4_DERIVED = C4_MAG_LITERAL + GAMMA_MODEL_SIZE  # word records: predicted from an earlier region?
NUM_CONTEXTS = C4_DERIVED + 1
CANONICAL_NAN = 0x7FC00000  # every NaN a product yields is taken as this one (platforms differ)

# per width: (mode, value mode, bitmap, count, gap) context bases
# The context slots each element width codes with: mode, value mode, bitmap, count, gap.
CONTEXTS_BY_WIDTH = {1: (C1_MODE, C1_VMODE, C1_BITMAP, C1_COUNT, C1_GAP), 4: (C4_MODE, C4_VMODE, C4_BITMAP, C4_COUNT, C4_GAP)}

MODE_GAPS, MODE_BITMAP = 0, 1
VALUE_DELTA, VALUE_LITERAL = 0, 1


class PatchCodeError(PolykwsError):
    """A patch stream is refused; `.code` is a docs/BLOB_FORMAT.md error name."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(f"{code}: {message}")


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


# --------------------------------------------------------------------------------------------
# range coder


def _price_table() -> list[float]:
    # bits to code a 0 with probability p (of PROB_ONE); a 1 costs price[PROB_ONE - p]
    return [0.0] + [-math.log2(p / PROB_ONE) for p in range(1, PROB_ONE + 1)]


_PRICE = _price_table()


class RangeEncoder:
    def __init__(self) -> None:
        self.low = 0
        self.range = MASK32
        self.cache = 0
        self.cache_size = 1
        self.out = bytearray()

    def _shift_low(self) -> None:
        low = self.low
        if (low & MASK32) < 0xFF000000 or low > MASK32:
            carry = low >> 32
            temp = self.cache
            while True:
                self.out.append((temp + carry) & 0xFF)
                temp = 0xFF
                self.cache_size -= 1
                if self.cache_size == 0:
                    break
            self.cache = (low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (low & 0x00FFFFFF) << 8

    def bit(self, probs: list[int], i: int, b: int) -> None:
        p = probs[i]
        bound = (self.range >> PROB_BITS) * p
        if b:
            self.low += bound
            self.range -= bound
            probs[i] = p - (p >> MOVE_BITS)
        else:
            self.range = bound
            probs[i] = p + ((PROB_ONE - p) >> MOVE_BITS)
        if self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self._shift_low()

    def direct(self, b: int) -> None:
        """A bit at fixed probability 1/2 (no context)."""
        half = (self.range >> PROB_BITS) * PROB_INIT
        if b:
            self.low += half
            self.range -= half
        else:
            self.range = half
        if self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self._shift_low()

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift_low()
        # The first byte out is always 0 (the coded value lies in [0, 1)): it is not stored.
        return bytes(self.out[1:])


class RangeDecoder:
    def __init__(self, data: bytes) -> None:
        if len(data) < 4:
            raise PatchCodeError("truncated", f"patch stream of {len(data)} bytes; it has at least 4")
        self.data = data
        self.code = int.from_bytes(data[:4], "big")
        self.pos = 4
        self.range = MASK32

    def _next(self) -> int:
        if self.pos >= len(self.data):
            raise PatchCodeError("truncated", "the patch stream ends inside a record")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def bit(self, probs: list[int], i: int) -> int:
        p = probs[i]
        bound = (self.range >> PROB_BITS) * p
        if self.code < bound:
            self.range = bound
            probs[i] = p + ((PROB_ONE - p) >> MOVE_BITS)
            b = 0
        else:
            self.code -= bound
            self.range -= bound
            probs[i] = p - (p >> MOVE_BITS)
            b = 1
        if self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self.code = ((self.code << 8) | self._next()) & MASK32
        return b

    def direct(self) -> int:
        half = (self.range >> PROB_BITS) * PROB_INIT
        if self.code < half:
            self.range = half
            b = 0
        else:
            self.code -= half
            self.range -= half
            b = 1
        if self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self.code = ((self.code << 8) | self._next()) & MASK32
        return b


# --------------------------------------------------------------------------------------------
# numbers


def gamma_encode(enc: RangeEncoder, probs: list[int], base: int, x: int) -> None:
    """x in [1, 2^32): unary bit length (context per position), then the bits below the top."""
    nb = x.bit_length()
    for i in range(nb - 1):
        enc.bit(probs, base + i, 1)
    if nb < GAMMA_MAX_BITS:
        enc.bit(probs, base + nb - 1, 0)
    mant = base + GAMMA_MAX_BITS + nb * GAMMA_MANT_CTX
    for t in range(nb - 1):
        b = (x >> (nb - 2 - t)) & 1
        if t < GAMMA_MANT_CTX:
            enc.bit(probs, mant + t, b)
        else:
            enc.direct(b)


def gamma_decode(dec: RangeDecoder, probs: list[int], base: int) -> int:
    nb = 1
    while nb < GAMMA_MAX_BITS and dec.bit(probs, base + nb - 1):
        nb += 1
    mant = base + GAMMA_MAX_BITS + nb * GAMMA_MANT_CTX
    x = 1
    for t in range(nb - 1):
        x = (x << 1) | (dec.bit(probs, mant + t) if t < GAMMA_MANT_CTX else dec.direct())
    return x


def _gamma_price(probs: list[int], base: int, x: int) -> float:
    """Bits gamma_encode would spend, updating `probs` as it would."""
    cost = 0.0
    nb = x.bit_length()
    for i in range(nb - 1):
        cost += _price_bit(probs, base + i, 1)
    if nb < GAMMA_MAX_BITS:
        cost += _price_bit(probs, base + nb - 1, 0)
    mant = base + GAMMA_MAX_BITS + nb * GAMMA_MANT_CTX
    for t in range(nb - 1):
        if t < GAMMA_MANT_CTX:
            cost += _price_bit(probs, mant + t, (x >> (nb - 2 - t)) & 1)
        else:
            cost += 1.0
    return cost


def _price_bit(probs: list[int], i: int, b: int) -> float:
    p = probs[i]
    if b:
        probs[i] = p - (p >> MOVE_BITS)
        return _PRICE[PROB_ONE - p]
    probs[i] = p + ((PROB_ONE - p) >> MOVE_BITS)
    return _PRICE[p]


# --------------------------------------------------------------------------------------------
# records


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
        cost += _gamma_price(probs, count, len(positions))
        prev = -1
        for p in positions.tolist():
            cost += _gamma_price(probs, gap, p - prev)
            prev = p
    else:
        changed = np.zeros(span, np.int8)
        changed[positions] = 1
        prev = 0
        for b in changed.tolist():
            cost += _price_bit(probs, bitmap + prev, b)
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
                cost += _price_bit(probs, tree + node, b)
                node = 2 * node + b
    else:
        mag, sign = (C4_MAG_LITERAL, C4_SIGN_LITERAL) if literal else (C4_MAG_DELTA, C4_SIGN_DELTA)
        for v in values:
            cost += _gamma_price(probs, mag, abs(v) + literal)
            if v:
                cost += _price_bit(probs, sign, 1 if v < 0 else 0)
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
# typed regions of a .tflite flatbuffer (standard library only: no schema package in the core)

_TYPE_WIDTH = {0: 4, 2: 4, 4: 4}  # FLOAT32, INT32, INT64 (as 32-bit words); everything else bytes


def tflite_regions(model: bytes) -> list[tuple[int, int, int]]:
    """(start, end, width) of every tensor's constant data, scale and zero-point vector.

    Walks the TFLite flatbuffer directly (Model.buffers, SubGraph.tensors, Tensor.quantization).
    A file it cannot walk gives no regions; the encoder then codes its changes as bytes.
    """
    try:
        return _tflite_regions(bytes(model))
    except (struct.error, IndexError, ValueError):
        return []


def _tflite_regions(buf: bytes) -> list[tuple[int, int, int]]:
    u32 = lambda p: struct.unpack_from("<I", buf, p)[0]  # noqa: E731
    i32 = lambda p: struct.unpack_from("<i", buf, p)[0]  # noqa: E731
    u16 = lambda p: struct.unpack_from("<H", buf, p)[0]  # noqa: E731

    def field(table: int, index: int) -> int | None:
        vt = table - i32(table)
        off = 4 + 2 * index
        if off + 2 > u16(vt):
            return None
        fo = u16(vt + off)
        return table + fo if fo else None

    def vector(pos: int) -> tuple[int, int]:
        vec = pos + u32(pos)
        return vec + 4, u32(vec)

    def table_at(elem: int) -> int:
        return elem + u32(elem)

    root = u32(0)
    regions = []
    buffers_f, subgraphs_f = field(root, 4), field(root, 2)
    if buffers_f is None or subgraphs_f is None:
        return []
    bstart, bcount = vector(buffers_f)
    buffer_spans = []
    for j in range(bcount):
        bt = table_at(bstart + 4 * j)
        df = field(bt, 0)
        if df is None:
            buffer_spans.append(None)
            continue
        s, n = vector(df)
        buffer_spans.append((s, s + n))
    sstart, scount = vector(subgraphs_f)
    for g in range(scount):
        sg = table_at(sstart + 4 * g)
        tf = field(sg, 0)
        if tf is None:
            continue
        tstart, tcount = vector(tf)
        for t in range(tcount):
            tt = table_at(tstart + 4 * t)
            typ_f, buf_f, q_f = field(tt, 1), field(tt, 2), field(tt, 4)
            typ = buf[typ_f] if typ_f is not None else 0
            bi = u32(buf_f) if buf_f is not None else 0
            if 0 <= bi < len(buffer_spans) and buffer_spans[bi] is not None:
                s, e = buffer_spans[bi]
                if e > s:
                    regions.append((s, e, _TYPE_WIDTH.get(typ, 1)))
            if q_f is not None:
                qt = table_at(q_f)
                for fi, width in ((2, 4), (3, 4)):  # scale [float32], zero_point [int64]
                    vf = field(qt, fi)
                    if vf is not None:
                        s, n = vector(vf)
                        nbytes = n * (4 if fi == 2 else 8)
                        if n and s + nbytes <= len(buf):
                            regions.append((s, s + nbytes, width))
    return [r for r in regions if r[1] <= len(buf)]


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
