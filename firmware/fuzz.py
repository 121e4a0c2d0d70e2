"""Build and run the C fuzz driver (firmware/test/fuzz_blob.c) for the blob decoder and the flash image reader.

libFuzzer (coverage-guided) with AddressSanitizer and UBSan when clang can link
`-fsanitize=fuzzer`; otherwise the driver's own seeded mutation loop, compiled with gcc's
sanitizers. Seeds come from the Python encoder: a base, a target, their blob and a flash image.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from polykws.core import PolykwsError
from polykws.export.blob import BLOB_HEADER_SIZE, CRC_BYTES, decode_blob, encode_blob, encode_flash_image

FIRMWARE_DIR = Path(__file__).resolve().parent
SANITIZE = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all")
TARGETS = ("blob", "image")


@dataclass(frozen=True)
class FuzzRun:
    target: str
    engine: str  # "libfuzzer" or "mutation-loop"
    runs: int
    returncode: int
    coverage: int | None  # libFuzzer's cov: (edges), None for the mutation loop
    features: int | None
    log: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def write_seeds(out_dir: Path, seed: int = 0) -> Path:
    """base.bin, target.bin, blob.bin, image.bin and a corpus folder per target."""
    rng = random.Random(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = bytes(rng.getrandbits(8) for _ in range(1200))
    t = bytearray(base)
    for p in sorted(rng.sample(range(1200), 60)):
        t[p] = (t[p] + rng.choice([1, 2, -1, -3, 40])) & 0xFF
    t[400:560] = bytes(rng.getrandbits(8) for _ in range(160))  # a re-trained region: literals
    # scales and their float32 products (bias scales): derived records
    import numpy as np

    w = np.array([rng.uniform(1e-3, 5e-2) for _ in range(50)], np.float32)
    c = np.float32(0.02)
    b = bytearray(base)
    b[760:960] = w.tobytes()
    b[960:1160] = (c * w).astype(np.float32).tobytes()
    base = bytes(b)
    w2 = w.copy()
    w2[::2] *= np.float32(1.1)
    t[760:960] = w2.tobytes()
    t[960:1160] = (c * w2).astype(np.float32).tobytes()
    target = bytes(t)
    regions = [(0, 400, 1), (400, 560, 1), (560, 760, 4), (760, 960, 4), (960, 1160, 4), (1160, 1200, 1)]
    blob = encode_blob(base, target, "uk", ["_silence_", "так", "ні"], {}, thresholds=b"\x40\x50\x60", regions=regions)
    if not any(r.ref_back for r in decode_blob(blob).records()):
        raise PolykwsError("the fuzz seed blob has no derived record")
    other = encode_blob(base, base, "lt", ["a"], {})
    image = encode_flash_image(base, [blob, other])
    for name, data in (("base.bin", base), ("target.bin", target), ("blob.bin", blob), ("image.bin", image)):
        (out / name).write_bytes(data)
    (out / "corpus-blob").mkdir(exist_ok=True)
    (out / "corpus-blob" / "good").write_bytes(blob[BLOB_HEADER_SIZE:-CRC_BYTES])
    (out / "corpus-image").mkdir(exist_ok=True)
    (out / "corpus-image" / "zeros").write_bytes(bytes(64))
    return out


def libfuzzer_available() -> bool:
    cc = shutil.which("clang")
    if cc is None:
        return False
    proc = subprocess.run([cc, "-x", "c", "-", "-fsanitize=fuzzer,address,undefined", "-o", os.devnull],
                          input="#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t*d,size_t n){(void)d;(void)n;return 0;}\n",
                          capture_output=True, text=True)
    return proc.returncode == 0


def build(out_dir: Path, engine: str | None = None, extra_cflags: tuple[str, ...] = ()) -> tuple[Path, str]:
    """The fuzz driver binary and its engine ("libfuzzer" when clang links it, else "mutation-loop")."""
    engine = engine or ("libfuzzer" if libfuzzer_available() else "mutation-loop")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lib = FIRMWARE_DIR / "lib"
    srcs = [str(FIRMWARE_DIR / "test" / "fuzz_blob.c"), str(lib / "blob.c"), str(lib / "sha256.c")]
    exe = out / f"fuzz_blob_{engine}"
    if engine == "libfuzzer":
        cmd = ["clang", "-std=c99", "-O1", "-g", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all"]
    else:
        cc = shutil.which(os.environ.get("HOST_CC", "gcc"))
        if cc is None:
            raise PolykwsError("no C compiler (gcc) for the fuzz driver")
        cmd = [cc, "-std=c99", "-O1", "-g", "-DPKW_FUZZ_STANDALONE", *SANITIZE]
    cmd += [*extra_cflags, f"-I{lib}", *srcs, "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PolykwsError(f"building the fuzz driver failed:\n{proc.stderr[-3000:]}")
    return exe, engine


# The driver allocates its seed files (tens of KiB) and libFuzzer its corpus; 64 MiB in one call means a
# length field was trusted.
MALLOC_LIMIT_MB = 64


def run(exe: Path, engine: str, seeds: Path, target: str, runs: int, seed: int = 1, timeout_s: float = 3600) -> FuzzRun:
    """Run `runs` inputs against `target` ("blob" or "image"); a crash or property violation fails the run."""
    if target not in TARGETS:
        raise PolykwsError(f"fuzz target must be one of {TARGETS}, got {target!r}")
    env = {**os.environ, "PKW_FUZZ_DIR": str(seeds), "PKW_FUZZ_TARGET": target,
           "ASAN_OPTIONS": "abort_on_error=1:detect_leaks=0", "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    if engine == "libfuzzer":
        corpus = seeds / f"corpus-{target}"
        work = seeds / f"work-{target}"
        work.mkdir(exist_ok=True)
        # libFuzzer's RSS limit reads getrusage's peak RSS, which Linux carries across exec: started from a
        # Python process holding torch and TensorFlow, the driver "uses" 2 GB before its first input. The
        # RSS check is therefore off and an allocation limit catches the memory blow-ups it stood for.
        cmd = [str(exe), f"-runs={runs}", f"-seed={seed}", "-max_len=4096", "-print_final_stats=1",
               "-rss_limit_mb=0", f"-malloc_limit_mb={MALLOC_LIMIT_MB}",
               f"-artifact_prefix={seeds}/crash-{target}-", str(work), str(corpus)]
    else:
        cmd = [str(exe), str(seeds), str(runs), str(seed)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    log = proc.stdout + proc.stderr
    cov = re.findall(r"cov: (\d+)", log)
    ft = re.findall(r"ft: (\d+)", log)
    done = re.search(r"Done (\d+) runs", log) or re.search(r"fuzz_blob: (\d+) inputs", log)
    return FuzzRun(target, engine, int(done.group(1)) if done else 0, proc.returncode,
                   int(cov[-1]) if cov else None, int(ft[-1]) if ft else None, log)
