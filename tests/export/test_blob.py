"""Blob (PKWB format 2) and flash image (PKWF) byte format: round trips, every refusal, the patch
coder, and a structure-aware fuzz of the Python decoder.

Bad blobs are written field by field from docs/BLOB_FORMAT.md (`polykws.firmware.vectorbytes.raw_blob`
and `StreamWriter`), not through encode_blob, so the encoder is checked against an independent
reading of the spec too.
"""

from __future__ import annotations

import hashlib
import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polykws.core import PolykwsError
from polykws.core import patchcode as pc
from polykws.core import patchrecords
from polykws.export.blob import (
    BLOB_HEADER_SIZE,
    BLOB_PREFIX_SIZE,
    ERROR_CODES,
    BlobError,
    apply_blob,
    decode_blob,
    decode_flash_image,
    encode_blob,
    encode_flash_image,
    integrity_digest,
    meta_id,
)
from polykws.firmware.blobvectors import patch_bad, targeted_bad
from polykws.firmware.vectorbytes import raw_blob, recrc, v1_blob

BASE = bytes(range(256)) * 8  # 2 KiB, deterministic


def _target() -> bytes:
    t = bytearray(BASE)
    t[100] ^= 0xFF
    t[103] ^= 0x01
    t[1000:1004] = b"\x01\x02\x03\x04"
    t[2047] ^= 0x80  # last byte of the model
    return bytes(t)


def test_round_trip_and_independent_layout():
    target = _target()
    meta = {"method": "swr", "budget": 500}
    blob = encode_blob(BASE, target, "uk", ["нуль", "один"], meta)
    parsed = decode_blob(blob)
    assert parsed.lang == "uk" and parsed.labels == ("нуль", "один") and parsed.thresholds == b""
    assert parsed.meta_id == meta_id(meta) == hashlib.sha256(b'{"budget":500,"method":"swr"}').digest()[:4].hex()
    assert parsed.base_id == hashlib.sha256(BASE).digest()[:4].hex()
    assert apply_blob(BASE, blob) == target
    # Field by field from the spec: header, digest over model + counts + lang + labels, CRC.
    magic, version, nl, nt, total, lang, model_size = struct.unpack_from("<4sHBBI8sI", blob, 0)
    assert (magic, version, nl, nt, total, lang, model_size) == (b"PKWB", 2, 2, 0, len(blob), b"uk".ljust(8, b"\0"), len(BASE))
    table = b"".join(bytes([len(x.encode())]) + x.encode() for x in ("нуль", "один"))
    assert blob[BLOB_PREFIX_SIZE : BLOB_PREFIX_SIZE + len(table)] == table
    assert blob[BLOB_HEADER_SIZE:BLOB_PREFIX_SIZE] == hashlib.sha256(target + blob[6:8] + blob[12:20] + table).digest()
    assert struct.unpack_from("<I", blob, len(blob) - 4)[0] == zlib.crc32(blob[:-4])
    assert BLOB_HEADER_SIZE <= 32
    # The raw builder (spec reading) with the same stream gives the same bytes but for meta_id.
    stream = parsed.stream
    hand = raw_blob(base=BASE, target=target, stream=stream, lang=b"uk", labels=[x.encode() for x in ("нуль", "один")])
    assert hand[:28] == blob[:28] and hand[32:-4] == blob[32:-4]


