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

from polykws.export.blob import (
    BLOB_HEADER_SIZE,
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
    num_patches: int = 0
    meta_size: int = 0
    # The error a targeted vector was built to trigger (its name's prefix before "__"), else "".
    intended: str = ""
    # image: per-blob (lang, code, output path, expected bytes) in table order; Python stops at the
    # first failing blob, so only the prefix up to and including it is compared.
    blobs: list[tuple[str, str, str, bytes]] = field(default_factory=list)


def recrc(data: bytes | bytearray) -> bytes:
    """Rewrite the trailing CRC so a mutation reaches the rule it targets instead of bad_crc."""
    body = bytes(data[:-4])
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def _set(data: bytes, offset: int, fmt: str, value) -> bytearray:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return out


def _resize(data: bytes, new_body: bytes) -> bytes:
    """Replace the bytes between header and CRC, fixing total_size and the CRC."""
    out = bytearray(data[:BLOB_HEADER_SIZE]) + bytearray(new_body) + b"\0\0\0\0"
    struct.pack_into("<I", out, 8, len(out))
    return recrc(out)


def _layout(blob: bytes) -> dict[str, int]:
    """Offsets of the label table, metadata, padding and patch records in a valid blob."""
    num_labels = struct.unpack_from("<H", blob, 88)[0]
    meta_size = struct.unpack_from("<I", blob, 92)[0]
    pos = BLOB_HEADER_SIZE
    for _ in range(num_labels):
        pos += 1 + blob[pos]
    meta = pos
    pos += meta_size
    pad = pos
    while pos % 4:
        pos += 1
    return {"labels": BLOB_HEADER_SIZE, "meta": meta, "pad": pad, "patches": pos}


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
            exp.num_patches, exp.meta_size = len(parsed.patches), len(parsed.meta_bytes)
        except BlobError as exc:
            exp.code = exc.code
        self._add(f"apply {fb} {fm} {out}", exp)
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
                        if blob.base_sha256 != img.base_sha256:
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
    body = good[BLOB_HEADER_SIZE:-4]
    # 1 + 4: sizes
    v.append(("truncated__under_100", good[:99], base))
    v.append(("truncated__empty", b"", base))
    v.append(("truncated__cut_last_byte", good[:-1], base))
    v.append(("bad_size__extra_byte", good + b"\0", base))
    v.append(("bad_size__header_95", recrc(_set(good, 6, "<H", 95)), base))
    v.append(("truncated__total_huge", recrc(_set(good, 8, "<I", 0xFFFFFFFF)), base))
    # 2, 3
    v.append(("bad_magic__pkwc", recrc(b"PKWC" + good[4:]), base))
    v.append(("bad_magic__lowercase", recrc(b"pkwb" + good[4:]), base))
    v.append(("unsupported_version__0", recrc(_set(good, 4, "<H", 0)), base))
    v.append(("unsupported_version__2", recrc(_set(good, 4, "<H", 2)), base))
    # 5
    flipped = bytearray(good)
    flipped[BLOB_HEADER_SIZE + 3] ^= 0x01
    v.append(("bad_crc__body_bit", bytes(flipped), base))
    v.append(("bad_crc__stored", good[:-4] + bytes(b ^ 0xFF for b in good[-4:]), base))
    # 6a lang
    for nm, lang in [("empty", b"\0" * 8), ("upper", b"EN\0\0\0\0\0\0"), ("not_nul_padded", b"u\0k\0\0\0\0\0"),
                     ("space", b"e n\0\0\0\0\0"), ("non_ascii", b"\xc3\xa9\0\0\0\0\0\0"), ("dot", b"en.\0\0\0\0\0")]:
        m = bytearray(good)
        m[12:20] = lang
        v.append((f"bad_lang__{nm}", recrc(m), base))
    # 6b/c labels
    v.append(("bad_labels__zero_count", recrc(_set(good, 88, "<H", 0)), base))
    v.append(("bad_labels__256_count", recrc(_set(good, 88, "<H", 256)), base))
    m = bytearray(good)
    m[lay["labels"]] = 0
    v.append(("bad_labels__empty_label", recrc(m), base))
    first_len = good[lay["labels"]]
    for nm, raw in [("nul", b"a\0"), ("overlong", b"\xc0\x80"), ("surrogate", b"\xed\xa0\x80"),
                    ("f5", b"\xf5\x80\x80\x80"), ("cut_multibyte", b"a\xd0"), ("lone_continuation", b"\x80a"),
                    ("above_10ffff", b"\xf4\x90\x80\x80")]:
        # replace the first label with `raw`, keeping everything else
        new_body = bytes([len(raw)]) + raw + body[1 + first_len :]
        new = bytearray(_resize(good, new_body))
        v.append((f"bad_labels__{nm}", _fix_padding(bytes(new)), base))
    # label count larger than the table: the walk runs into meta/patch bytes or past the end
    v.append(("labels_count_past_table", recrc(_set(good, 88, "<H", 255)), base))
    # 6d meta
    v.append(("truncated__meta_huge", recrc(_set(good, 92, "<I", 0xFFFFFF00)), base))
    v.append(("truncated__meta_to_end", recrc(_set(good, 92, "<I", len(good) - 4 - lay["meta"] + 1)), base))
    # 6e padding
    if lay["pad"] != lay["patches"]:
        m = bytearray(good)
        m[lay["pad"]] = 0x55
        v.append(("bad_size__meta_padding", recrc(m), base))
    # 6f/g records
    v.append(("truncated__patch_count", recrc(_set(good, 90, "<H", 0xFFFF)), base))
    v.append(("bad_size__fewer_patches", recrc(_set(good, 90, "<H", struct.unpack_from("<H", good, 90)[0] - 1)), base))
    m = bytearray(good)
    struct.pack_into("<I", m, lay["patches"] + 4, 0)
    v.append(("bad_size__zero_length_patch", recrc(m), base))
    m = bytearray(good)
    struct.pack_into("<I", m, lay["patches"] + 4, 0xFFFFFFFF)
    v.append(("truncated__patch_length_huge", recrc(m), base))
    v.append(("bad_size__trailing_bytes", _resize(good, body + b"\0\0\0\0"), base))
    one_more = struct.unpack_from("<H", good, 90)[0] + 1  # a 9th record header with only 4 bytes left
    v.append(("truncated__record_header", recrc(_set(_resize(good, body + b"\0\0\0\0"), 90, "<H", one_more)), base))
    return v


def _fix_padding(blob: bytes) -> bytes:
    """After changing the label table's length, re-pad before the patch records and re-CRC."""
    num_labels = struct.unpack_from("<H", blob, 88)[0]
    meta_size = struct.unpack_from("<I", blob, 92)[0]
    pos = BLOB_HEADER_SIZE
    for _ in range(num_labels):
        if pos >= len(blob) - 4:
            return recrc(blob)
        pos += 1 + blob[pos]
    pos += meta_size
    # the old padding sat at the old position: drop zero bytes until the records start on 4
    rest = blob[pos:-4]
    old_pad = 0
    while old_pad < 3 and old_pad < len(rest) and rest[old_pad] == 0:
        old_pad += 1
    records = rest[old_pad:]
    new_pad = (-pos) % 4
    new_body = blob[BLOB_HEADER_SIZE:pos] + b"\0" * new_pad + records
    return _resize(blob, new_body)


def _patch_bad(rng: random.Random, base: bytes) -> list[tuple[str, bytes, bytes]]:
    """Overlap, order, range and the apply-time errors, built with a hand-written record list."""
    v = []
    target = _patched(rng, base, [10, 20, 30])
    good = encode_blob(base, target, "en", ["a", "b"], {})
    lay = _layout(good)
    head = good[:lay["patches"]]

    def with_records(records: list[tuple[int, bytes]], model_size: int | None = None) -> bytes:
        blob = bytearray(head)
        for off, data in records:
            blob += struct.pack("<II", off, len(data)) + data + b"\0" * ((-len(data)) % 4)
        blob += b"\0\0\0\0"
        struct.pack_into("<I", blob, 8, len(blob))
        struct.pack_into("<H", blob, 90, len(records))
        if model_size is not None:
            struct.pack_into("<I", blob, 84, model_size)
        return recrc(blob)

    v.append(("overlapping_patches__same_offset", with_records([(10, b"\1"), (10, b"\2")]), base))
    v.append(("overlapping_patches__by_one", with_records([(10, b"\1\2"), (11, b"\3")]), base))
    v.append(("overlapping_patches__unsorted", with_records([(30, b"\1"), (10, b"\2")]), base))
    v.append(("target_mismatch__adjacent_records_not_overlapping", with_records([(10, b"\1"), (11, b"\2")]), base))  # target_mismatch
    v.append(("out_of_range__end", with_records([(len(base) - 1, b"\1\2")]), base))
    v.append(("out_of_range__wrap", with_records([(0xFFFFFFFF, b"\1\2\3\4")]), base))
    v.append(("out_of_range__second", with_records([(0, b"\1"), (len(base), b"\2")]), base))
    v.append(("overlapping_patches__checked_before_range", with_records([(len(base) + 5, b"\1"), (len(base) + 5, b"\1")]), base))
    v.append(("size_mismatch__short_base", good, base[:-1]))
    v.append(("size_mismatch__long_base", good, base + b"\0"))
    other = bytearray(base)
    other[0] ^= 0xFF
    v.append(("base_mismatch__other_base", good, bytes(other)))
    m = bytearray(good)
    m[lay["patches"] + 8] ^= 0x01  # patch data differs from what the target hash says
    v.append(("target_mismatch__patch_data", recrc(m), base))
    m = bytearray(good)
    m[52] ^= 0x01
    v.append(("target_mismatch__hash", recrc(m), base))
    v.append(("size_mismatch__model_size_field", with_records([(10, b"\1")], model_size=len(base) + 16), base))
    return v


def _mutations(rng: random.Random, good: bytes, count: int) -> list[bytes]:
    """Seeded random damage; about half re-CRC'd so the later rules are exercised too."""
    out = []
    for _ in range(count):
        m = bytearray(good)
        kind = rng.randrange(6)
        if kind == 0:  # flip 1-3 bytes anywhere
            for _ in range(rng.randint(1, 3)):
                m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
        elif kind == 1:  # rewrite a header field with a random or boundary value
            off, fmt = rng.choice([(4, "<H"), (6, "<H"), (8, "<I"), (84, "<I"), (88, "<H"), (90, "<H"), (92, "<I")])
            bound = 0xFFFF if fmt == "<H" else 0xFFFFFFFF
            val = rng.choice([0, 1, bound, rng.randrange(bound + 1), struct.unpack_from(fmt, m, off)[0] + rng.choice([-1, 1])])
            struct.pack_into(fmt, m, off, val % (bound + 1))
        elif kind == 2:  # truncate
            del m[rng.randrange(len(m)) :]
        elif kind == 3:  # insert bytes
            pos = rng.randrange(len(m) + 1)
            m[pos:pos] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
        elif kind == 4:  # damage a body byte
            pos = rng.randrange(BLOB_HEADER_SIZE, max(BLOB_HEADER_SIZE + 1, len(m) - 4))
            m[pos] = rng.getrandbits(8)
        else:  # lang byte
            m[12 + rng.randrange(8)] = rng.getrandbits(8)
        data = bytes(m)
        if len(data) >= 8 and rng.random() < 0.7:
            # fix total_size to the length (sometimes) and the CRC, to get past rules 4-5
            if rng.random() < 0.5 and len(data) >= 12:
                data = bytes(_set(data, 8, "<I", len(data)))
            if len(data) >= 4:
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
        ("unsupported_version__image", recrc(_set(good, 4, "<H", 2))),
        ("truncated__image_table_past_end", recrc(_set(good, 6, "<H", 0xFFFF))),
        ("bad_crc__image", good[:-4] + b"\0\0\0\0"),
        ("bad_size__image_base_unaligned", recrc(_set(good, 8, "<I", base_off + 4))),
        ("bad_size__image_base_inside_table", recrc(_set(good, 8, "<I", table_end - 16))),
        ("out_of_range__image_base_zero_size", recrc(_set(good, 12, "<I", 0))),
        ("out_of_range__image_base_past_end", recrc(_set(good, 12, "<I", len(good)))),
        ("bad_lang__image_entry", recrc(bytearray(good[: entry(1) + 8]) + b"LT\0\0\0\0\0\0" + good[entry(1) + 16 :])),
        ("bad_size__image_entry_unaligned", recrc(_set(good, entry(2), "<I", struct.unpack_from("<I", good, entry(2))[0] + 8))),
        ("out_of_range__image_entry_small", recrc(_set(good, entry(0) + 4, "<I", 99))),
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
    struct.pack_into("<4sHHII32s", img, 0, b"PKWF", 1, len(blobs), base_off, len(base), hashlib.sha256(base).digest())
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

    (w.dir / COMMAND_FILE).write_text("\n".join(w.lines) + "\n")
    return w.expect


def parse_runner_output(text: str) -> tuple[dict[int, str], dict[int, list[str]], tuple[int, int] | None]:
    """R lines by command number, B lines grouped by command number, and the DONE counts."""
    results: dict[int, str] = {}
    blobs: dict[int, list[str]] = {}
    done = None
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if parts[0] == "R" and len(parts) >= 3:
            results[int(parts[1])] = parts[2]
        elif parts[0] == "B" and len(parts) >= 3:
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
                        f"patches={e.num_patches}", f"meta={e.meta_size}")
                if tuple(fields[1:]) != want:
                    problems.append(f"{e.name}: C parsed {fields[1:]}, Python {list(want)}")
                out = out_dir / e.output
                if not out.is_file() or out.read_bytes() != e.expected_bytes:
                    problems.append(f"{e.name}: C's patched model differs from apply_blob's")
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
