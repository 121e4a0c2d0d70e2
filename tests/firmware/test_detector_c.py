"""firmware/lib/detector.c against polykws.export.streaming, event for event (no TFLM needed).

Streams of seeded int8 model frames and model outputs go through both implementations of the
algorithm in docs/STREAMING.md: the C ring, schedule, smoothing and decision (host gcc with
ASan/UBSan, and Cortex-M under QEMU) and the host's `smooth` + `decide` with the ring windows the
host evaluator feeds its TFLM runtime. Inference frames, ring contents (CRC-32 per inference) and
detections (class, model frame) must be identical.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest

from polykws.export.streaming import NEVER_FIRE, ScoreTrace, decide, smooth
from polykws.firmware import build as fw_build
from polykws.firmware.boards import list_boards
from polykws.firmware.qemu import run_elf

QEMU_BOARDS = [b.name for b in list_boards() if b.qemu_machine]

# (T, F, stride_frames, average_inferences, refractory_frames, K, model frames)
CASES = [
    (49, 40, 10, 2, 50, 12, 900),  # the micro frontend's defaults
    (49, 10, 5, 4, 25, 11, 600),
    (8, 3, 1, 1, 0, 5, 300),  # every frame, no smoothing, no refractory period
    (16, 4, 3, 16, 7, 64, 400),  # the largest window and label count
]


def make_case(seed: int, case: tuple) -> tuple[bytes, list[str], list[str]]:
    """det_in.bin and the lines the runner must print (inferences and detections, then DONE)."""
    t, f, stride, avg, refr, k, n = case
    rng = np.random.default_rng(seed)
    labels = ["_silence_", "_unknown_"] + [f"kw{i}" for i in range(k - 2)]
    thr = rng.integers(60, 257, size=k)
    thr[0] = thr[1] = 256  # _silence_ / _unknown_ never fire
    frames = rng.integers(-128, 128, size=(n, f), dtype=np.int64).astype(np.int8)
    newest = np.arange(t - 1, n, stride)
    # Outputs with bursts: mostly silence, now and then one keyword dominates for a few inferences.
    q = np.full((newest.size, k), -128, np.int64)
    q[:, 0] = 100
    i = 0
    while i < newest.size:
        if rng.random() < 0.3:  # a burst as long as the averaging window, give or take
            kw = int(rng.integers(0, k))
            for j in range(i, min(newest.size, i + avg + int(rng.integers(-1, 3)))):
                q[j, kw] = int(rng.integers(-20, 125))
                q[j, 0] = int(rng.integers(-128, 60))
                i = j
        i += 1
    q += rng.integers(0, 3, size=q.shape)  # near-ties
    tied = rng.random(newest.size) < 0.15  # exact ties at the top: the lower class index must win
    other = rng.integers(0, k, size=newest.size)
    q[tied, other[tied]] = q[tied].max(axis=1)
    q = np.clip(q, -128, 127).astype(np.int8)
    sums, counts = smooth(q, k, avg)
    trace = ScoreTrace(newest.astype(np.int64), sums, counts, tuple(labels), 320, 480, 16000)
    dets = decide(trace, {lb: int(thr[i]) for i, lb in enumerate(labels) if lb not in NEVER_FIRE}, refr)
    windows = {int(m): frames[m - (t - 1) : m + 1].tobytes() for m in newest}
    data = bytearray(struct.pack("<7I", t, f, stride, avg, refr, k, n) + struct.pack(f"<{k}H", *thr.tolist()))
    due = {int(m): i for i, m in enumerate(newest)}
    lines = []
    for m in range(n):
        data += frames[m].tobytes()
        if m in due:
            data += q[due[m]].tobytes()
            lines.append(f"I {m} {zlib.crc32(windows[m]):08x}")
            lines += [f"D {labels.index(d.keyword)} {d.frame}" for d in dets if d.frame == m]
    lines.append(f"DONE {newest.size} {len(dets)}")
    assert dets, "the case must produce detections to compare"
    return bytes(data), lines, labels


def _check(stdout: str, expect: list[str]) -> None:
    got = [ln for ln in stdout.splitlines() if ln[:2] in ("I ", "D ") or ln.startswith("DONE")]
    assert got == expect


@pytest.mark.parametrize("seed, case", [(s, c) for s, c in enumerate(CASES)])
def test_host_detector_matches_python(seed, case, tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    runner = fw_build.build_host_detector_runner(tmp_path / "build", sanitize=fw_build.host_sanitizers_available())
    data, expect, _ = make_case(seed, case)
    (tmp_path / "det_in.bin").write_bytes(data)
    proc = subprocess.run([str(runner)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    _check(proc.stdout, expect)


@pytest.mark.qemu
@pytest.mark.parametrize("board", QEMU_BOARDS)
def test_cortex_m_detector_matches_python(board, tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed (.ci/run installs them from Debian)")
    elf = fw_build.build_detector_runner(board, tmp_path / "build")
    data, expect, _ = make_case(0, CASES[0])
    work = tmp_path / "w"
    work.mkdir()
    (work / "det_in.bin").write_bytes(data)
    run = run_elf(elf, board, cwd=work, timeout_s=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    _check(run.stdout, expect)
