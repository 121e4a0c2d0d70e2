"""Flash-image cases for the C blob parser's test vectors: a good image, targeted bad images
for every image error name in docs/BLOB_FORMAT.md, seeded random mutations, and language
switches."""

from __future__ import annotations

import hashlib
import random
import struct

from polykws.export.blob import (
    BLOB_MIN_SIZE,
    BLOB_PREFIX_SIZE,
    FLASH_ENTRY_SIZE,
    FLASH_HEADER_SIZE,
    decode_blob,
    encode_blob,
    encode_flash_image,
)
from polykws.firmware.vectorbytes import patched_model, random_model, recrc, set_field

def image_cases(rng: random.Random) -> list[tuple[str, bytes]]:
    base = random_model(rng, 9_000)
    langs = ["en", "lt", "uk"]
    blobs = [encode_blob(base, patched_model(rng, base, sorted(rng.sample(range(len(base)), 50 + 20 * i))), lang,
                         ["_silence_", "_unknown_", f"kw_{lang}"], {"lang": lang}) for i, lang in enumerate(langs)]
    good = encode_flash_image(base, blobs)
    cases = [("image_good_3", good), ("image_good_0_blobs", encode_flash_image(base, []))]
    num = 3
    table_end = FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * num
    base_off = struct.unpack_from("<I", good, 8)[0]
    entry = lambda i: FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * i  # noqa: E731
    cases += [
        ("truncated__image_51", good[:51]),
        ("bad_magic__image", recrc(b"PKWX" + good[4:])),
        ("unsupported_version__image_v1", recrc(set_field(good, 4, "<H", 1))),
        ("unsupported_version__image_v3", recrc(set_field(good, 4, "<H", 3))),
        ("truncated__image_table_past_end", recrc(set_field(good, 6, "<H", 0xFFFF))),
        ("bad_crc__image", good[:-4] + b"\0\0\0\0"),
        ("bad_size__image_base_unaligned", recrc(set_field(good, 8, "<I", base_off + 4))),
        ("bad_size__image_base_inside_table", recrc(set_field(good, 8, "<I", table_end - 16))),
        ("out_of_range__image_base_zero_size", recrc(set_field(good, 12, "<I", 0))),
        ("out_of_range__image_base_past_end", recrc(set_field(good, 12, "<I", len(good)))),
        ("bad_lang__image_entry", recrc(bytearray(good[: entry(1) + 8]) + b"LT\0\0\0\0\0\0" + good[entry(1) + 16 :])),
        ("bad_size__image_entry_unaligned", recrc(set_field(good, entry(2), "<I", struct.unpack_from("<I", good, entry(2))[0] + 8))),
        ("out_of_range__image_entry_small", recrc(set_field(good, entry(0) + 4, "<I", BLOB_MIN_SIZE - 1))),
        ("out_of_range__image_entry_past_end", recrc(set_field(good, entry(2) + 4, "<I", 1 << 20))),
        ("overlapping_patches__image_entry_overlaps_base", recrc(set_field(good, entry(0), "<I", base_off))),
        ("overlapping_patches__image_entries_swapped", recrc(_swap_entries(good, 0, 1))),
    ]
    m = bytearray(good)
    m[base_off + 5] ^= 0x10
    cases.append(("base_mismatch__image_base", recrc(m)))
    m = bytearray(good)
    m[entry(1) + 8 : entry(1) + 16] = b"xx\0\0\0\0\0\0"
    cases.append(("bad_lang__image_table_vs_blob", recrc(m)))
    m = bytearray(good)
    off1 = struct.unpack_from("<I", good, entry(1))[0]
    m[off1] ^= 0xFF  # blob 1's magic
    cases.append(("bad_magic__image_blob", recrc(m)))
    other_base = bytes(reversed(base))
    foreign = encode_blob(other_base, other_base, "lt", ["a"], {})
    cases.append(("base_mismatch__image_blob_other_base", _image_with(base, [blobs[0], foreign, blobs[2]])))
    small_base = base[:-16]
    cases.append(("size_mismatch__image_blob_other_size", _image_with(base, [blobs[0], encode_blob(small_base, small_base, "lt", ["a"], {})])))
    for i, data in enumerate(_image_mutations(rng, good, 60)):
        cases.append((f"image_mutation_{i:03d}", data))
    return cases


def switch_cases(rng: random.Random) -> list[tuple[str, bytes, list[str]]]:
    """Language switches, with a blob whose labels were swapped behind a fresh CRC in the middle."""
    base = random_model(rng, 6_000)
    # Each language its own thresholds (en none): switching language must switch them.
    thresholds = {"en": b"", "uk": bytes([10, 20, 255]), "lt": bytes([200, 100, 255])}
    blobs = {lang: encode_blob(base, patched_model(rng, base, sorted(rng.sample(range(len(base)), 40))), lang,
                               [f"{lang}_up", f"{lang}_dn", "_silence_"], {}, thresholds=thresholds[lang]) for lang in ("en", "uk", "lt")}
    forged = bytearray(blobs["uk"])
    at = BLOB_PREFIX_SIZE
    n0 = forged[at]
    first, second = bytes(forged[at + 1 : at + 1 + n0]), bytes(forged[at + 2 + n0 : at + 2 + n0 + forged[at + 1 + n0]])
    assert len(first) == len(second)
    forged[at + 1 : at + 1 + n0], forged[at + 2 + n0 : at + 2 + n0 + len(second)] = second, first
    good = encode_flash_image(base, list(blobs.values()))
    bad = _image_with(base, [blobs["en"], recrc(forged), blobs["lt"]])
    return [
        ("switch_good", good, ["en", "uk", "base", "lt", "en"]),
        ("switch_refused_keeps_nothing", bad, ["en", "uk", "lt", "uk", "base", "xx", "toolonglang"]),
    ]


def _swap_entries(image: bytes, a: int, b: int) -> bytearray:
    m = bytearray(image)
    ea, eb = FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * a, FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * b
    m[ea : ea + 16], m[eb : eb + 16] = image[eb : eb + 16], image[ea : ea + 16]
    return m


def _image_with(base: bytes, blobs: list[bytes]) -> bytes:
    """A flash image laid out like encode_flash_image's, without its checks (for foreign blobs)."""
    table_end = FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * len(blobs)
    base_off = (table_end + 15) // 16 * 16
    pos = base_off + len(base)
    items = []
    for b in blobs:
        off = (pos + 15) // 16 * 16
        items.append((off, b))
        pos = off + len(b)
    img = bytearray((pos + 3) // 4 * 4)
    struct.pack_into("<4sHHII32s", img, 0, b"PKWF", 2, len(blobs), base_off, len(base), hashlib.sha256(base).digest())
    img[base_off : base_off + len(base)] = base
    for i, (off, b) in enumerate(items):
        lang = decode_blob(b).lang.encode().ljust(8, b"\0")
        struct.pack_into("<II8s", img, FLASH_HEADER_SIZE + FLASH_ENTRY_SIZE * i, off, len(b), lang)
        img[off : off + len(b)] = b
    return recrc(bytes(img) + b"\0\0\0\0")


def _image_mutations(rng: random.Random, good: bytes, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        m = bytearray(good)
        if rng.random() < 0.5:
            pos = rng.randrange(0, FLASH_HEADER_SIZE + 3 * FLASH_ENTRY_SIZE)  # header and table
        else:
            pos = rng.randrange(len(m) - 4)
        m[pos] ^= 1 << rng.randrange(8)
        data = bytes(m)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        if len(data) >= 4 and rng.random() < 0.8:
            data = recrc(data)
        out.append(data)
    return out
