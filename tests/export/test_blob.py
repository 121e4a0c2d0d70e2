"""Blob (PKWB) and flash image (PKWF) byte format: round trips, every refusal, and a parser fuzz.

The bad-blob builders here write the bytes by hand from docs/BLOB_FORMAT.md (not through
encode_blob), so the encoder is checked against an independent reading of the spec too.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polykws.export.blob import (
    BLOB_HEADER_SIZE,
    ERROR_CODES,
    Blob,
    BlobError,
    apply_blob,
    changed_runs,
    decode_blob,
    decode_flash_image,
    encode_blob,
    encode_flash_image,
    merge_runs,
)
from polykws.core import PolykwsError


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def build_raw(
    *,
    base: bytes,
    target_sha: bytes | None = None,
    lang: bytes = b"uk",
    labels: list[bytes] = (b"yes", b"no"),
    meta: bytes = b"{}",
    patches: list[tuple[int, bytes]] = (),
    version: int = 1,
    header_size: int = 96,
    magic: bytes = b"PKWB",
    num_labels: int | None = None,
    model_size: int | None = None,
    raw_records: bytes | None = None,
    num_patches: int | None = None,
    fix_crc: bool = True,
) -> bytes:
    """A blob written straight from the spec's table; every field can be made wrong."""
    table = b"".join(bytes([len(x)]) + x for x in labels)
    body = _pad4(table + meta) if (BLOB_HEADER_SIZE % 4 == 0) else None
    if raw_records is None:
        raw_records = b"".join(struct.pack("<II", o, len(d)) + _pad4(d) for o, d in patches)
    body = body + raw_records
    total = BLOB_HEADER_SIZE + len(body) + 4
    if target_sha is None:
        t = bytearray(base)
        for o, d in patches:
            t[o : o + len(d)] = d
        target_sha = hashlib.sha256(bytes(t)).digest()
    header = struct.pack(
        "<4sHHI8s32s32sIHHI",
        magic,
        version,
        header_size,
        total,
        lang.ljust(8, b"\0"),
        hashlib.sha256(base).digest(),
        target_sha,
        len(base) if model_size is None else model_size,
        len(labels) if num_labels is None else num_labels,
        len(patches) if num_patches is None else num_patches,
        len(meta),
    )
    data = header + body
    return data + struct.pack("<I", zlib.crc32(data) if fix_crc else 0xDEADBEEF)


def recrc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


BASE = bytes(range(256)) * 8  # 2 KiB, deterministic


def _target() -> bytes:
    t = bytearray(BASE)
    t[100] ^= 0xFF
    t[103] ^= 0x01  # gap of 2 bytes: merged into one record
    t[1000:1004] = b"\x01\x02\x03\x04"
    t[2047] ^= 0x80  # last byte of the model
    return bytes(t)


def test_round_trip_and_independent_layout():
    target = _target()
    blob = encode_blob(BASE, target, "uk", ["нуль", "один"], {"method": "swr", "budget": 500})
    parsed = decode_blob(blob)
    assert parsed.lang == "uk" and parsed.labels == ("нуль", "один")
    assert parsed.meta == {"method": "swr", "budget": 500}
    assert parsed.base_sha256 == hashlib.sha256(BASE).hexdigest()
    assert parsed.target_sha256 == hashlib.sha256(target).hexdigest()
    assert [(p.offset, len(p.data)) for p in parsed.patches] == [(100, 4), (1000, 4), (2047, 1)]
    assert apply_blob(BASE, blob) == target
    # Byte-identical to a blob written by hand from the spec.
    hand = build_raw(
        base=BASE,
        labels=["нуль".encode(), "один".encode()],
        meta=json.dumps({"budget": 500, "method": "swr"}, separators=(",", ":"), sort_keys=True).encode(),
        patches=[(100, target[100:104]), (1000, target[1000:1004]), (2047, target[2047:2048])],
    )
    assert blob == hand
    assert len(blob) % 4 == 0 and struct.unpack_from("<I", blob, 8)[0] == len(blob)


def test_identical_models_give_an_empty_patch_list():
    blob = encode_blob(BASE, BASE, "en", ["a"], {})
    parsed = decode_blob(blob)
    assert parsed.patches == () and apply_blob(BASE, blob) == BASE


def test_encoding_is_deterministic():
    t = _target()
    assert encode_blob(BASE, t, "ar", ["x", "y"], {"b": 1, "a": 2}) == encode_blob(BASE, t, "ar", ["x", "y"], {"a": 2, "b": 1})


