"""Byte-level builders for the C blob parser's test vectors: blobs written field by field
(`raw_blob`), patch streams written symbol by symbol (`StreamWriter`), format-v1 blobs, seeded
random models and their patched copies, and the CRC rewrite that lets a mutation reach the rule
it targets."""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from typing import Sequence

from polykws.core.patchcode import (
    C4_DERIVED,
    CONTEXTS_BY_WIDTH,
    CTX_HDR,
    CTX_WIDTH,
    NUM_CONTEXTS,
    PROB_INIT,
    RangeEncoder,
    WIDTHS,
    encode_records,
    encode_value,
    gamma_encode,
    plan_records,
    tflite_regions,
)
from polykws.export.blob import BLOB_PREFIX_SIZE

def recrc(data: bytes | bytearray) -> bytes:
    """Rewrite the trailing CRC so a mutation reaches the rule it targets instead of bad_crc."""
    body = bytes(data[:-4])
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def set_field(data: bytes, offset: int, fmt: str, value) -> bytearray:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return out


def blob_layout(blob: bytes) -> dict[str, int]:
    """Offsets of the label table, thresholds and patch stream in a valid blob."""
    num_labels, num_thresholds = blob[6], blob[7]
    pos = BLOB_PREFIX_SIZE
    for _ in range(num_labels):
        pos += 1 + blob[pos]
    return {"labels": BLOB_PREFIX_SIZE, "thresholds": pos, "stream": pos + num_thresholds}


def raw_blob(
    *,
    base: bytes,
    target: bytes | None = None,
    stream: bytes | None = None,
    lang: bytes = b"en",
    labels: Sequence[bytes] = (b"yes", b"no"),
    thresholds: bytes = b"",
    version: int = 2,
    magic: bytes = b"PKWB",
    num_labels: int | None = None,
    num_thresholds: int | None = None,
    model_size: int | None = None,
    digest: bytes | None = None,
    fix_crc: bool = True,
) -> bytes:
    """A blob written field by field from docs/BLOB_FORMAT.md (not through encode_blob); any field can be wrong.

    `stream` defaults to the patch stream of base -> target; `digest` to the one the spec defines.
    """
    target = base if target is None else target
    if stream is None:
        stream = encode_records(plan_records(base, target, tflite_regions(base)))
    table = b"".join(bytes([len(x)]) + x for x in labels)
    covered = table + thresholds
    total = BLOB_PREFIX_SIZE + len(covered) + len(stream) + 4
    header = struct.pack(
        "<4sHBBI8sI4s4s",
        magic,
        version,
        (len(labels) if num_labels is None else num_labels) & 0xFF,
        (len(thresholds) if num_thresholds is None else num_thresholds) & 0xFF,
        total,
        lang.ljust(8, b"\0"),
        len(base) if model_size is None else model_size,
        hashlib.sha256(base).digest()[:4],
        hashlib.sha256(b"{}").digest()[:4],
    )
    if digest is None:
        digest = hashlib.sha256(target + header[6:8] + header[12:20] + covered).digest()
    data = header + digest + covered + stream
    return data + struct.pack("<I", zlib.crc32(data) if fix_crc else 0xDEADBEEF)


class StreamWriter:
    """Writes a patch stream symbol by symbol with the real coder, so hand-made streams can break any rule."""

    def __init__(self) -> None:
        self.enc = RangeEncoder()
        self.probs = [PROB_INIT] * NUM_CONTEXTS

    def number(self, model: int, x: int) -> "StreamWriter":
        gamma_encode(self.enc, self.probs, model, x)
        return self

    def bit(self, ctx: int, b: int) -> "StreamWriter":
        self.enc.bit(self.probs, ctx, b)
        return self

    def record(self, skip: int, width: int, span: int, mode: int, literal: int = 0) -> tuple[int, int, int]:
        """Header of one record; returns the class's (bitmap, count, gap) contexts."""
        mode_ctx, vmode_ctx, bitmap, count, gap = CONTEXTS_BY_WIDTH[width]
        self.number(CTX_HDR, skip + 1).bit(CTX_WIDTH, WIDTHS.index(width)).number(CTX_HDR, span)
        if width == 4:
            self.bit(C4_DERIVED, 0)
        self.bit(mode_ctx, mode).bit(vmode_ctx, literal)
        return bitmap, count, gap

    def value(self, width: int, v: int, literal: int = 0) -> "StreamWriter":
        encode_value(self.enc, self.probs, width, literal, v)
        return self

    def finish(self) -> bytes:
        return self.enc.finish()


def v1_blob(base: bytes, target: bytes) -> bytes:
    """A format-1 blob (96-byte header, raw byte-range records), as earlier firmware read them."""
    runs = [(i, target[i : i + 1]) for i in range(len(base)) if base[i] != target[i]]
    table = b"\x03yes\x02no"
    body = table + b"{}"
    body += b"\0" * (-(96 + len(body)) % 4)
    for off, d in runs:
        body += struct.pack("<II", off, len(d)) + d + b"\0" * (-len(d) % 4)
    total = 96 + len(body) + 4
    header = struct.pack("<4sHHI8s32s32sIHHI", b"PKWB", 1, 96, total, b"en".ljust(8, b"\0"),
                         hashlib.sha256(base).digest(), hashlib.sha256(target).digest(), len(base), 2, len(runs), 2)
    data = header + body
    return data + struct.pack("<I", zlib.crc32(data))


def random_model(rng: random.Random, size: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(size))


def patched_model(rng: random.Random, base: bytes, positions) -> bytes:
    out = bytearray(base)
    for p in positions:
        out[p] = (out[p] + 1 + rng.randrange(255)) & 0xFF
    return bytes(out)
