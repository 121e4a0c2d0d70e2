"""Blob cases for the C blob parser's test vectors: valid blobs across the format's corners,
targeted bad blobs for every blob error name in docs/BLOB_FORMAT.md (each re-CRC'd so the
intended rule is the one that fires), bad patch streams, and seeded random mutations."""

from __future__ import annotations

import random
import struct

from polykws.core.patchcode import (
    C4_DERIVED,
    CONTEXTS_BY_WIDTH,
    CTX_HDR,
    CTX_WIDTH,
    encode_records,
    plan_records,
)
from polykws.export.blob import BLOB_HEADER_SIZE, BLOB_PREFIX_SIZE, apply_blob, encode_blob
from polykws.firmware.vectorbytes import (
    StreamWriter,
    blob_layout,
    patched_model,
    random_model,
    raw_blob,
    recrc,
    set_field,
    v1_blob,
)

def good_cases(rng: random.Random) -> list[tuple[str, bytes, bytes, str, list[str], dict]]:
    """(name, base, target, lang, labels, meta) for valid blobs across the format's corners."""
    cases = []
    base = random_model(rng, 12_000)
    labels = ["_silence_", "_unknown_", "yes", "no", "up", "down"]
    cases.append(("few_bytes", base, patched_model(rng, base, [100, 101, 5000]), "en", labels, {"method": "swr"}))
    cases.append(("first_and_last_byte", base, patched_model(rng, base, [0, len(base) - 1]), "lt", labels, {}))
    cases.append(("no_patches", base, base, "uk", labels, {"note": "identical to base"}))
    cases.append(("every_byte", base, bytes((b + 1) & 0xFF for b in base), "ar", labels, {}))
    scattered = sorted(rng.sample(range(len(base)), 700))
    cases.append(("scattered_700", base, patched_model(rng, base, scattered), "bn", labels, {"budget_params": 700}))
    runs = [p for s in rng.sample(range(0, len(base) - 64, 97), 40) for p in range(s, s + rng.randrange(1, 40))]
    cases.append(("runs_odd_lengths", base, patched_model(rng, base, sorted(set(runs))), "gu", labels, {}))
    for residue in range(4):
        # metadata lengths hitting every padding residue before the patch records
        meta = {"k": "x" * (10 + residue)}
        cases.append((f"meta_pad_{residue}", base, patched_model(rng, base, [7 + residue]), "en", labels, meta))
    cases.append(("utf8_labels", base, patched_model(rng, base, [42]), "uk", ["_silence_", "так", "ні", "نعم", "হ্যাঁ", "હા"], {}))
    cases.append(("max_labels_and_lang", base, patched_model(rng, base, [3]), "x_y-z123", [f"w{i}" for i in range(255)], {}))
    cases.append(("label_255_bytes", base, patched_model(rng, base, [9]), "en", ["a" * 255, "b"], {}))
    big = random_model(rng, 46_000)  # about a DS-CNN-S int8 .tflite
    cases.append(("dscnn_s_sized", big, patched_model(rng, big, sorted(rng.sample(range(len(big)), 3000))), "lt", labels, {}))
    return cases


