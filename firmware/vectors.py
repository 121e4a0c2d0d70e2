"""Test vectors for the C blob parser, generated with the Python reference (polykws.export.blob).

`write_vectors(out_dir)` writes blobs, bases and flash images plus a command file
(`pkwb_vectors.txt`) for `firmware/test/blob_runner.c`, and returns what Python expects for every
command: the error name (BlobError.code, or "ok"), the patched bytes, the labels. The same files
feed the host build and the Cortex-M build under QEMU, and `check_runner_output` compares the
runner's lines and output files with those expectations, byte for byte.

Vectors cover every error name in docs/BLOB_FORMAT.md with targeted cases (each re-CRC'd so the
intended rule is the one that fires), the corners of the good path (no patches, every byte
patched, first/last byte, every padding residue, UTF-8 labels, 255 labels), and seeded random
mutations of good blobs and images, whose expected result is whatever Python says.
"""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from typing import Sequence

from polykws.core.patchcode import (
    CONTEXTS_BY_WIDTH,
    C4_DERIVED,
    CTX_HDR,
    CTX_WIDTH,
    NUM_CONTEXTS,
    PROB_INIT,
    WIDTHS,
    RangeEncoder,
    encode_value,
    gamma_encode,
    encode_records,
    plan_records,
    tflite_regions,
)
from polykws.export.blob import (
    BLOB_HEADER_SIZE,
    BLOB_MIN_SIZE,
    BLOB_PREFIX_SIZE,
    FLASH_ENTRY_SIZE,
    FLASH_HEADER_SIZE,
    BlobError,
    apply_blob,
    decode_blob,
    decode_flash_image,
    encode_blob,
    encode_flash_image,
)

COMMAND_FILE = "pkwb_vectors.txt"
# firmware/test/blob_runner.c reads each file into a buffer of this many bytes.
RUNNER_BUFFER_BYTES = 128 * 1024


@dataclass
class Expectation:
    """What Python says for one runner command."""

    index: int  # 1-based command number, as the runner prints it
    kind: str  # sha | crc | apply | image
    name: str
    code: str = "ok"  # BlobError.code or "ok"
    value: str = ""  # sha/crc hex
    output: str = ""  # relative path the runner writes (apply/image)
    expected_bytes: bytes = b""
    labels: tuple[str, ...] = ()
    lang: str = ""
    thresholds: str = ""  # hex
    stream_size: int = 0
    # The error a targeted vector was built to trigger (its name's prefix before "__"), else "".
    intended: str = ""
    # image: per-blob (lang, code, output path, expected bytes) in table order; Python stops at the
    # first failing blob, so only the prefix up to and including it is compared.
    blobs: list[tuple[str, str, str, bytes]] = field(default_factory=list)
    # switch: per language switch (lang, code, active language or "-", labels hex, output path, model)
    switches: list[tuple[str, str, str, str, str, bytes]] = field(default_factory=list)


def recrc(data: bytes | bytearray) -> bytes:
    """Rewrite the trailing CRC so a mutation reaches the rule it targets instead of bad_crc."""
    body = bytes(data[:-4])
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def _set(data: bytes, offset: int, fmt: str, value) -> bytearray:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return out


def _layout(blob: bytes) -> dict[str, int]:
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


def _model(rng: random.Random, size: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(size))


def _patched(rng: random.Random, base: bytes, positions) -> bytes:
    out = bytearray(base)
    for p in positions:
        out[p] = (out[p] + 1 + rng.randrange(255)) & 0xFF
    return bytes(out)


