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
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from polykws.export.blob import BlobError, apply_blob, decode_blob, decode_flash_image, encode_blob
from polykws.firmware.vectorbytes import random_model
from polykws.firmware.blobvectors import blob_mutations, good_cases, patch_bad, targeted_bad
from polykws.firmware.imagevectors import image_cases, switch_cases

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
    # (language, code, active language, labels hex, thresholds hex, output file, model bytes)
    switches: list[tuple[str, str, str, str, str, str, bytes]] = field(default_factory=list)


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
                    exp.switches.append((lang, "ok", lang, labels, blob.thresholds.hex(), out, model))
                except BlobError as exc:
                    exp.switches.append((lang, exc.code, "-", "", "", "", b""))
            elif lang == "base":
                exp.switches.append((lang, "ok", "base", ",".join(x.encode().hex() for x in ("b0", "b1", "b2")), "", out, img.base))
            else:
                exp.switches.append((lang, "bad_argument", "-", "", "", "", b""))
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


def _hash_vectors(w: _Writer, rng: random.Random) -> None:
    """SHA-256 and CRC-32 on every length around the 64-byte block and the 56-byte length field."""
    for n in list(range(0, 130)) + [1000, 4095, 4096, 65537]:
        data = bytes(rng.getrandbits(8) for _ in range(n))
        w.sha(data, f"sha_len_{n}")
        if n % 7 == 0 or n > 1000:
            w.crc(data, f"crc_len_{n}")
        if n in (0, 1, 63, 129, 4096):
            for k in sorted({0, n // 3, n}):
                w.crc_split(data, k, f"crc_split_{n}_{k}")


def _apply_good(w: _Writer, blob: bytes, base: bytes, target: bytes, name: str) -> None:
    exp = w.apply(blob, base, f"good_{name}")
    if exp.code != "ok" or exp.expected_bytes != target:
        raise AssertionError(f"Python refuses its own good vector {name}: {exp.code}")


def _typed_goods(w: _Writer, rng: random.Random) -> list[tuple[bytes, bytes]]:
    """Typed regions: int32/float32 words (width 4) beside int8 bytes, gaps and bitmaps."""
    goods = []
    tbase = random_model(rng, 8_000)
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
        _apply_good(w, blob, tbase, bytes(target), name)
        goods.append((blob, tbase))
    return goods


def _derived_good(w: _Writer, rng: random.Random) -> tuple[bytes, bytes]:
    """Derived word records: a "bias scale" region that is float32(c x the "weight scale" region)."""
    import numpy as np

    dbase = bytearray(random_model(rng, 4_000))
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
    blob = encode_blob(bytes(dbase), bytes(dtarget), "en", ["a"], {}, regions=dregions)
    if not any(r.ref_back for r in decode_blob(blob).records()):
        raise AssertionError("the derived-record vector did not derive")
    _apply_good(w, blob, bytes(dbase), bytes(dtarget), "derived_words")
    return blob, bytes(dbase)


def write_vectors(out_dir: Path, seed: int = 1234, mutations: int = 240) -> list[Expectation]:
    """Write every vector and the runner's command file into `out_dir`; return the expectations."""
    rng = random.Random(seed)
    w = _Writer(Path(out_dir))
    _hash_vectors(w, rng)

    goods = []
    for name, base, target, lang, labels, meta in good_cases(rng):
        blob = encode_blob(base, target, lang, labels, meta)
        _apply_good(w, blob, base, target, name)
        goods.append((blob, base))
    goods += _typed_goods(w, rng)
    goods.append(_derived_good(w, rng))

    blob0, base0 = goods[0]
    for name, blob, base in targeted_bad(rng, goods[4][0], goods[4][1]) + patch_bad(rng, base0):
        w.apply(blob, base, name)

    per_good = max(1, mutations // len(goods))
    for gi, (blob, base) in enumerate(goods):
        if len(base) > 20_000:
            continue  # keep the QEMU run short: mutate the small models
        for mi, data in enumerate(blob_mutations(rng, blob, per_good)):
            w.apply(data, base, f"mutation_{gi:02d}_{mi:03d}")

    for name, data in image_cases(rng):
        w.image(data, name)
    for name, data, langs in switch_cases(rng):
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
            for line, (lang, code, active, labels, thresholds, out, data) in zip(lines, e.switches):
                want = [lang, code, f"active={active}", f"labels={labels}", f"thresholds={thresholds}"]
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