def targeted_bad(rng: random.Random, good: bytes, base: bytes) -> list[tuple[str, bytes, bytes]]:
    """(name, blob, base) each aimed at one rule of BLOB_FORMAT.md."""
    lay = blob_layout(good)
    v: list[tuple[str, bytes, bytes]] = []
    # 1-4: sizes, magic, version
    v.append(("truncated__under_6", good[:5], base))
    v.append(("truncated__empty", b"", base))
    v.append(("truncated__under_68", good[:67], base))
    v.append(("truncated__cut_last_byte", good[:-1], base))
    v.append(("bad_size__extra_byte", good + b"\0", base))
    v.append(("truncated__total_huge", recrc(set_field(good, 8, "<I", 0xFFFFFFFF)), base))
    v.append(("bad_magic__pkwc", recrc(b"PKWC" + good[4:]), base))
    v.append(("bad_magic__lowercase", recrc(b"pkwb" + good[4:]), base))
    v.append(("unsupported_version__0", recrc(set_field(good, 4, "<H", 0)), base))
    v.append(("unsupported_version__3", recrc(set_field(good, 4, "<H", 3)), base))
    target = apply_blob(base, good)
    v.append(("unsupported_version__v1_blob", v1_blob(base, target), base))
    v.append(("unsupported_version__v1_short", v1_blob(base, target)[:20], base))
    # 5
    flipped = bytearray(good)
    flipped[BLOB_PREFIX_SIZE + 3] ^= 0x01
    v.append(("bad_crc__body_bit", bytes(flipped), base))
    v.append(("bad_crc__stored", good[:-4] + bytes(b ^ 0xFF for b in good[-4:]), base))
    # 6: lang
    for nm, lang in [("empty", b"\0" * 8), ("upper", b"EN\0\0\0\0\0\0"), ("not_nul_padded", b"u\0k\0\0\0\0\0"),
                     ("space", b"e n\0\0\0\0\0"), ("non_ascii", b"\xc3\xa9\0\0\0\0\0\0"), ("dot", b"en.\0\0\0\0\0")]:
        m = bytearray(good)
        m[12:20] = lang
        v.append((f"bad_lang__{nm}", recrc(m), base))
    # labels and thresholds
    v.append(("bad_labels__zero_count", recrc(set_field(good, 6, "<B", 0)), base))
    v.append(("bad_labels__thresholds_not_one_per_label", recrc(set_field(good, 7, "<B", 1)), base))
    m = bytearray(good)
    m[lay["labels"]] = 0
    v.append(("bad_labels__empty_label", recrc(m), base))
    for nm, raw in [("nul", b"a\0"), ("overlong", b"\xc0\x80"), ("surrogate", b"\xed\xa0\x80"),
                    ("f5", b"\xf5\x80\x80\x80"), ("cut_multibyte", b"a\xd0"), ("lone_continuation", b"\x80a"),
                    ("above_10ffff", b"\xf4\x90\x80\x80")]:
        v.append((f"bad_labels__{nm}", raw_blob(base=base, target=target, labels=[raw, b"no"]), base))
    v.append(("labels_count_past_table", recrc(set_field(good, 6, "<B", 255)), base))
    v.append(("truncated__label_past_end", raw_blob(base=base, labels=[b"abc"], num_labels=2, stream=b""), base))
    v.append(("truncated__thresholds_past_end", raw_blob(base=base, labels=[b"a"] * 255, num_labels=255, num_thresholds=255, stream=b""), base))
    v.append(("truncated__stream_under_4", raw_blob(base=base, stream=b"\0\0\0"), base))
    v.append(("truncated__no_stream", raw_blob(base=base, stream=b""), base))
    v.append(("bad_size__model_size_2g", raw_blob(base=base, model_size=0x80000000), base))
    # the digest covers labels, language and thresholds: each changed alone is refused
    v.append(("target_mismatch__labels_swapped", raw_blob(base=base, target=target, labels=[b"no", b"yes"],
                                                          digest=_digest_of(raw_blob(base=base, target=target))), base))
    with_thr = raw_blob(base=base, target=target, thresholds=b"\x80\x90")
    v.append(("good_thresholds", with_thr, base))
    m = bytearray(with_thr)
    m[blob_layout(with_thr)["thresholds"]] ^= 1
    v.append(("target_mismatch__threshold_changed", recrc(m), base))
    m = bytearray(good)
    m[12:14] = b"fr"
    v.append(("target_mismatch__lang_changed", recrc(m), base))
    return v


def _digest_of(blob: bytes) -> bytes:
    return blob[BLOB_HEADER_SIZE:BLOB_PREFIX_SIZE]