class _Writer:
    def __init__(self, out_dir: Path):
        self.dir = out_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = []
        self.expect: list[Expectation] = []
        self._files: dict[bytes, str] = {}

    def file(self, data: bytes, stem: str) -> str:
        """Write `data` once (deduplicated by content) and return its name relative to the dir."""
        if len(data) > RUNNER_BUFFER_BYTES:
            raise ValueError(f"vector {stem} is {len(data)} bytes; the runner's buffers hold {RUNNER_BUFFER_BYTES}")
        key = hashlib.sha256(data).digest()
        if key not in self._files:
            name = f"v{len(self._files):04d}_{stem}.bin"
            (self.dir / name).write_bytes(data)
            self._files[key] = name
        return self._files[key]

    def _add(self, line: str, exp: Expectation) -> None:
        if "__" in exp.name:
            exp.intended = exp.name.split("__", 1)[0]
        self.lines.append(line)
        self.expect.append(exp)

    def sha(self, data: bytes, name: str) -> None:
        f = self.file(data, "sha")
        n = len(self.expect) + 1
        self._add(f"sha {f}", Expectation(n, "sha", name, value=hashlib.sha256(data).hexdigest()))

    def crc(self, data: bytes, name: str) -> None:
        f = self.file(data, "crc")
        n = len(self.expect) + 1
        self._add(f"crc {f}", Expectation(n, "crc", name, value=f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"))

    def crc_split(self, data: bytes, k: int, name: str) -> None:
        f = self.file(data, "crc")
        n = len(self.expect) + 1
        self._add(f"crcsplit {f} {k}", Expectation(n, "crc", name, value=f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"))

    def apply(self, blob: bytes, base: bytes, name: str) -> Expectation:
        n = len(self.expect) + 1
        fb, fm = self.file(blob, "blob"), self.file(base, "base")
        out = f"out{n:04d}.tflite"
        exp = Expectation(n, "apply", name, output=out)
        try:
            parsed = decode_blob(blob)
            exp.expected_bytes = apply_blob(base, parsed)
            exp.labels, exp.lang = parsed.labels, parsed.lang
            exp.thresholds, exp.stream_size = parsed.thresholds.hex(), len(parsed.stream)
        except BlobError as exc:
            exp.code = exc.code
        self._add(f"apply {fb} {fm} {out}", exp)
        return exp

    def switch(self, image: bytes, langs: list[str], name: str) -> Expectation:
        """pkw_switch over `langs` in turn: a refused switch leaves no language and no labels."""
        n = len(self.expect) + 1
        fi = self.file(image, "image")
        prefix = f"sw{n:04d}_"
        exp = Expectation(n, "switch", name, output=prefix)
        img = decode_flash_image(image, verify_contents=False)
        if hashlib.sha256(img.base).hexdigest() != img.base_sha256:
            exp.code = "base_mismatch"
        for i, lang in enumerate(langs if exp.code == "ok" else []):
            out = f"{prefix}{i}.bin"
            index = next((j for j, e in enumerate(img.entries) if e.lang == lang), None)
            if index is not None:
                try:
                    blob = decode_blob(img.blob_bytes(index))
                    if blob.lang != lang:
                        raise BlobError("bad_lang", "table and blob languages differ")
                    if blob.model_size != img.base_size:
                        raise BlobError("size_mismatch", "blob patches a model of another size")
                    if blob.base_id != img.base_sha256[:8]:
                        raise BlobError("base_mismatch", "blob names another base")
                    model = apply_blob(img.base, blob)
                    labels = ",".join(x.encode().hex() for x in blob.labels)
                    exp.switches.append((lang, "ok", lang, labels, out, model))
                except BlobError as exc:
                    exp.switches.append((lang, exc.code, "-", "", "", b""))
            elif lang == "base":
                exp.switches.append((lang, "ok", "base", ",".join(x.encode().hex() for x in ("b0", "b1", "b2")), out, img.base))
            else:
                exp.switches.append((lang, "bad_argument", "-", "", "", b""))
        self._add(f"switch {fi} {','.join(langs)} {prefix}", exp)
        return exp

    def image(self, image: bytes, name: str) -> Expectation:
        n = len(self.expect) + 1
        fi = self.file(image, "image")
        prefix = f"img{n:04d}_"
        exp = Expectation(n, "image", name, output=prefix)
        try:
            img = decode_flash_image(image, verify_contents=False)
        except BlobError as exc:
            exp.code = exc.code
        else:
            if hashlib.sha256(img.base).hexdigest() != img.base_sha256:
                exp.code = "base_mismatch"
            else:
                # The firmware (pkwf_blob + pkwb_apply_prehashed) walks every blob in table order.
                for i, e in enumerate(img.entries):
                    try:
                        blob = decode_blob(img.blob_bytes(i))
                        if blob.lang != e.lang:
                            raise BlobError("bad_lang", "table and blob languages differ")
                        if blob.model_size != img.base_size:
                            raise BlobError("size_mismatch", "blob patches a model of another size")
                        if blob.base_id != img.base_sha256[:8]:
                            raise BlobError("base_mismatch", "blob names another base")
                        exp.blobs.append((e.lang, "ok", f"{prefix}{e.lang}.bin", apply_blob(img.base, blob)))
                    except BlobError as exc:
                        exp.blobs.append((e.lang, exc.code, "", b""))
        # Python's verdict on the whole image must be the first failure in firmware order.
        try:
            decode_flash_image(image)
            whole = "ok"
        except BlobError as exc:
            whole = exc.code
        firmware_first = exp.code if exp.code != "ok" else next((c for _, c, _, _ in exp.blobs if c != "ok"), "ok")
        if whole != firmware_first:
            raise AssertionError(f"{name}: decode_flash_image says {whole}, per-step walk says {firmware_first}")
        self._add(f"image {fi} {prefix}", exp)
        return exp


def _good_cases(rng: random.Random) -> list[tuple[str, bytes, bytes, str, list[str], dict]]:
    """(name, base, target, lang, labels, meta) for valid blobs across the format's corners."""
    cases = []
    base = _model(rng, 12_000)
    labels = ["_silence_", "_unknown_", "yes", "no", "up", "down"]
    cases.append(("few_bytes", base, _patched(rng, base, [100, 101, 5000]), "en", labels, {"method": "swr"}))
    cases.append(("first_and_last_byte", base, _patched(rng, base, [0, len(base) - 1]), "lt", labels, {}))
    cases.append(("no_patches", base, base, "uk", labels, {"note": "identical to base"}))
    cases.append(("every_byte", base, bytes((b + 1) & 0xFF for b in base), "ar", labels, {}))
    scattered = sorted(rng.sample(range(len(base)), 700))
    cases.append(("scattered_700", base, _patched(rng, base, scattered), "bn", labels, {"budget_params": 700}))
    runs = [p for s in rng.sample(range(0, len(base) - 64, 97), 40) for p in range(s, s + rng.randrange(1, 40))]
    cases.append(("runs_odd_lengths", base, _patched(rng, base, sorted(set(runs))), "gu", labels, {}))
    for residue in range(4):
        # metadata lengths hitting every padding residue before the patch records
        meta = {"k": "x" * (10 + residue)}
        cases.append((f"meta_pad_{residue}", base, _patched(rng, base, [7 + residue]), "en", labels, meta))
    cases.append(("utf8_labels", base, _patched(rng, base, [42]), "uk", ["_silence_", "так", "ні", "نعم", "হ্যাঁ", "હા"], {}))
    cases.append(("max_labels_and_lang", base, _patched(rng, base, [3]), "x_y-z123", [f"w{i}" for i in range(255)], {}))
    cases.append(("label_255_bytes", base, _patched(rng, base, [9]), "en", ["a" * 255, "b"], {}))
    big = _model(rng, 46_000)  # about a DS-CNN-S int8 .tflite
    cases.append(("dscnn_s_sized", big, _patched(rng, big, sorted(rng.sample(range(len(big)), 3000))), "lt", labels, {}))
    return cases


def _targeted_bad(rng: random.Random, good: bytes, base: bytes) -> list[tuple[str, bytes, bytes]]:
    """(name, blob, base) each aimed at one rule of BLOB_FORMAT.md."""
    lay = _layout(good)
    v: list[tuple[str, bytes, bytes]] = []
    # 1-4: sizes, magic, version
    v.append(("truncated__under_6", good[:5], base))
    v.append(("truncated__empty", b"", base))
    v.append(("truncated__under_68", good[:67], base))
    v.append(("truncated__cut_last_byte", good[:-1], base))
    v.append(("bad_size__extra_byte", good + b"\0", base))
    v.append(("truncated__total_huge", recrc(_set(good, 8, "<I", 0xFFFFFFFF)), base))
    v.append(("bad_magic__pkwc", recrc(b"PKWC" + good[4:]), base))
    v.append(("bad_magic__lowercase", recrc(b"pkwb" + good[4:]), base))
    v.append(("unsupported_version__0", recrc(_set(good, 4, "<H", 0)), base))
    v.append(("unsupported_version__3", recrc(_set(good, 4, "<H", 3)), base))
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
    v.append(("bad_labels__zero_count", recrc(_set(good, 6, "<B", 0)), base))
    v.append(("bad_labels__thresholds_not_one_per_label", recrc(_set(good, 7, "<B", 1)), base))
    m = bytearray(good)
    m[lay["labels"]] = 0
    v.append(("bad_labels__empty_label", recrc(m), base))
    for nm, raw in [("nul", b"a\0"), ("overlong", b"\xc0\x80"), ("surrogate", b"\xed\xa0\x80"),
                    ("f5", b"\xf5\x80\x80\x80"), ("cut_multibyte", b"a\xd0"), ("lone_continuation", b"\x80a"),
                    ("above_10ffff", b"\xf4\x90\x80\x80")]:
        v.append((f"bad_labels__{nm}", raw_blob(base=base, target=target, labels=[raw, b"no"]), base))
    v.append(("labels_count_past_table", recrc(_set(good, 6, "<B", 255)), base))
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
    m[_layout(with_thr)["thresholds"]] ^= 1
    v.append(("target_mismatch__threshold_changed", recrc(m), base))
    m = bytearray(good)
    m[12:14] = b"fr"
    v.append(("target_mismatch__lang_changed", recrc(m), base))
    return v


def _digest_of(blob: bytes) -> bytes:
    return blob[BLOB_HEADER_SIZE:BLOB_PREFIX_SIZE]


def _patch_bad(rng: random.Random, base: bytes) -> list[tuple[str, bytes, bytes]]:
    """Patch-stream rules and the apply-time errors, built with hand-written streams."""
    v = []
    n = len(base)
    target = _patched(rng, base, [10, 20, 30])
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


def _mutations(rng: random.Random, good: bytes, count: int) -> list[bytes]:
    """Seeded random damage; most re-CRC'd so the later rules (and the patch stream) are reached."""
    out = []
    stream_at = _layout(good)["stream"]
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
                data = bytes(_set(data, 8, "<I", len(data)))
            data = recrc(data)
        out.append(data)
    return out


def _image_cases(rng: random.Random) -> list[tuple[str, bytes]]:
    base = _model(rng, 9_000)
    langs = ["en", "lt", "uk"]
    blobs = [encode_blob(base, _patched(rng, base, sorted(rng.sample(range(len(base)), 50 + 20 * i))), lang,
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
        ("unsupported_version__image_v1", recrc(_set(good, 4, "<H", 1))),
        ("unsupported_version__image_v3", recrc(_set(good, 4, "<H", 3))),
        ("truncated__image_table_past_end", recrc(_set(good, 6, "<H", 0xFFFF))),
        ("bad_crc__image", good[:-4] + b"\0\0\0\0"),
        ("bad_size__image_base_unaligned", recrc(_set(good, 8, "<I", base_off + 4))),
        ("bad_size__image_base_inside_table", recrc(_set(good, 8, "<I", table_end - 16))),
        ("out_of_range__image_base_zero_size", recrc(_set(good, 12, "<I", 0))),
        ("out_of_range__image_base_past_end", recrc(_set(good, 12, "<I", len(good)))),
        ("bad_lang__image_entry", recrc(bytearray(good[: entry(1) + 8]) + b"LT\0\0\0\0\0\0" + good[entry(1) + 16 :])),
        ("bad_size__image_entry_unaligned", recrc(_set(good, entry(2), "<I", struct.unpack_from("<I", good, entry(2))[0] + 8))),
        ("out_of_range__image_entry_small", recrc(_set(good, entry(0) + 4, "<I", BLOB_MIN_SIZE - 1))),
        ("out_of_range__image_entry_past_end", recrc(_set(good, entry(2) + 4, "<I", 1 << 20))),
        ("overlapping_patches__image_entry_overlaps_base", recrc(_set(good, entry(0), "<I", base_off))),
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


def _switch_cases(rng: random.Random) -> list[tuple[str, bytes, list[str]]]:
    """Language switches, with a blob whose labels were swapped behind a fresh CRC in the middle."""
    base = _model(rng, 6_000)
    blobs = {lang: encode_blob(base, _patched(rng, base, sorted(rng.sample(range(len(base)), 40))), lang,
                               [f"{lang}_up", f"{lang}_dn", "_silence_"], {}) for lang in ("en", "uk", "lt")}
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


def write_vectors(out_dir: Path, seed: int = 1234, mutations: int = 240) -> list[Expectation]:
    """Write every vector and the runner's command file into `out_dir`; return the expectations."""
    rng = random.Random(seed)
    w = _Writer(Path(out_dir))

    # SHA-256 and CRC-32 on every length around the 64-byte block and the 56-byte length field.
    for n in list(range(0, 130)) + [1000, 4095, 4096, 65537]:
        data = bytes(rng.getrandbits(8) for _ in range(n))
        w.sha(data, f"sha_len_{n}")
        if n % 7 == 0 or n > 1000:
            w.crc(data, f"crc_len_{n}")
        if n in (0, 1, 63, 129, 4096):
            for k in sorted({0, n // 3, n}):
                w.crc_split(data, k, f"crc_split_{n}_{k}")

    goods = []
    for name, base, target, lang, labels, meta in _good_cases(rng):
        blob = encode_blob(base, target, lang, labels, meta)
        exp = w.apply(blob, base, f"good_{name}")
        if exp.code != "ok" or exp.expected_bytes != target:
            raise AssertionError(f"Python refuses its own good vector {name}: {exp.code}")
        goods.append((blob, base))

    # Typed regions: int32/float32 words (width 4) beside int8 bytes, gaps and bitmaps.
    tbase = _model(rng, 8_000)
    regions = [(0, 4000, 1), (4000, 6000, 4), (6000, 6400, 4), (6400, 8000, 1)]
    dense = list(range(4000, 6000, 4))
    sparse = [4000 + 4 * i for i in rng.sample(range(500), 9)] + [6000 + 4 * i for i in range(0, 100, 7)]
    for name, pos in [("typed_dense_words", dense), ("typed_sparse_words", sparse), ("typed_mixed", dense[::3] + list(range(100, 300)))]:
        target = bytearray(tbase)
        for p in pos:
            step = rng.choice([1, -1, 1000, -70000, 1 << 31])
            word = (int.from_bytes(tbase[p : p + 4], "little") + step) & 0xFFFFFFFF
            target[p : p + 4] = word.to_bytes(4, "little")
        blob = encode_blob(tbase, bytes(target), "lt", ["a", "b", "c"], {}, thresholds=b"\x10\x20\x30", regions=regions)
        exp = w.apply(blob, tbase, f"good_{name}")
        if exp.code != "ok" or exp.expected_bytes != bytes(target):
            raise AssertionError(f"Python refuses its own good vector {name}: {exp.code}")
        goods.append((blob, tbase))

    # Derived word records: a "bias scale" region that is float32(c x the "weight scale" region).
    import numpy as np

    dbase = bytearray(_model(rng, 4_000))
    ws = np.array([rng.uniform(1e-3, 5e-2) for _ in range(200)], np.float32)
    c = np.float32(0.0312)
    dbase[1000:1800] = ws.tobytes()
    dbase[2000:2800] = (c * ws).astype(np.float32).tobytes()
    dtarget = bytearray(dbase)
    w2 = ws.copy()
    w2[::3] *= np.float32(1.07)
    dtarget[1000:1800] = w2.tobytes()
    dtarget[2000:2800] = (c * w2).astype(np.float32).tobytes()
    dtarget[2400:2404] = (1).to_bytes(4, "little")  # one element the product does not predict
    dregions = [(1000, 1800, 4), (2000, 2800, 4)]
    for name, tgt in [("derived_words", bytes(dtarget))]:
        blob = encode_blob(bytes(dbase), tgt, "en", ["a"], {}, regions=dregions)
        if not any(r.ref_back for r in decode_blob(blob).records()):
            raise AssertionError("the derived-record vector did not derive")
        exp = w.apply(blob, bytes(dbase), f"good_{name}")
        if exp.code != "ok" or exp.expected_bytes != tgt:
            raise AssertionError(f"Python refuses its own good vector {name}: {exp.code}")
        goods.append((blob, bytes(dbase)))

    blob0, base0 = goods[0]
    for name, blob, base in _targeted_bad(rng, goods[4][0], goods[4][1]) + _patch_bad(rng, base0):
        w.apply(blob, base, name)

    per_good = max(1, mutations // len(goods))
    for gi, (blob, base) in enumerate(goods):
        if len(base) > 20_000:
            continue  # keep the QEMU run short: mutate the small models
        for mi, data in enumerate(_mutations(rng, blob, per_good)):
            w.apply(data, base, f"mutation_{gi:02d}_{mi:03d}")

    for name, data in _image_cases(rng):
        w.image(data, name)
    for name, data, langs in _switch_cases(rng):
        w.switch(data, langs, name)

    (w.dir / COMMAND_FILE).write_text("\n".join(w.lines) + "\n")
    return w.expect


def parse_runner_output(text: str) -> tuple[dict[int, str], dict[int, list[str]], tuple[int, int] | None]:
    """R lines by command number, B and W lines grouped by command number, and the DONE counts."""
    results: dict[int, str] = {}
    blobs: dict[int, list[str]] = {}
    done = None
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if parts[0] == "R" and len(parts) >= 3:
            results[int(parts[1])] = parts[2]
        elif parts[0] in ("B", "W") and len(parts) >= 3:
            blobs.setdefault(int(parts[1].split(".")[0]), []).append(parts[2])
        elif parts[0] == "DONE":
            done = (int(parts[1]), int(parts[2]))
    return results, blobs, done


def check_runner_output(expect: list[Expectation], text: str, out_dir: Path) -> list[str]:
    """Every disagreement between the C runner and Python, as readable lines (empty = identical)."""
    results, blob_lines, done = parse_runner_output(text)
    problems: list[str] = []
    if done is None:
        problems.append("runner did not finish (no DONE line)")
    elif done != (len(expect), 0):
        problems.append(f"runner DONE {done}, expected ({len(expect)}, 0)")
    for e in expect:
        got = results.get(e.index)
        if got is None:
            problems.append(f"{e.name}: no result line")
            continue
        fields = got.split()
        if e.kind in ("sha", "crc"):
            if fields != [e.kind, e.value]:
                problems.append(f"{e.name}: C {got!r} != Python {e.kind} {e.value}")
        elif e.kind == "apply":
            if fields[0] != e.code:
                problems.append(f"{e.name}: C says {fields[0]}, Python says {e.code}")
                continue
            if e.code == "ok":
                want = (f"lang={e.lang}", "labels=" + ",".join(lb.encode().hex() for lb in e.labels),
                        f"thresholds={e.thresholds}", f"stream={e.stream_size}")
                if tuple(fields[1:]) != want:
                    problems.append(f"{e.name}: C parsed {fields[1:]}, Python {list(want)}")
                out = out_dir / e.output
                if not out.is_file() or out.read_bytes() != e.expected_bytes:
                    problems.append(f"{e.name}: C's patched model differs from apply_blob's")
        elif e.kind == "switch":
            if fields[0] != e.code:
                problems.append(f"{e.name}: C says {fields[0]}, Python says {e.code}")
                continue
            lines = blob_lines.get(e.index, [])
            if len(lines) != len(e.switches):
                problems.append(f"{e.name}: C made {len(lines)} switches, Python {len(e.switches)}")
                continue
            for line, (lang, code, active, labels, out, data) in zip(lines, e.switches):
                want = [lang, code, f"active={active}", f"labels={labels}"]
                if line.split(" ") != want:
                    problems.append(f"{e.name}: switch to {lang}: C {line!r}, Python {' '.join(want)!r}")
                elif code == "ok" and (not (out_dir / out).is_file() or (out_dir / out).read_bytes() != data):
                    problems.append(f"{e.name}: switch to {lang}: C's model differs from apply_blob's")
        elif e.kind == "image":
            if fields[0] != e.code:
                problems.append(f"{e.name}: C says {fields[0]}, Python says {e.code}")
                continue
            if e.code != "ok":
                continue
            lines = blob_lines.get(e.index, [])
            if len(lines) != len(e.blobs):
                problems.append(f"{e.name}: C walked {len(lines)} blobs, Python {len(e.blobs)}")
                continue
            for line, (lang, code, out, data) in zip(lines, e.blobs):
                if line.split() != [lang, code]:
                    problems.append(f"{e.name}: blob {lang}: C {line!r}, Python {code}")
                elif code == "ok" and (not (out_dir / out).is_file() or (out_dir / out).read_bytes() != data):
                    problems.append(f"{e.name}: blob {lang}: C's patched model differs from apply_blob's")
    return problems
