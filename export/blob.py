"""Language blobs (PKWB) and the flash image (PKWF), exactly as docs/BLOB_FORMAT.md specifies.

A blob turns the shared int8 base `.tflite` into one language's `.tflite`, byte for byte: a
list of byte-range patches plus the labels, the base's and the target's SHA-256 and a CRC.
`firmware/blob.c` implements the same document; both parsers check the same rules in the same
order and refuse bad input with the same error names (`BlobError.code` here, `PKWB_ERR_*` in C).

Only the standard library and numpy are used, so firmware tooling can import this module
without TensorFlow or torch.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from polykws.core import PolykwsError, stable_json

BLOB_MAGIC = b"PKWB"
BLOB_FORMAT_VERSION = 1
BLOB_HEADER_SIZE = 96
BLOB_MIN_SIZE = BLOB_HEADER_SIZE + 4  # header + CRC
LANG_BYTES = 8
MAX_LABELS = 255
MAX_PATCHES = 0xFFFF
RECORD_HEADER_BYTES = 8  # u32 offset + u32 length

FLASH_MAGIC = b"PKWF"
FLASH_FORMAT_VERSION = 1
FLASH_HEADER_SIZE = 48
FLASH_ENTRY_SIZE = 16
FLASH_ALIGN = 16  # TFLM wants the model 16-byte aligned

# Header: magic, version, header_size, total_size, lang, base_sha256, target_sha256,
# model_size, num_labels, num_patches, meta_size.
_BLOB_HEADER = struct.Struct("<4sHHI8s32s32sIHHI")
assert _BLOB_HEADER.size == BLOB_HEADER_SIZE
_FLASH_HEADER = struct.Struct("<4sHHII32s")
assert _FLASH_HEADER.size == FLASH_HEADER_SIZE
_FLASH_ENTRY = struct.Struct("<II8s")

ERROR_CODES = (
    "truncated",
    "bad_magic",
    "unsupported_version",
    "bad_size",
    "bad_crc",
    "bad_lang",
    "bad_labels",
    "overlapping_patches",
    "out_of_range",
    "size_mismatch",
    "base_mismatch",
    "target_mismatch",
)

_LANG_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_-")


class BlobError(PolykwsError):
    """A blob or flash image is refused; `.code` is the error name from docs/BLOB_FORMAT.md."""

    def __init__(self, code: str, message: str, source: str | None = None):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown blob error code {code!r}")
        self.code = code
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{code}: {message}")


@dataclass(frozen=True)
class Patch:
    offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True)
class Blob:
    """A parsed, validated blob (rules 1-7). Applying it (rule 8) needs the base: `apply_blob`."""

    lang: str
    labels: tuple[str, ...]
    base_sha256: str
    target_sha256: str
    model_size: int
    patches: tuple[Patch, ...]
    meta_bytes: bytes
    total_size: int
    format_version: int = BLOB_FORMAT_VERSION

    @property
    def meta(self) -> dict[str, Any]:
        """The metadata JSON. Neither parser validates it (firmware skips it); the encoder writes valid JSON."""
        try:
            obj = json.loads(self.meta_bytes.decode("utf-8")) if self.meta_bytes else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PolykwsError(f"blob {self.lang}: metadata is not UTF-8 JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise PolykwsError(f"blob {self.lang}: metadata is not a JSON object")
        return obj

    @property
    def patched_bytes(self) -> int:
        return sum(len(p.data) for p in self.patches)


# ---------------------------------------------------------------------------------------------
# helpers


def _align(n: int, a: int = 4) -> int:
    return (n + a - 1) // a * a


def _check_lang_field(field: bytes) -> str | None:
    """The C `check_lang`: >= 1 byte of [a-z0-9_-], then only NUL padding. None when invalid."""
    n = 0
    while n < LANG_BYTES and field[n] != 0:
        n += 1
    if n == 0:
        return None
    if any(c not in _LANG_CHARS for c in field[:n]):
        return None
    if any(c != 0 for c in field[n:]):
        return None
    return field[:n].decode("ascii")


def encode_lang(lang: str) -> bytes:
    raw = lang.encode("ascii", errors="replace") if isinstance(lang, str) else b""
    field = raw.ljust(LANG_BYTES, b"\0")
    if len(raw) > LANG_BYTES or _check_lang_field(field) is None:
        raise BlobError("bad_lang", f"language code {lang!r} must be 1-{LANG_BYTES} characters of [a-z0-9_-]")
    return field


def _encode_labels(labels: Sequence[str]) -> bytes:
    if not 1 <= len(labels) <= MAX_LABELS:
        raise BlobError("bad_labels", f"{len(labels)} labels; a blob carries 1..{MAX_LABELS}")
    out = bytearray()
    for label in labels:
        raw = str(label).encode("utf-8")
        if not 1 <= len(raw) <= 255 or b"\0" in raw:
            raise BlobError("bad_labels", f"label {label!r} must be 1-255 UTF-8 bytes without NUL")
        out.append(len(raw))
        out += raw
    return bytes(out)


def changed_runs(base: bytes, target: bytes) -> list[tuple[int, int]]:
    """Maximal [start, end) runs where `target` differs from `base` (equal lengths)."""
    a = np.frombuffer(base, dtype=np.uint8)
    b = np.frombuffer(target, dtype=np.uint8)
    diff = np.concatenate(([False], a != b, [False]))
    edges = np.flatnonzero(diff[1:] != diff[:-1])
    return [(int(s), int(e)) for s, e in zip(edges[0::2], edges[1::2])]


def _record_bytes(length: int) -> int:
    return RECORD_HEADER_BYTES + _align(length)


def merge_runs(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Greedy left-to-right: join a run to the previous record when one record is no larger than two.

    A gap costs its bytes; a separate record costs 8 header bytes plus padding. Deterministic, so
    the same diff always gives the same blob.
    """
    merged: list[tuple[int, int]] = []
    for start, end in runs:
        if merged:
            ps, pe = merged[-1]
            if _record_bytes(end - ps) <= _record_bytes(pe - ps) + _record_bytes(end - start):
                merged[-1] = (ps, end)
                continue
        merged.append((start, end))
    return merged