def patch_bad(rng: random.Random, base: bytes) -> list[tuple[str, bytes, bytes]]:
    """Patch-stream rules and the apply-time errors, built with hand-written streams."""
    v = []
    n = len(base)
    target = patched_model(rng, base, [10, 20, 30])
    good = encode_blob(base, target, "en", ["a", "b"], {})

    def blob(stream: bytes, **kw) -> bytes:
        return raw_blob(base=base, target=target, stream=stream, **kw)

    def one(skip: int, width: int, span: int, mode: int, items: list[tuple[int, int]], count: int = 1, literal: int = 0) -> bytes:
        w = StreamWriter().number(CTX_HDR, count + 1)
        bitmap, count_ctx, gap = w.record(skip, width, span, mode, literal)
        if mode == 0:
            w.number(count_ctx, len(items))
            prev = -1
            for p, d in items:
                w.number(gap, p - prev).value(width, d, literal)
                prev = p
        else:
            changed = dict(items)
            prev = 0
            for p in range(span):
                b = 1 if p in changed else 0
                w.bit(bitmap + prev, b)
                if b:
                    w.value(width, changed[p], literal)
                prev = b
        return w.finish()

    v.append(("out_of_range__record_end", blob(one(n - 1, 1, 2, 0, [(0, 1)])), base))
    v.append(("out_of_range__record_width4_end", blob(one(n - 4, 4, 2, 0, [(0, 1)])), base))
    v.append(("out_of_range__record_huge_skip", blob(one(0xFFFFFFF0, 1, 1, 0, [(0, 1)])), base))
    v.append(("out_of_range__span_huge", blob(one(0, 4, 0xFFFFFFFF, 0, [(0, 1)])), base))
    v.append(("out_of_range__position_past_span", blob(one(10, 1, 3, 0, [(0, 1), (3, 1)])), base))
    v.append(("truncated__more_records_than_coded", blob(one(10, 1, 1, 0, [(0, 1)], count=5)), base))
    v.append(("truncated__stream_cut", blob(encode_records(plan_records(base, target))[:-3]), base))
    v.append(("bad_size__stream_trailing_bytes", blob(encode_records(plan_records(base, target)) + b"\0\0"), base))
    v.append(("target_mismatch__stream_other_change", blob(one(10, 1, 1, 0, [(0, 5)])), base))
    v.append(("target_mismatch__width4_wraps", blob(one(8, 4, 2, 1, [(0, -1), (1, 0x7FFFFFFF)])), base))
    v.append(("target_mismatch__bitmap_record", blob(one(0, 1, 40, 1, [(3, 7), (39, -128)])), base))
    v.append(("target_mismatch__literal_bytes", blob(one(0, 1, 40, 0, [(3, 0), (39, -128)], literal=1)), base))
    v.append(("target_mismatch__literal_words", blob(one(8, 4, 3, 1, [(0, 0), (2, -5), (1, 1 << 31)], literal=1)), base))
    v.append(("good_literal_rewrite", raw_blob(base=base, target=_literal_target(base), stream=one(8, 1, 3, 0, [(0, 0), (1, -3), (2, 127)], literal=1)), base))
    v.append(("good_empty_stream", raw_blob(base=base, stream=StreamWriter().number(CTX_HDR, 1).finish()), base))

    def derived(skip: int, span: int, back: int, mult: int, items: list[tuple[int, int]], count: int = 1, cut: int = 0) -> bytes:
        w = StreamWriter().number(CTX_HDR, count + 1)
        w.number(CTX_HDR, skip + 1).bit(CTX_WIDTH, 1).number(CTX_HDR, span).bit(C4_DERIVED, 1).number(CTX_HDR, back)
        for i in range(31, -1 + cut, -1):
            w.enc.direct((mult >> i) & 1)
        if cut:
            return w.finish()
        _, _, bitmap, count_ctx, gap = CONTEXTS_BY_WIDTH[4]
        w.bit(CONTEXTS_BY_WIDTH[4][0], 0).number(count_ctx, len(items))
        prev = -1
        for p, d in items:
            w.number(gap, p - prev).value(4, d, 1)
            prev = p
        return w.finish()

    one_f = 0x3F800000  # 1.0f: the reference words themselves
    v.append(("out_of_range__derived_ref_before_model", blob(derived(8, 2, 3, one_f, [(0, 0)])), base))
    v.append(("out_of_range__derived_ref_overlaps_record", blob(derived(40, 8, 4, one_f, [(0, 0)])), base))
    v.append(("target_mismatch__derived_copy", blob(derived(40, 4, 8, one_f, [(0, 0), (3, 5)])), base))
    v.append(("target_mismatch__derived_nan", blob(derived(40, 4, 8, 0x7F800001, [(1, 0), (2, -1)])), base))
    v.append(("target_mismatch__derived_inf_times_zero", blob(derived(40, 4, 8, 0x7F800000, [(0, 0)])), base))
    v.append(("truncated__derived_multiplier_cut", blob(derived(40, 4, 8, one_f, [], cut=20)), base))
    v.append(("size_mismatch__short_base", good, base[:-1]))
    v.append(("size_mismatch__long_base", good, base + b"\0"))
    other = bytearray(base)
    other[0] ^= 0xFF
    v.append(("base_mismatch__other_base", good, bytes(other)))
    m = bytearray(good)
    m[40] ^= 0x01
    v.append(("target_mismatch__digest", recrc(m), base))
    v.append(("size_mismatch__model_size_field", raw_blob(base=base, target=target, model_size=n + 16), base))
    return v


def _literal_target(base: bytes) -> bytes:
    t = bytearray(base)
    t[8:11] = bytes([0, 256 - 3, 127])
    return bytes(t)


def blob_mutations(rng: random.Random, good: bytes, count: int) -> list[bytes]:
    """Seeded random damage; most re-CRC'd so the later rules (and the patch stream) are reached."""
    out = []
    stream_at = blob_layout(good)["stream"]
    for _ in range(count):
        m = bytearray(good)
        kind = rng.randrange(7)
        if kind == 0:  # flip 1-3 bytes anywhere
            for _ in range(rng.randint(1, 3)):
                m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
        elif kind == 1:  # rewrite a header field with a random or boundary value
            off, fmt = rng.choice([(4, "<H"), (6, "<B"), (7, "<B"), (8, "<I"), (20, "<I")])
            bound = {"<B": 0xFF, "<H": 0xFFFF, "<I": 0xFFFFFFFF}[fmt]
            val = rng.choice([0, 1, bound, rng.randrange(bound + 1), struct.unpack_from(fmt, m, off)[0] + rng.choice([-1, 1])])
            struct.pack_into(fmt, m, off, val % (bound + 1))
        elif kind == 2:  # truncate
            del m[rng.randrange(len(m)) :]
        elif kind == 3:  # insert bytes
            pos = rng.randrange(len(m) + 1)
            m[pos:pos] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
        elif kind in (4, 5):  # damage the patch stream (the record decoder)
            for _ in range(rng.randint(1, 2)):
                pos = rng.randrange(stream_at, max(stream_at + 1, len(m) - 4))
                m[pos] = rng.getrandbits(8)
        else:  # lang byte
            m[12 + rng.randrange(8)] = rng.getrandbits(8)
        data = bytes(m)
        if len(data) >= 12 and rng.random() < 0.85:
            # fix total_size to the length (mostly) and the CRC, to get past rules 4-5
            if rng.random() < 0.8:
                data = bytes(set_field(data, 8, "<I", len(data)))
            data = recrc(data)
        out.append(data)
    return out
