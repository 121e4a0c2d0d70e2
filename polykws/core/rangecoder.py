"""Adaptive binary range coder of the patch stream (docs/BLOB_FORMAT.md, "Patch stream").

LZMA-style: 11-bit probabilities, shift-5 adaptation, a 32-bit range with byte renormalisation
and carry propagation through a cache byte. Numbers are Elias-gamma binarized with a context per
unary position and for the two bits below the leading one. `polykws.core.patchrecords` codes
records with it; the price functions give the bits a symbol costs under the current model, for
choosing between codings without running the coder.
"""

from __future__ import annotations

import math

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


class PatchCodeError(PolykwsError):
    """A patch stream is refused; `.code` is a docs/BLOB_FORMAT.md error name."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(f"{code}: {message}")



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


def gamma_price(probs: list[int], base: int, x: int) -> float:
    """Bits gamma_encode would spend, updating `probs` as it would."""
    cost = 0.0
    nb = x.bit_length()
    for i in range(nb - 1):
        cost += price_bit(probs, base + i, 1)
    if nb < GAMMA_MAX_BITS:
        cost += price_bit(probs, base + nb - 1, 0)
    mant = base + GAMMA_MAX_BITS + nb * GAMMA_MANT_CTX
    for t in range(nb - 1):
        if t < GAMMA_MANT_CTX:
            cost += price_bit(probs, mant + t, (x >> (nb - 2 - t)) & 1)
        else:
            cost += 1.0
    return cost


def price_bit(probs: list[int], i: int, b: int) -> float:
    p = probs[i]
    if b:
        probs[i] = p - (p >> MOVE_BITS)
        return _PRICE[PROB_ONE - p]
    probs[i] = p + ((PROB_ONE - p) >> MOVE_BITS)
    return _PRICE[p]