# ---------------------------------------------------------------------------------------------
# blob: encode / decode / apply


def encode_blob(
    base: bytes,
    target: bytes,
    lang: str,
    labels: Sequence[str],
    meta: dict[str, Any] | None = None,
) -> bytes:
    """The blob that turns `base` into `target` (both complete .tflite files of equal length)."""
    base, target = bytes(base), bytes(target)
    if len(base) != len(target):
        raise BlobError(
            "size_mismatch",
            f"base is {len(base)} bytes but the language model is {len(target)}: the models are not "
            "layout-identical, so no byte-patch blob can describe the difference",
        )
    if len(base) > 0xFFFFFFFF:
        raise BlobError("bad_size", "model larger than 4 GiB")
    lang_field = encode_lang(lang)
    label_table = _encode_labels(labels)
    meta_bytes = stable_json(meta or {}).encode("utf-8")

    runs = merge_runs(changed_runs(base, target))
    if len(runs) > MAX_PATCHES:
        raise BlobError("bad_size", f"{len(runs)} patch records exceed the format's {MAX_PATCHES}")

    body = bytearray(label_table)
    body += meta_bytes
    body += b"\0" * (_align(BLOB_HEADER_SIZE + len(body)) - BLOB_HEADER_SIZE - len(body))
    for start, end in runs:
        body += struct.pack("<II", start, end - start)
        body += target[start:end]
        body += b"\0" * (_align(end - start) - (end - start))
    total = BLOB_HEADER_SIZE + len(body) + 4
    header = _BLOB_HEADER.pack(
        BLOB_MAGIC,
        BLOB_FORMAT_VERSION,
        BLOB_HEADER_SIZE,
        total,
        lang_field,
        hashlib.sha256(base).digest(),
        hashlib.sha256(target).digest(),
        len(base),
        len(labels),
        len(runs),
        len(meta_bytes),
    )
    data = header + bytes(body)
    return data + struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF)