def test_records_carry_exactly_the_changed_elements():
    """Every changed byte lies in a coded element, every coded element changes, nothing else is coded."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    regions = [(0, 2000, 1), (2000, 4000, 4), (4000, 5000, 1)]
    for trial in range(20):
        t = bytearray(base)
        for p in rng.choice(5000, int(rng.integers(1, 800)), replace=False):
            t[p] = int(rng.integers(0, 256))
        target = bytes(t)
        parsed = decode_blob(encode_blob(base, target, "lt", ["a"], regions=regions))
        coded = set()
        for r in parsed.records():
            assert r.width == (4 if 2000 <= r.start < 4000 else 1)
            for p in r.positions.tolist():
                at = r.start + r.width * p
                assert base[at : at + r.width] != target[at : at + r.width], f"element at {at} is coded but unchanged"
                coded.update(range(at, at + r.width))
        changed = {i for i in range(len(base)) if base[i] != target[i]}
        assert changed <= coded, f"changed bytes {sorted(changed - coded)[:5]} are not coded"
        assert len(coded) <= 4 * len(changed)


def test_identical_models_give_an_empty_stream_and_encoding_is_deterministic():
    blob = encode_blob(BASE, BASE, "en", ["a"], {})
    assert decode_blob(blob).records() == [] and apply_blob(BASE, blob) == BASE
    t = _target()
    assert encode_blob(BASE, t, "ar", ["x", "y"], {"b": 1, "a": 2}) == encode_blob(BASE, t, "ar", ["x", "y"], {"a": 2, "b": 1})


# ------------------------------------------------------------------------------- patch coder


def test_range_coder_numbers_round_trip():
    rng = random.Random(0)
    xs = [1, 2, 3, 2**31, 2**32 - 1] + [rng.randrange(1, 2**rng.randrange(1, 33)) for _ in range(2000)]
    enc = pc.RangeEncoder()
    probs = [pc.PROB_INIT] * pc.NUM_CONTEXTS
    for x in xs:
        pc.gamma_encode(enc, probs, pc.CTX_HDR, x)
    data = enc.finish()
    dec = pc.RangeDecoder(data)
    probs = [pc.PROB_INIT] * pc.NUM_CONTEXTS
    assert [pc.gamma_decode(dec, probs, pc.CTX_HDR) for _ in xs] == xs
    assert dec.pos == len(data)  # the decoder reads exactly the bytes the encoder wrote


def test_position_coding_picks_bitmap_when_dense_and_gaps_when_sparse():
    probs = [pc.PROB_INIT] * pc.NUM_CONTEXTS
    dense = pc.Record(0, 1, 1000, np.arange(0, 1000, 2, dtype=np.int64), np.ones(500, np.int64))
    sparse = pc.Record(0, 1, 1000, np.array([0, 400, 999], np.int64), np.ones(3, np.int64))
    assert pc.choose_mode(probs, dense) == pc.MODE_BITMAP
    assert pc.choose_mode(probs, sparse) == pc.MODE_GAPS
    # and the choice is the cheaper one: forcing the other mode costs more
    for rec, other in ((dense, pc.MODE_GAPS), (sparse, pc.MODE_BITMAP)):
        chosen = patchrecords._positions_price(list(probs), 1, pc.choose_mode(probs, rec), rec.span, rec.positions)
        forced = patchrecords._positions_price(list(probs), 1, other, rec.span, rec.positions)
        assert chosen < forced


def test_value_coding_picks_literals_for_a_retrained_tensor():
    """A re-trained head's bytes are unrelated to the base's: its values code cheaper as themselves."""
    rng = np.random.default_rng(1)
    base = rng.integers(-127, 128, 4000).astype(np.int8)
    retrained = np.clip(rng.normal(0, 12, 4000), -127, 127).astype(np.int8)
    small = (base.astype(int) + rng.choice([-1, 1], 4000)).clip(-128, 127).astype(np.int8)
    probs = [pc.PROB_INIT] * pc.NUM_CONTEXTS
    for target, want in ((retrained, pc.VALUE_LITERAL), (small, pc.VALUE_DELTA)):
        (rec,) = pc.plan_records(base.tobytes(), target.tobytes(), [])
        assert pc.choose_value_mode(probs, rec) == want
        (dec,) = pc.decode_records(pc.encode_records([rec]), 4000)
        assert dec.literal == (want == pc.VALUE_LITERAL)


def test_small_deltas_cost_less_than_a_byte():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, 20000, dtype=np.uint8)
    t = base.copy()
    idx = rng.choice(20000, 5000, replace=False)
    t[idx] = (t[idx].astype(int) + rng.choice([-2, -1, 1, 2], 5000)) & 0xFF
    n = pc.stream_bytes(base.tobytes(), t.tobytes(), [])
    bound = pc.entropy_bound_bytes(base.tobytes(), t.tobytes())
    assert n < 0.75 * 5000, f"{n} B for 5000 small deltas"
    assert bound["entropy_bytes"] <= n <= 1.1 * bound["entropy_bytes"]


def test_tflite_regions_match_the_schema_reader(int8_models_export):
    from polykws.export.tflite_graph import TfliteGraph

    model = int8_models_export
    g = TfliteGraph(model)
    want = set()
    for t in g.tensors:
        if t.data_span and t.data_span[1] > t.data_span[0]:
            want.add((*t.data_span, 4 if t.type_name in ("FLOAT32", "INT32", "INT64") else 1))
        for span in (t.scale_span, t.zero_point_span):
            if span and span[1] > span[0]:
                want.add((*span, 4))
    got = set(pc.tflite_regions(model))
    assert got == want and len(want) >= 4
    assert pc.tflite_regions(b"\0" * 8 + b"garbage") == []


@pytest.fixture(scope="module")
def int8_models_export():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("fw_conftest", Path(__file__).parents[1] / "firmware" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_int8_fc_model(seed=1)


# --------------------------------------------------------------------------------- refusals

_RNG = random.Random(7)
_GOOD_BASE = bytes(_RNG.getrandbits(8) for _ in range(3000))
_GOOD_TARGET = bytearray(_GOOD_BASE)
for _p in (5, 6, 700, 2999):
    _GOOD_TARGET[_p] ^= 0x21
_GOOD = encode_blob(_GOOD_BASE, bytes(_GOOD_TARGET), "en", ["yes", "no", "up"], {"k": "v"})
_CASES = [(n.split("__")[0], n, b, base) for n, b, base in targeted_bad(random.Random(1), _GOOD, _GOOD_BASE) + patch_bad(random.Random(2), _GOOD_BASE)]
BAD_CASES = [c for c in _CASES if "__" in c[1] and c[0] in ERROR_CODES]


def test_every_error_code_but_image_overlap_has_a_case():
    assert {code for code, *_ in BAD_CASES} == set(ERROR_CODES) - {"overlapping_patches"}


@pytest.mark.parametrize("code, name, data, base", BAD_CASES, ids=[c[1] for c in BAD_CASES])
def test_bad_blob_is_refused_with_its_name(code, name, data, base):
    with pytest.raises(BlobError) as info:
        apply_blob(base, data, source="test.blob")
    assert info.value.code == code, f"{name}: got {info.value.code} ({info.value})"
    assert "test.blob" in str(info.value)
    assert isinstance(info.value, PolykwsError)


def test_v1_blob_is_refused_as_unsupported_version():
    with pytest.raises(BlobError) as info:
        decode_blob(v1_blob(BASE, _target()))
    assert info.value.code == "unsupported_version" and "format version 1" in str(info.value)


def test_swapped_labels_are_refused_even_with_a_fresh_crc():
    """The CRC is recomputable; the integrity digest covers the label table."""
    blob = bytearray(encode_blob(BASE, _target(), "uk", ["ab", "cd"], {}))
    at = BLOB_PREFIX_SIZE
    blob[at + 1 : at + 3], blob[at + 4 : at + 6] = b"cd", b"ab"
    forged = recrc(bytes(blob))
    assert decode_blob(forged).labels == ("cd", "ab")  # parses ...
    with pytest.raises(BlobError) as info:
        apply_blob(BASE, forged)  # ... but never applies
    assert info.value.code == "target_mismatch"


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
    with pytest.raises(BlobError) as info:
        encode_blob(BASE, BASE, "uk", ["a", "b"], {}, thresholds=b"\x01")
    assert info.value.code == "bad_labels"


# ---------------------------------------------------------------------------------- flash image


def _image_and_blobs():
    t2 = bytearray(BASE)
    t2[5] ^= 1
    b1 = encode_blob(BASE, _target(), "uk", ["a", "b"], {})
    b2 = encode_blob(BASE, bytes(t2), "ar", ["c"], {})
    return encode_flash_image(BASE, [b1, b2]), b1, b2


def test_flash_image_round_trip_and_alignment():
    img, b1, b2 = _image_and_blobs()
    fi = decode_flash_image(img)
    assert fi.base == BASE and fi.base_offset % 16 == 0
    assert [e.lang for e in fi.entries] == ["uk", "ar"]
    assert fi.blob_bytes(0) == b1 and fi.blob_bytes(1) == b2
    assert all(e.offset % 16 == 0 for e in fi.entries)
    assert fi.size == len(img) and len(img) % 4 == 0 and struct.unpack_from("<H", img, 4)[0] == 2
    assert struct.unpack_from("<I", img, len(img) - 4)[0] == zlib.crc32(img[:-4])
    assert apply_blob(fi.base, fi.blob_bytes(0)) == _target()


def test_flash_image_refusals():
    img, b1, _ = _image_and_blobs()

    def expect(code, data):
        with pytest.raises(BlobError) as info:
            decode_flash_image(data)
        assert info.value.code == code, str(info.value)

    expect("truncated", img[:40])
    expect("bad_magic", recrc(b"XKWF" + img[4:]))
    expect("unsupported_version", recrc(img[:4] + struct.pack("<H", 1) + img[6:]))
    expect("bad_crc", img[:-5] + bytes([img[-5] ^ 1]) + img[-4:])
    expect("bad_size", recrc(img[:8] + struct.pack("<I", 72) + img[12:]))
    expect("out_of_range", recrc(img[:12] + struct.pack("<I", len(img)) + img[16:]))
    entry0 = 48
    expect("bad_lang", recrc(img[: entry0 + 8] + b"UK\0\0\0\0\0\0" + img[entry0 + 16 :]))
    expect("overlapping_patches", recrc(img[:entry0] + struct.pack("<I", 64) + img[entry0 + 4 :]))
    expect("base_mismatch", recrc(img[:16] + bytes(32) + img[48:]))
    expect("bad_lang", recrc(img[: entry0 + 8] + b"ar\0\0\0\0\0\0" + img[entry0 + 16 :]))
    with pytest.raises(BlobError) as info:
        encode_flash_image(bytes(reversed(BASE)), [b1])
    assert info.value.code in {"base_mismatch", "size_mismatch"}


# ----------------------------------------------------------------------------------- fuzzing
#
# Structure-aware: every input keeps a valid header and CRC (total_size and CRC recomputed), so
# the label table, thresholds and the patch stream's record decoder are what gets exercised. The
# property: refused with a name from a stage the header already passed, or a model the blob's own
# integrity digest covers, and exactly the target while the digest and labels are the good ones
# (a fuzzer that copies a computed digest into its input makes a valid blob: a digest is an
# integrity check, not a signature).

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_FUZZ_BASE = _GOOD_BASE
_FUZZ_TARGET = bytes(_GOOD_TARGET)
_FUZZ_GOOD = _GOOD
_GOOD_PARSED = decode_blob(_GOOD)
_STREAM_AT = len(_GOOD) - 4 - len(_GOOD_PARSED.stream)
# Once magic, version, total_size and CRC are valid, these are the only names left.
_AFTER_HEADER = set(ERROR_CODES) - {"bad_magic", "unsupported_version", "bad_crc", "overlapping_patches"}


def _fix(data: bytes) -> bytes:
    out = bytearray(data)
    struct.pack_into("<I", out, 8, len(out) + 4)
    out += b"\0\0\0\0"
    return recrc(bytes(out))


def _check(data: bytes) -> str:
    """'ok', or the refusal's name; 'stream:<name>' when the patch stream's decoder refused."""
    try:
        out = apply_blob(_FUZZ_BASE, data)
    except BlobError as exc:
        assert exc.code in _AFTER_HEADER, f"{exc.code} after a valid header and CRC"
        return f"stream:{exc.code}" if "patch stream" in str(exc) else exc.code
    parsed = decode_blob(data)
    assert integrity_digest(out, data[:BLOB_HEADER_SIZE], parsed.covered).hex() == parsed.digest
    if parsed.digest == _GOOD_PARSED.digest and parsed.covered == _GOOD_PARSED.covered:
        assert out == _FUZZ_TARGET, "an accepted blob with the good digest and labels produced another model"
    return "ok"


@FUZZ
@given(st.binary(min_size=0, max_size=300))
def test_fuzz_random_stream_after_valid_header(stream):
    """Random bytes as the patch stream, behind a valid header, labels and CRC."""
    code = _check(_fix(_FUZZ_GOOD[:_STREAM_AT] + stream))
    if len(stream) >= 4:
        assert code.startswith("stream:") or code == "target_mismatch", code


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6), st.integers(0, 8))
def test_fuzz_mutated_stream_and_labels(edits, cut):
    body = bytearray(_FUZZ_GOOD[:-4])
    for pos, val in edits:
        body[6 + pos % (len(body) - 6)] = val  # anything past magic and version: counts, lang, labels, stream
    data = _fix(bytes(body[: len(body) - cut]))
    _check(data)


def test_fuzz_reaches_the_record_decoder():
    """The random-stream fuzz is only worth its time if most inputs get to the patch stream."""
    rng = random.Random(5)
    codes = []
    for _ in range(300):
        m = bytearray(_FUZZ_GOOD[:-4])
        for _ in range(rng.randint(1, 3)):
            m[rng.randrange(_STREAM_AT, len(m))] = rng.getrandbits(8)
        codes.append(_check(_fix(bytes(m))))
    # "ok": a change in the coder's final flush bytes that decodes to the same model
    in_stream = sum(c.startswith("stream:") or c in ("target_mismatch", "ok") for c in codes)
    assert in_stream == len(codes)
    # and the decoder's different refusals are all reached, not just the first one
    assert {"stream:out_of_range", "stream:truncated", "stream:bad_size", "target_mismatch"} <= set(codes), set(codes)


@FUZZ
@given(
    st.binary(min_size=1, max_size=400),
    st.lists(st.tuples(st.integers(0, 399), st.binary(min_size=1, max_size=12)), max_size=8),
    st.from_regex(r"[a-z0-9_-]{1,8}", fullmatch=True),
    st.lists(st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1, max_size=20), min_size=1, max_size=12),
    st.booleans(),
)
def test_fuzz_round_trip(base, edits, lang, labels, typed):
    target = bytearray(base)
    for pos, chunk in edits:
        pos %= len(base)
        chunk = chunk[: len(base) - pos]
        target[pos : pos + len(chunk)] = chunk
    labels = [lb for lb in labels if 1 <= len(lb.encode()) <= 255] or ["x"]
    regions = [(0, len(base) // 8 * 4, 4)] if typed else []
    thresholds = bytes(range(len(labels))) if typed else b""
    blob = encode_blob(base, bytes(target), lang, labels, {"n": len(edits)}, thresholds=thresholds, regions=regions)
    parsed = decode_blob(blob)
    assert parsed.lang == lang and list(parsed.labels) == labels and parsed.thresholds == thresholds
    assert apply_blob(base, blob) == bytes(target)


_IMAGE = encode_flash_image(_FUZZ_BASE, [_FUZZ_GOOD, encode_blob(_FUZZ_BASE, _FUZZ_BASE, "ar", ["x"], {})])


_IMAGE_BLOB0 = decode_flash_image(_IMAGE).entries[0]


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(_IMAGE) - 5), st.integers(0, 255)), min_size=1, max_size=4))
def test_fuzz_mutated_flash_image(edits):
    """Mutations behind recomputed CRCs (blob 0's and the image's): accepted images apply every
    blob to exactly its target."""
    data = bytearray(_IMAGE)
    for pos, val in edits:
        data[pos] = val
    e = _IMAGE_BLOB0
    data[e.offset : e.offset + e.size] = recrc(bytes(data[e.offset : e.offset + e.size]))
    try:
        image = decode_flash_image(recrc(bytes(data)))
    except BlobError as exc:
        assert exc.code != "bad_crc" or "blob 1" in str(exc)
        return
    for i in range(len(image.entries)):
        try:
            out = apply_blob(image.base, image.blob_bytes(i))
        except BlobError:
            continue
        assert out in (_FUZZ_TARGET, _FUZZ_BASE)