@pytest.mark.parametrize(
    "runs, expected",
    [
        ([(0, 1), (3, 4)], [(0, 4)]),  # one 4-byte record (12) beats two (24)
        ([(0, 4), (20, 24)], [(0, 4), (20, 24)]),  # a 16-byte gap costs more than a record header
        ([(0, 4), (12, 16)], [(0, 16)]),  # 8-byte gap: 24 == 12 + 12, merge (not larger)
        ([(0, 4), (13, 17)], [(0, 4), (13, 17)]),  # 9-byte gap: 28 > 24, keep apart
    ],
)
def test_merge_rule(runs, expected):
    assert merge_runs(runs) == expected


def test_changed_runs():
    a = bytes(10)
    b = bytearray(a)
    b[0] = 1
    b[5:7] = b"\x01\x01"
    b[9] = 1
    assert changed_runs(a, bytes(b)) == [(0, 1), (5, 7), (9, 10)]


# --------------------------------------------------------------------------------- refusals

GOOD_PATCHES = [(10, b"\x01\x02\x03"), (40, b"\x04")]


def _nonzero_meta_padding() -> bytes:
    # label table (1 + 2) + meta (2) = 5 bytes after the header: 3 padding bytes at 101..103.
    data = bytearray(build_raw(base=BASE, labels=[b"ab"], meta=b"{}"))
    assert data[101:104] == b"\0\0\0"
    data[102] = 7
    return recrc(bytes(data))


def _bad_cases() -> dict[str, list[tuple[str, bytes]]]:
    good = build_raw(base=BASE, patches=GOOD_PATCHES)
    cases: dict[str, list[tuple[str, bytes]]] = {code: [] for code in ERROR_CODES}
    cases["truncated"] += [
        ("shorter than header+CRC", good[:99]),
        ("cut at the end", good[:-1]),
        ("empty", b""),
        ("label runs past the end", recrc(build_raw(base=BASE, num_labels=3))),
        ("metadata longer than the blob", recrc(good[:92] + struct.pack("<I", 10_000) + good[96:])),
        ("patch count larger than the records", build_raw(base=BASE, patches=GOOD_PATCHES, num_patches=3)),
        ("patch length runs past the end", build_raw(base=BASE, raw_records=struct.pack("<II", 0, 1000) + b"\x01\0\0\0", num_patches=1)),
    ]
    cases["bad_magic"] += [("magic PKWX", build_raw(base=BASE, magic=b"PKWX")), ("tflite file", b"\x1c\0\0\0TFL3" + bytes(200))]
    cases["unsupported_version"] += [("version 2", build_raw(base=BASE, version=2)), ("version 0", build_raw(base=BASE, version=0))]
    cases["bad_size"] += [
        ("trailing byte", good + b"\0"),
        ("header_size 100", build_raw(base=BASE, header_size=100)),
        ("non-zero metadata padding", _nonzero_meta_padding()),
        ("non-zero record padding", build_raw(base=BASE, raw_records=struct.pack("<II", 0, 1) + b"\x01\x09\0\0", num_patches=1)),
        ("zero-length record", build_raw(base=BASE, raw_records=struct.pack("<II", 0, 0), num_patches=1)),
        ("unexplained bytes before the CRC", build_raw(base=BASE, raw_records=struct.pack("<II", 0, 1) + b"\x01\0\0\0" + bytes(4), num_patches=1)),
    ]
    cases["bad_crc"] += [("flipped payload byte", good[:105] + bytes([good[105] ^ 1]) + good[106:]), ("zero CRC", build_raw(base=BASE, fix_crc=False))]
    cases["bad_lang"] += [
        ("upper case", build_raw(base=BASE, lang=b"UK")),
        ("empty", build_raw(base=BASE, lang=b"")),
        ("not NUL-padded", build_raw(base=BASE, lang=b"uk\0x")),
        ("space", build_raw(base=BASE, lang=b"u k")),
    ]
    cases["bad_labels"] += [
        ("no labels", build_raw(base=BASE, labels=[])),
        ("empty label", build_raw(base=BASE, labels=[b"a", b""])),
        ("NUL in a label", build_raw(base=BASE, labels=[b"a\0b"])),
        ("invalid UTF-8", build_raw(base=BASE, labels=[b"\xff\xfe"])),
        ("256 labels", build_raw(base=BASE, labels=[b"a"] * 256, num_labels=256)),
    ]
    cases["overlapping_patches"] += [
        ("overlap", build_raw(base=BASE, patches=[(10, b"abcd"), (12, b"xy")])),
        ("unsorted", build_raw(base=BASE, patches=[(40, b"a"), (10, b"b")])),
        ("same offset twice", build_raw(base=BASE, patches=[(10, b"a"), (10, b"b")])),
    ]
    cases["out_of_range"] += [
        ("past the model end", build_raw(base=BASE, patches=[(len(BASE) - 1, b"ab")])),
        ("offset near 2^32", build_raw(base=BASE, patches=[(0xFFFFFFFF, b"a")])),
        ("model_size smaller than the patch", build_raw(base=BASE, patches=[(100, b"a")], model_size=50)),
    ]
    # Errors that need the base (rule 8): built well-formed, so they parse.
    cases["size_mismatch"] += [("base one byte short", build_raw(base=BASE, patches=GOOD_PATCHES, model_size=len(BASE) + 1))]
    other = bytes(reversed(BASE))
    cases["base_mismatch"] += [("another base of equal length", build_raw(base=other, patches=GOOD_PATCHES))]
    cases["target_mismatch"] += [("wrong target hash", build_raw(base=BASE, patches=GOOD_PATCHES, target_sha=bytes(32)))]
    return cases