def decode_blob(data: bytes, source: str | None = None) -> Blob:
    """Parse and validate a blob (rules 1-7, in the document's order); BlobError on refusal."""
    data = bytes(data)

    def fail(code: str, msg: str) -> BlobError:
        return BlobError(code, msg, source)

    size = len(data)
    # 1. header + CRC
    if size < BLOB_MIN_SIZE:
        raise fail("truncated", f"{size} bytes; a blob has at least {BLOB_MIN_SIZE}")
    (magic, version, header_size, total_size, lang_field, base_sha, target_sha, model_size,
     num_labels, num_patches, meta_size) = _BLOB_HEADER.unpack_from(data, 0)
    # 2. magic
    if magic != BLOB_MAGIC:
        raise fail("bad_magic", f"magic {magic!r}, expected {BLOB_MAGIC!r}")
    # 3. version
    if version != BLOB_FORMAT_VERSION:
        raise fail("unsupported_version", f"format version {version}; this reader knows {BLOB_FORMAT_VERSION}")
    # 4. sizes
    if size < total_size:
        raise fail("truncated", f"{size} bytes but the header says {total_size}")
    if size > total_size or header_size != BLOB_HEADER_SIZE:
        raise fail("bad_size", f"{size} bytes, total_size {total_size}, header_size {header_size} (want {BLOB_HEADER_SIZE})")
    # 5. CRC
    stored_crc = struct.unpack_from("<I", data, total_size - 4)[0]
    crc = zlib.crc32(data[: total_size - 4]) & 0xFFFFFFFF
    if crc != stored_crc:
        raise fail("bad_crc", f"CRC-32 {crc:08x} != stored {stored_crc:08x}")
    # 6. body layout
    lang = _check_lang_field(lang_field)
    if lang is None:
        raise fail("bad_lang", f"language field {lang_field!r} is not NUL-padded [a-z0-9_-]")
    if num_labels == 0 or num_labels > MAX_LABELS:
        raise fail("bad_labels", f"num_labels {num_labels}; must be 1..{MAX_LABELS}")
    body_end = total_size - 4
    pos = BLOB_HEADER_SIZE
    labels = []
    for i in range(num_labels):
        if pos + 1 > body_end:
            raise fail("truncated", f"label {i} starts past the end of the blob")
        n = data[pos]
        if n == 0:
            raise fail("bad_labels", f"label {i} is empty")
        if pos + 1 + n > body_end:
            raise fail("truncated", f"label {i} runs past the end of the blob")
        raw = data[pos + 1 : pos + 1 + n]
        if b"\0" in raw:
            raise fail("bad_labels", f"label {i} contains a NUL byte")
        try:
            labels.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise fail("bad_labels", f"label {i} is not valid UTF-8") from None
        pos += 1 + n
    if pos + meta_size > body_end:
        raise fail("truncated", f"metadata ({meta_size} bytes) runs past the end of the blob")
    meta_bytes = data[pos : pos + meta_size]
    pos += meta_size
    while pos % 4:
        if pos >= body_end:
            raise fail("truncated", "padding after the metadata runs past the end of the blob")
        if data[pos] != 0:
            raise fail("bad_size", f"non-zero padding byte at {pos}")
        pos += 1
    records: list[tuple[int, int, int]] = []  # (offset, length, data position)
    for i in range(num_patches):
        if pos + RECORD_HEADER_BYTES > body_end:
            raise fail("truncated", f"patch record {i} header runs past the end of the blob")
        offset, length = struct.unpack_from("<II", data, pos)
        end = pos + RECORD_HEADER_BYTES + _align(length)
        if end > body_end:
            raise fail("truncated", f"patch record {i} ({length} bytes) runs past the end of the blob")
        if any(data[pos + RECORD_HEADER_BYTES + length : end]):
            raise fail("bad_size", f"non-zero padding in patch record {i}")
        if length == 0:
            raise fail("bad_size", f"patch record {i} has length 0")
        records.append((offset, length, pos + RECORD_HEADER_BYTES))
        pos = end
    if pos != body_end:
        raise fail("bad_size", f"{body_end - pos} unexplained bytes before the CRC")
    # 7. patches sorted, non-overlapping (all records), then inside the model (all records)
    for i in range(1, len(records)):
        prev_off, prev_len, _ = records[i - 1]
        if records[i][0] < prev_off + prev_len:
            raise fail("overlapping_patches", f"patch {i} at {records[i][0]} starts before patch {i - 1} ends at {prev_off + prev_len}")
    for i, (offset, length, _) in enumerate(records):
        if offset + length > model_size:
            raise fail("out_of_range", f"patch {i} [{offset}, {offset + length}) exceeds the model's {model_size} bytes")
    return Blob(
        lang=lang,
        labels=tuple(labels),
        base_sha256=base_sha.hex(),
        target_sha256=target_sha.hex(),
        model_size=model_size,
        patches=tuple(Patch(o, data[p : p + n]) for o, n, p in records),
        meta_bytes=meta_bytes,
        total_size=total_size,
    )


