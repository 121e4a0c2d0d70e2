"""The container layout of language blobs (PKWB) and the flash image (PKWF), defined once.

Field order, offsets and sizes, magic, versions, fixed sizes and error names live here and
nowhere else: `polykws.export.blob` packs and parses with these layouts, and
`polykws.firmware.blobformatgen` writes them, together with the patch stream's context layout
(`polykws.core.patchrecords`) and the range coder's constants (`polykws.core.rangecoder`), into
`firmware/lib/blob_format.h`, which the C decoder and its fuzz driver include.
docs/BLOB_FORMAT.md describes the format in words. Standard library only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Field:
    name: str
    code: str  # struct format code (little-endian, no padding): "H", "I", "8s", ...
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


class Layout:
    """Fixed-size little-endian fields packed back to back, in order."""

    def __init__(self, fields: Sequence[tuple[str, str]]):
        out, offset = [], 0
        for name, code in fields:
            size = struct.calcsize("<" + code)
            out.append(Field(name, code, offset, size))
            offset += size
        self.fields: tuple[Field, ...] = tuple(out)
        self.struct = struct.Struct("<" + "".join(code for _, code in fields))
        self.size = offset
        self._by_name = {f.name: f for f in self.fields}

    def __getitem__(self, name: str) -> Field:
        return self._by_name[name]

    def span(self, first: str, last: str | None = None) -> tuple[int, int]:
        """[offset of `first`, end of `last`): a run of adjacent fields (one field when `last` is None)."""
        return self[first].offset, self[last or first].end


CRC_BYTES = 4  # CRC-32 (zlib.crc32), little-endian, last in a blob and in an image
DIGEST_BYTES = 32  # SHA-256

# ---- blob (PKWB)
BLOB_MAGIC = b"PKWB"
BLOB_FORMAT_VERSION = 2
# base_id, meta_id: the leading bytes of the base .tflite's and of the metadata JSON's SHA-256
BLOB_HEADER = Layout((("magic", "4s"), ("format_version", "H"), ("num_labels", "B"), ("num_thresholds", "B"),
                      ("total_size", "I"), ("lang", "8s"), ("model_size", "I"), ("base_id", "4s"), ("meta_id", "4s")))
BLOB_HEADER_SIZE = BLOB_HEADER.size
BLOB_VERSION_END = BLOB_HEADER["format_version"].end  # bytes a reader needs to name a blob's version
BLOB_PREFIX_SIZE = BLOB_HEADER_SIZE + DIGEST_BYTES  # header + integrity digest; the label table follows
BLOB_MIN_SIZE = BLOB_PREFIX_SIZE + CRC_BYTES
MIN_STREAM_BYTES = 4  # the range decoder's initial code word
BLOB_ID_BYTES = BLOB_HEADER["base_id"].size
LANG_BYTES = BLOB_HEADER["lang"].size
MAX_LABELS = 255
# The header bytes the integrity digest covers after the model, in order: the label and
# threshold counts, then the language.
DIGEST_HEADER_SPANS = {"counts": BLOB_HEADER.span("num_labels", "num_thresholds"), "lang": BLOB_HEADER.span("lang")}

# ---- flash image (PKWF)
FLASH_MAGIC = b"PKWF"
FLASH_FORMAT_VERSION = 2
FLASH_HEADER = Layout((("magic", "4s"), ("format_version", "H"), ("num_blobs", "H"), ("base_offset", "I"),
                       ("base_size", "I"), ("base_sha256", f"{DIGEST_BYTES}s")))
FLASH_ENTRY = Layout((("offset", "I"), ("size", "I"), ("lang", f"{LANG_BYTES}s")))
FLASH_HEADER_SIZE = FLASH_HEADER.size
FLASH_ENTRY_SIZE = FLASH_ENTRY.size
FLASH_ALIGN = 16  # TFLM wants the model 16-byte aligned
FLASH_CRC_ALIGN = 4  # the image's CRC follows the last item padded to this boundary

# ---- error names: Python's BlobError.code, C's PKWB_ERR_<NAME> (in this order, after PKWB_OK)
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
# The C API's caller errors (a NULL pointer, an output buffer smaller than model_size, a label
# index past num_labels): never a property of the blob bytes, so Python has no such code.
C_ONLY_ERROR_CODES = ("bad_argument",)

assert BLOB_HEADER_SIZE == 32 and FLASH_HEADER_SIZE == 48 and FLASH_ENTRY_SIZE == 16
assert len(BLOB_MAGIC) == BLOB_HEADER["magic"].size and len(FLASH_MAGIC) == FLASH_HEADER["magic"].size