BAD_CASES = [(code, name, data) for code, items in _bad_cases().items() for name, data in items]


def test_every_error_code_has_a_case():
    assert {code for code, _, _ in BAD_CASES} == set(ERROR_CODES)


@pytest.mark.parametrize("code, name, data", BAD_CASES, ids=[f"{c}:{n}" for c, n, _ in BAD_CASES])
def test_bad_blob_is_refused_with_its_name(code, name, data):
    with pytest.raises(BlobError) as info:
        apply_blob(BASE, data, source="test.blob")
    assert info.value.code == code, f"{name}: got {info.value.code} ({info.value})"
    assert "test.blob" in str(info.value)
    assert isinstance(info.value, PolykwsError)


def test_good_hand_built_blob_applies():
    blob = build_raw(base=BASE, patches=GOOD_PATCHES)
    out = apply_blob(BASE, blob)
    assert out[10:13] == b"\x01\x02\x03" and out[40] == 4 and out[:10] == BASE[:10]


def test_overlap_is_reported_before_out_of_range():
    # Patch 0 overlaps patch 1 and patch 1 is out of range: the overlap pass runs over all records first.
    data = build_raw(base=BASE, patches=[(10, b"abcd"), (12, b"x"), (len(BASE), b"z")])
    with pytest.raises(BlobError) as info:
        decode_blob(data)
    assert info.value.code == "overlapping_patches"


def test_encoder_refuses_bad_arguments():
    with pytest.raises(BlobError) as info:
        encode_blob(BASE, BASE + b"\0", "uk", ["a"], {})
    assert info.value.code == "size_mismatch"
    for lang in ("", "UK", "toolonglang", "u k"):
        with pytest.raises(BlobError) as info:
            encode_blob(BASE, BASE, lang, ["a"], {})
        assert info.value.code == "bad_lang"
    for labels in ([], ["a", ""], ["a\0"], ["x" * 256], ["a"] * 256):
        with pytest.raises(BlobError) as info:
            encode_blob(BASE, BASE, "uk", labels, {})
        assert info.value.code == "bad_labels"


# ---------------------------------------------------------------------------------- flash image


def _image_and_blobs():
    t1 = _target()
    t2 = bytearray(BASE)
    t2[5] ^= 1
    b1 = encode_blob(BASE, t1, "uk", ["a", "b"], {})
    b2 = encode_blob(BASE, bytes(t2), "ar", ["c"], {})
    return encode_flash_image(BASE, [b1, b2]), b1, b2


def test_flash_image_round_trip_and_alignment():
    img, b1, b2 = _image_and_blobs()
    fi = decode_flash_image(img)
    assert fi.base == BASE and fi.base_offset % 16 == 0
    assert [e.lang for e in fi.entries] == ["uk", "ar"]
    assert fi.blob_bytes(0) == b1 and fi.blob_bytes(1) == b2
    assert all(e.offset % 16 == 0 for e in fi.entries)
    assert fi.size == len(img) and len(img) % 4 == 0
    assert struct.unpack_from("<I", img, len(img) - 4)[0] == zlib.crc32(img[:-4])
    layout = fi.layout()
    assert layout["blobs"][1]["offset"] == fi.entries[1].offset and layout["base"]["size"] == len(BASE)
    assert apply_blob(fi.base, fi.blob_bytes(0)) == _target()