def apply_blob(base: bytes, blob: bytes | Blob, source: str | None = None) -> bytes:
    """The language model: `base` patched by `blob` (rule 8). Raises BlobError, returning nothing, on refusal."""
    parsed = blob if isinstance(blob, Blob) else decode_blob(blob, source)
    base = bytes(base)
    if len(base) != parsed.model_size:
        raise BlobError("size_mismatch", f"base is {len(base)} bytes; blob {parsed.lang!r} patches a {parsed.model_size}-byte model", source)
    if hashlib.sha256(base).hexdigest() != parsed.base_sha256:
        raise BlobError("base_mismatch", f"blob {parsed.lang!r} was made for base {parsed.base_sha256[:16]}..., not this base", source)
    out = bytearray(base)
    for p in parsed.patches:
        if p.end > len(out):  # decode_blob guarantees this; re-checked for hand-built Blob objects
            raise BlobError("out_of_range", f"patch [{p.offset}, {p.end}) exceeds the model", source)
        out[p.offset : p.end] = p.data
    result = bytes(out)
    if hashlib.sha256(result).hexdigest() != parsed.target_sha256:
        raise BlobError("target_mismatch", f"patched model's SHA-256 does not match blob {parsed.lang!r}'s target", source)
    return result


# ---------------------------------------------------------------------------------------------
# flash image


@dataclass(frozen=True)
class FlashEntry:
    lang: str
    offset: int
    size: int


@dataclass(frozen=True)
class FlashBlob:
    lang: str
    offset: int
    size: int
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class FlashImage:
    base_offset: int
    base_size: int
    base_sha256: str
    entries: tuple[FlashEntry, ...]
    size: int
    data: bytes = field(repr=False)

    @property
    def base(self) -> bytes:
        return self.data[self.base_offset : self.base_offset + self.base_size]

    @property
    def blobs(self) -> list["FlashBlob"]:
        return [FlashBlob(e.lang, e.offset, e.size, self.blob_bytes(i)) for i, e in enumerate(self.entries)]

    def blob_bytes(self, index: int) -> bytes:
        e = self.entries[index]
        return self.data[e.offset : e.offset + e.size]

    def layout(self) -> dict[str, Any]:
        """Offsets and sizes for manifests, linker scripts and firmware READMEs."""
        return {
            "format": "PKWF",
            "format_version": FLASH_FORMAT_VERSION,
            "size": self.size,
            "table_bytes": FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * len(self.entries),
            "base": {"offset": self.base_offset, "size": self.base_size, "sha256": self.base_sha256},
            "blobs": [{"lang": e.lang, "offset": e.offset, "size": e.size} for e in self.entries],
            "crc_offset": self.size - 4,
        }


def encode_flash_image(base: bytes, blobs: Sequence[bytes]) -> bytes:
    """`flash.bin`: header + table, the base, then each blob (16-byte aligned), then the CRC.

    Every blob is parsed and must patch this base; items follow each other in table order, the
    CRC sits right after the last item padded to a 4-byte boundary.
    """
    base = bytes(base)
    if not base:
        raise BlobError("out_of_range", "empty base model")
    base_sha = hashlib.sha256(base).digest()
    parsed = [decode_blob(b, source=f"blob {i}") for i, b in enumerate(blobs)]
    langs = [p.lang for p in parsed]
    if len(set(langs)) != len(langs):
        raise BlobError("bad_lang", f"duplicate language in the flash image: {langs}")
    if len(parsed) > 0xFFFF:
        raise BlobError("bad_size", "more than 65535 blobs")
    for p in parsed:
        if p.model_size != len(base):
            raise BlobError("size_mismatch", f"blob {p.lang!r} patches a {p.model_size}-byte model, base is {len(base)}")
        if p.base_sha256 != base_sha.hex():
            raise BlobError("base_mismatch", f"blob {p.lang!r} was made for another base")
    table_end = FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * len(parsed)
    base_offset = _align(table_end, FLASH_ALIGN)
    pos = base_offset + len(base)
    entries = []
    for p, raw in zip(parsed, blobs):
        off = _align(pos, FLASH_ALIGN)
        entries.append((off, len(raw), p.lang))
        pos = off + len(raw)
    end = _align(pos, 4)
    image = bytearray(end)
    image[:FLASH_HEADER_SIZE] = _FLASH_HEADER.pack(FLASH_MAGIC, FLASH_FORMAT_VERSION, len(parsed), base_offset, len(base), base_sha)
    for i, (off, size, lang) in enumerate(entries):
        _FLASH_ENTRY.pack_into(image, FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * i, off, size, encode_lang(lang))
    image[base_offset : base_offset + len(base)] = base
    for (off, size, _), raw in zip(entries, blobs):
        image[off : off + size] = raw
    return bytes(image) + struct.pack("<I", zlib.crc32(image) & 0xFFFFFFFF)


