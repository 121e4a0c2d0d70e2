"""Language blobs (PKWB, format 2) and the flash image (PKWF), exactly as docs/BLOB_FORMAT.md specifies.

A blob turns the shared int8 base `.tflite` into one language's `.tflite`, byte for byte: a
32-byte header, an integrity digest (SHA-256 over the patched model, the language code, the
label table and the thresholds), the label table, the thresholds, a range-coded patch stream
(`polykws.core.patchcode`) and a CRC. `firmware/lib/blob.c` implements the same document; both
decoders check the same rules in the same order and refuse bad input with the same error names
(`BlobError.code` here, `PKWB_ERR_*` in C).

Only the standard library and numpy are used, so firmware tooling can import this module
without TensorFlow or torch.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

from polykws.core import PolykwsError, stable_json
# The container layout and the error names, defined once (firmware/lib/blob_format.h is generated
# from the same module); importers may take the format's names from here.
from polykws.core.blobformat import (
    BLOB_FORMAT_VERSION,
    BLOB_HEADER,
    BLOB_HEADER_SIZE,
    BLOB_ID_BYTES,
    BLOB_MAGIC,
    BLOB_MIN_SIZE,
    BLOB_PREFIX_SIZE,
    BLOB_VERSION_END,
    CRC_BYTES,
    DIGEST_HEADER_SPANS,
    ERROR_CODES,
    FLASH_ALIGN,
    FLASH_CRC_ALIGN,
    FLASH_ENTRY,
    FLASH_ENTRY_SIZE,
    FLASH_FORMAT_VERSION,
    FLASH_HEADER,
    FLASH_HEADER_SIZE,
    FLASH_MAGIC,
    LANG_BYTES,
    MAX_LABELS,
    MIN_STREAM_BYTES,
)
from polykws.core.patchcode import (
    MAX_MODEL_BYTES,
    PatchCodeError,
    Record,
    apply_records,
    decode_records,
    encode_records,
    plan_records,
    tflite_regions,
)

_BLOB_HEADER = BLOB_HEADER.struct
_FLASH_HEADER = FLASH_HEADER.struct
_FLASH_ENTRY = FLASH_ENTRY.struct
_VERSION = BLOB_HEADER["format_version"]

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
class Blob:
    """A parsed blob (rules 1-6). Applying it (rule 7: patch stream, digest) needs the base: `apply_blob`."""

    lang: str
    labels: tuple[str, ...]
    thresholds: bytes
    base_id: str  # hex of the base's SHA-256 leading BLOB_ID_BYTES
    meta_id: str  # hex of the metadata JSON's SHA-256 leading BLOB_ID_BYTES
    digest: str  # integrity digest (hex): model + lang + labels + thresholds
    model_size: int
    stream: bytes = field(repr=False)
    covered: bytes = field(repr=False)  # the blob bytes the digest covers after the model
    total_size: int = 0
    format_version: int = BLOB_FORMAT_VERSION

    def records(self) -> list[Record]:
        """The decoded patch stream (BlobError on a stream the decoders refuse)."""
        try:
            return decode_records(self.stream, self.model_size)
        except PatchCodeError as exc:
            raise BlobError(exc.code, str(exc)) from None


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


def meta_json(meta: dict[str, Any] | None) -> bytes:
    """The metadata text a blob references by `meta_id` (the pack manifest carries it in full)."""
    return stable_json(meta or {}).encode("utf-8")


def meta_id(meta: dict[str, Any] | None) -> str:
    return hashlib.sha256(meta_json(meta)).digest()[:BLOB_ID_BYTES].hex()


def integrity_digest(model: bytes, header: bytes, covered: bytes) -> bytes:
    """SHA-256 of the model, then the header's label and threshold counts and its language
    (DIGEST_HEADER_SPANS), then the label table and thresholds: everything the device uses from a blob."""
    h = hashlib.sha256(model)
    for start, end in DIGEST_HEADER_SPANS.values():
        h.update(header[start:end])
    h.update(covered)
    return h.digest()


# ---------------------------------------------------------------------------------------------
# blob: encode / decode / apply


def encode_blob(
    base: bytes,
    target: bytes,
    lang: str,
    labels: Sequence[str],
    meta: dict[str, Any] | None = None,
    thresholds: bytes = b"",
    regions: Sequence[tuple[int, int, int]] | None = None,
) -> bytes:
    """The blob that turns `base` into `target` (both complete .tflite files of equal length).

    `thresholds`: one byte per label, or none. `regions`: typed tensor regions of the base
    (default: `tflite_regions(base)`); they only steer the coding, never what decodes.
    """
    base, target = bytes(base), bytes(target)
    if len(base) != len(target):
        raise BlobError(
            "size_mismatch",
            f"base is {len(base)} bytes but the language model is {len(target)}: the models are not "
            "layout-identical, so no byte-patch blob can describe the difference",
        )
    if len(base) > MAX_MODEL_BYTES:
        raise BlobError("bad_size", f"model larger than {MAX_MODEL_BYTES} bytes")
    lang_field = encode_lang(lang)
    label_table = _encode_labels(labels)
    thresholds = bytes(thresholds)
    if len(thresholds) not in (0, len(labels)):
        raise BlobError("bad_labels", f"{len(thresholds)} thresholds for {len(labels)} labels; give one per label or none")
    records = plan_records(base, target, tflite_regions(base) if regions is None else regions)
    stream = encode_records(records)
    covered = label_table + thresholds
    total = BLOB_PREFIX_SIZE + len(covered) + len(stream) + CRC_BYTES
    header = _BLOB_HEADER.pack(
        BLOB_MAGIC,
        BLOB_FORMAT_VERSION,
        len(labels),
        len(thresholds),
        total,
        lang_field,
        len(base),
        hashlib.sha256(base).digest()[:BLOB_ID_BYTES],
        bytes.fromhex(meta_id(meta)),
    )
    data = header + integrity_digest(target, header, covered) + covered + stream
    return data + struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF)


def decode_blob(data: bytes, source: str | None = None) -> Blob:
    """Parse and validate a blob (rules 1-6, in the document's order); BlobError on refusal."""
    data = bytes(data)

    def fail(code: str, msg: str) -> BlobError:
        return BlobError(code, msg, source)

    size = len(data)
    # 1-3. magic and version first, so a blob of any other version is named as such
    if size < BLOB_VERSION_END:
        raise fail("truncated", f"{size} bytes; a blob has at least {BLOB_MIN_SIZE}")
    if data[:4] != BLOB_MAGIC:
        raise fail("bad_magic", f"magic {data[:4]!r}, expected {BLOB_MAGIC!r}")
    version = struct.unpack_from("<" + _VERSION.code, data, _VERSION.offset)[0]
    if version != BLOB_FORMAT_VERSION:
        raise fail("unsupported_version", f"format version {version}; this reader knows {BLOB_FORMAT_VERSION}")
    # 4. sizes
    if size < BLOB_MIN_SIZE:
        raise fail("truncated", f"{size} bytes; a blob has at least {BLOB_MIN_SIZE}")
    (_, _, num_labels, num_thresholds, total_size, lang_field, model_size, base_id, mid) = _BLOB_HEADER.unpack_from(data, 0)
    if size < total_size:
        raise fail("truncated", f"{size} bytes but the header says {total_size}")
    if size > total_size:
        raise fail("bad_size", f"{size} bytes but the header says {total_size}")
    # 5. CRC
    stored_crc = struct.unpack_from("<I", data, total_size - CRC_BYTES)[0]
    crc = zlib.crc32(data[: total_size - CRC_BYTES]) & 0xFFFFFFFF
    if crc != stored_crc:
        raise fail("bad_crc", f"CRC-32 {crc:08x} != stored {stored_crc:08x}")
    # 6. fields and body layout
    lang = _check_lang_field(lang_field)
    if lang is None:
        raise fail("bad_lang", f"language field {lang_field!r} is not NUL-padded [a-z0-9_-]")
    if num_labels == 0 or num_thresholds not in (0, num_labels):
        raise fail("bad_labels", f"{num_labels} labels and {num_thresholds} thresholds; want >= 1 label and 0 or one threshold each")
    if model_size > MAX_MODEL_BYTES:
        raise fail("bad_size", f"model_size {model_size} exceeds {MAX_MODEL_BYTES}")
    body_end = total_size - CRC_BYTES
    pos = BLOB_PREFIX_SIZE
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
    if pos + num_thresholds > body_end:
        raise fail("truncated", "the thresholds run past the end of the blob")
    thresholds = data[pos : pos + num_thresholds]
    pos += num_thresholds
    if body_end - pos < MIN_STREAM_BYTES:
        raise fail("truncated", f"{body_end - pos} bytes left for the patch stream; it has at least {MIN_STREAM_BYTES}")
    return Blob(
        lang=lang,
        labels=tuple(labels),
        thresholds=thresholds,
        base_id=base_id.hex(),
        meta_id=mid.hex(),
        digest=data[BLOB_HEADER_SIZE:BLOB_PREFIX_SIZE].hex(),
        model_size=model_size,
        stream=data[pos:body_end],
        covered=data[BLOB_PREFIX_SIZE:pos],
        total_size=total_size,
    )


def needed_base(base_id: str, model_size: int) -> str:
    """Which base a blob needs, in words: its hash prefix and size, and whether that is the shipped base.

    A refused blob's message names the base to flash instead; `polykws base info` prints the
    shipped base's full hashes.
    """
    from polykws.core.assets import TFLITE_NAME, ShippedBaseError, read_manifest, shipped_base_dir

    text = f"the base whose int8 .tflite is {model_size} bytes with SHA-256 {base_id}..."
    try:
        shipped = read_manifest(shipped_base_dir())["files"][TFLITE_NAME]
    except ShippedBaseError:
        return text + " (`polykws base info` shows the shipped base's hash)"
    if shipped["sha256"].startswith(base_id) and shipped["bytes"] == model_size:
        return text + ": the base shipped with polykws (`polykws base info`)"
    return text + f"; the shipped base is {shipped['sha256'][:2 * BLOB_ID_BYTES]}... (`polykws base info`), so this blob was made against another base"


def _refuse_base(lang: str, base: bytes, want_id: str, model_size: int) -> str:
    have = hashlib.sha256(base).hexdigest()[: 2 * BLOB_ID_BYTES]
    return f"blob {lang!r} needs {needed_base(want_id, model_size)}; this base is {len(base)} bytes, SHA-256 {have}..."


def apply_blob(base: bytes, blob: bytes | Blob, source: str | None = None) -> bytes:
    """The language model: `base` patched by `blob` (rule 7). Raises BlobError, returning nothing, on refusal."""
    parsed = blob if isinstance(blob, Blob) else decode_blob(blob, source)
    base = bytes(base)
    if len(base) != parsed.model_size:
        raise BlobError("size_mismatch", _refuse_base(parsed.lang, base, parsed.base_id, parsed.model_size), source)
    if hashlib.sha256(base).digest()[:BLOB_ID_BYTES].hex() != parsed.base_id:
        raise BlobError("base_mismatch", _refuse_base(parsed.lang, base, parsed.base_id, parsed.model_size), source)
    out = bytearray(base)
    try:
        apply_records(out, decode_records(parsed.stream, parsed.model_size))
    except PatchCodeError as exc:
        raise BlobError(exc.code, f"patch stream: {exc}", source) from None
    result = bytes(out)
    header = _header_of(parsed)
    if integrity_digest(result, header, parsed.covered).hex() != parsed.digest:
        raise BlobError("target_mismatch", f"patched model, labels or thresholds do not match blob {parsed.lang!r}'s digest", source)
    return result


def _header_of(b: Blob) -> bytes:
    """The header bytes the digest covers, rebuilt from a parsed blob."""
    return _BLOB_HEADER.pack(BLOB_MAGIC, b.format_version, len(b.labels), len(b.thresholds), b.total_size,
                             encode_lang(b.lang), b.model_size, bytes.fromhex(b.base_id), bytes.fromhex(b.meta_id))


def changed_bytes(blob: Blob) -> int:
    """Bytes the patch stream changes (elements x width)."""
    return sum(len(r.positions) * r.width for r in blob.records())


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
            "crc_offset": self.size - CRC_BYTES,
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
            raise BlobError("size_mismatch", _refuse_base(p.lang, base, p.base_id, p.model_size))
        if p.base_id != base_sha[:BLOB_ID_BYTES].hex():
            raise BlobError("base_mismatch", _refuse_base(p.lang, base, p.base_id, p.model_size))
    table_end = FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * len(parsed)
    base_offset = _align(table_end, FLASH_ALIGN)
    pos = base_offset + len(base)
    entries = []
    for p, raw in zip(parsed, blobs):
        off = _align(pos, FLASH_ALIGN)
        entries.append((off, len(raw), p.lang))
        pos = off + len(raw)
    end = _align(pos, FLASH_CRC_ALIGN)
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
    if size < FLASH_HEADER_SIZE + CRC_BYTES:
        raise fail("truncated", f"{size} bytes; a flash image has at least {FLASH_HEADER_SIZE + CRC_BYTES}")
    magic, version, num_blobs, base_offset, base_size, base_sha = _FLASH_HEADER.unpack_from(data, 0)
    if magic != FLASH_MAGIC:
        raise fail("bad_magic", f"magic {magic!r}, expected {FLASH_MAGIC!r}")
    if version != FLASH_FORMAT_VERSION:
        raise fail("unsupported_version", f"flash image version {version}; this reader knows {FLASH_FORMAT_VERSION}")
    if size > 0xFFFFFFFF:
        raise fail("bad_size", "image larger than 4 GiB")
    table_end = FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * num_blobs
    if table_end + CRC_BYTES > size:
        raise fail("truncated", f"the table of {num_blobs} blobs runs past the end of the image")
    stored_crc = struct.unpack_from("<I", data, size - CRC_BYTES)[0]
    crc = zlib.crc32(data[: size - CRC_BYTES]) & 0xFFFFFFFF
    if crc != stored_crc:
        raise fail("bad_crc", f"CRC-32 {crc:08x} != stored {stored_crc:08x}")
    body_end = size - CRC_BYTES
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
            if blob.model_size != base_size or blob.base_id != base_sha[:BLOB_ID_BYTES].hex():
                raise fail("size_mismatch" if blob.model_size != base_size else "base_mismatch",
                           _refuse_base(e.lang, image.base, blob.base_id, blob.model_size))
    return image