def test_flash_image_refusals():
    img, b1, _ = _image_and_blobs()

    def expect(code, data):
        with pytest.raises(BlobError) as info:
            decode_flash_image(data)
        assert info.value.code == code, str(info.value)

    expect("truncated", img[:40])
    expect("bad_magic", recrc(b"XKWF" + img[4:]))
    expect("unsupported_version", recrc(img[:4] + struct.pack("<H", 2) + img[6:]))
    expect("bad_crc", img[:-5] + bytes([img[-5] ^ 1]) + img[-4:])
    expect("bad_size", recrc(img[:8] + struct.pack("<I", 72) + img[12:]))  # unaligned base
    expect("out_of_range", recrc(img[:12] + struct.pack("<I", len(img)) + img[16:]))  # base past the end
    entry0 = 48
    expect("bad_lang", recrc(img[: entry0 + 8] + b"UK\0\0\0\0\0\0" + img[entry0 + 16 :]))
    expect("overlapping_patches", recrc(img[:entry0] + struct.pack("<I", 64) + img[entry0 + 4 :]))  # blob 0 on the base
    expect("base_mismatch", recrc(img[:16] + bytes(32) + img[48:]))
    # the table says "ar" for the uk blob
    expect("bad_lang", recrc(img[: entry0 + 8] + b"ar\0\0\0\0\0\0" + img[entry0 + 16 :]))
    with pytest.raises(BlobError) as info:
        encode_flash_image(bytes(reversed(BASE)), [b1])
    assert info.value.code in {"base_mismatch", "size_mismatch"}


# ----------------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_only_raise_blob_error(data):
    try:
        blob = decode_blob(data)
    except BlobError as exc:
        assert exc.code in ERROR_CODES
    else:
        assert isinstance(blob, Blob)


_GOOD = encode_blob(BASE, _target(), "uk", ["нуль", "один", "два"], {"k": "v"})


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(_GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=6),
    st.booleans(),
    st.integers(0, len(_GOOD)),
)
def test_fuzz_mutated_blob(edits, fix_crc, cut):
    data = bytearray(_GOOD)
    for pos, val in edits:
        data[pos] = val
    data = bytes(data[: max(cut, 0)] if cut < len(data) and cut % 7 == 0 else data)
    if fix_crc and len(data) >= 100:
        data = recrc(data)
    try:
        out = apply_blob(BASE, data)
    except BlobError as exc:
        assert exc.code in ERROR_CODES
    else:
        # Whatever got through is internally consistent: its hash is the one it promised.
        parsed = decode_blob(data)
        assert hashlib.sha256(out).hexdigest() == parsed.target_sha256 and len(out) == len(BASE)


@FUZZ
@given(
    st.binary(min_size=1, max_size=400),
    st.lists(st.tuples(st.integers(0, 399), st.binary(min_size=1, max_size=12)), max_size=8),
    st.from_regex(r"[a-z0-9_-]{1,8}", fullmatch=True),
    st.lists(st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1, max_size=20), min_size=1, max_size=12),
)
def test_fuzz_round_trip(base, edits, lang, labels):
    target = bytearray(base)
    for pos, chunk in edits:
        pos %= len(base)
        chunk = chunk[: len(base) - pos]
        target[pos : pos + len(chunk)] = chunk
    labels = [lb for lb in labels if 1 <= len(lb.encode()) <= 255] or ["x"]
    blob = encode_blob(base, bytes(target), lang, labels, {"n": len(edits)})
    parsed = decode_blob(blob)
    assert parsed.lang == lang and list(parsed.labels) == labels
    assert apply_blob(base, blob) == bytes(target)
    # Only changed bytes (plus merged gaps) are carried.
    assert parsed.patched_bytes <= max(len(base), 0) and all(p.end <= len(base) for p in parsed.patches)


_IMAGE = encode_flash_image(BASE, [_GOOD, encode_blob(BASE, BASE, "ar", ["x"], {})])


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(_IMAGE) - 1), st.integers(0, 255)), min_size=1, max_size=4), st.booleans())
def test_fuzz_mutated_flash_image(edits, fix_crc):
    data = bytearray(_IMAGE)
    for pos, val in edits:
        data[pos] = val
    data = recrc(bytes(data)) if fix_crc else bytes(data)
    try:
        image = decode_flash_image(data)
    except BlobError as exc:
        assert exc.code in ERROR_CODES
    else:
        # Accepted images are self-consistent: every blob applies to the base it carries.
        for i in range(len(image.entries)):
            apply_blob(image.base, image.blob_bytes(i))


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_flash_bytes(data):
    try:
        decode_flash_image(data)
    except BlobError as exc:
        assert exc.code in ERROR_CODES