def decode_flash_image(data: bytes, source: str | None = None, verify_contents: bool = True) -> FlashImage:
    """Parse `flash.bin` with the firmware's checks (pkwf_parse, then pkwf_verify_base and pkwf_blob per entry)."""
    data = bytes(data)

    def fail(code: str, msg: str) -> BlobError:
        return BlobError(code, msg, source)

    size = len(data)
    if size < FLASH_HEADER_SIZE + 4:
        raise fail("truncated", f"{size} bytes; a flash image has at least {FLASH_HEADER_SIZE + 4}")
    magic, version, num_blobs, base_offset, base_size, base_sha = _FLASH_HEADER.unpack_from(data, 0)
    if magic != FLASH_MAGIC:
        raise fail("bad_magic", f"magic {magic!r}, expected {FLASH_MAGIC!r}")
    if version != FLASH_FORMAT_VERSION:
        raise fail("unsupported_version", f"flash image version {version}; this reader knows {FLASH_FORMAT_VERSION}")
    if size > 0xFFFFFFFF:
        raise fail("bad_size", "image larger than 4 GiB")
    table_end = FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * num_blobs
    if table_end + 4 > size:
        raise fail("truncated", f"the table of {num_blobs} blobs runs past the end of the image")
    stored_crc = struct.unpack_from("<I", data, size - 4)[0]
    crc = zlib.crc32(data[: size - 4]) & 0xFFFFFFFF
    if crc != stored_crc:
        raise fail("bad_crc", f"CRC-32 {crc:08x} != stored {stored_crc:08x}")
    body_end = size - 4
    if base_offset % FLASH_ALIGN or base_offset < table_end:
        raise fail("bad_size", f"base offset {base_offset} is not 16-byte aligned after the table")
    if base_size == 0 or base_offset + base_size > body_end:
        raise fail("out_of_range", f"base [{base_offset}, {base_offset + base_size}) is outside the image")
    prev_end = base_offset + base_size
    entries = []
    for i in range(num_blobs):
        off, sz, lang_field = _FLASH_ENTRY.unpack_from(data, FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * i)
        lang = _check_lang_field(lang_field)
        if lang is None:
            raise fail("bad_lang", f"table entry {i} has language field {lang_field!r}")
        if off % FLASH_ALIGN:
            raise fail("bad_size", f"blob {i} offset {off} is not 16-byte aligned")
        if sz < BLOB_MIN_SIZE or off + sz > body_end:
            raise fail("out_of_range", f"blob {i} [{off}, {off + sz}) is outside the image")
        if off < prev_end:
            raise fail("overlapping_patches", f"blob {i} at {off} overlaps the previous item ending at {prev_end}")
        prev_end = off + sz
        entries.append(FlashEntry(lang, off, sz))
    image = FlashImage(base_offset, base_size, base_sha.hex(), tuple(entries), size, data)
    if verify_contents:
        if hashlib.sha256(image.base).digest() != base_sha:
            raise fail("base_mismatch", "the base's SHA-256 does not match the image header")
        for i, e in enumerate(entries):
            blob = decode_blob(image.blob_bytes(i), source=f"{source or 'flash image'} blob {i} ({e.lang})")
            if blob.lang != e.lang:
                raise fail("bad_lang", f"table entry {i} says {e.lang!r} but the blob is {blob.lang!r}")
            if blob.model_size != base_size:
                raise fail("size_mismatch", f"blob {e.lang!r} patches a {blob.model_size}-byte model, base is {base_size}")
            if blob.base_sha256 != base_sha.hex():
                raise fail("base_mismatch", f"blob {e.lang!r} was made for another base")
    return image
