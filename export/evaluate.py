"""Device-equivalent evaluation: the real TFLM kernels (tflite-micro PyPI runtime) on the host.

TFLM's reference kernels are what a Cortex-M runs without CMSIS-NN, bit for bit. The oracle
for cross-checking is tf.lite with BUILTIN_REF kernels - never the XNNPACK default, which
rounds differently (tens of LSB here). BUILTIN_REF agrees with TFLM bit for bit on every op but
FULLY_CONNECTED, whose per-channel requantization rounds once where TFLM rounds twice: a logit
may differ by 1 LSB, which the softmax amplifies.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

import numpy as np

from polykws.export.convert import ExportError
from polykws.export.quantize import quantize_activations
from polykws.export.tflite_graph import TfliteGraph

ARENA_ALIGN = 16


def input_qparams(tflite: bytes) -> tuple[float, int]:
    t = TfliteGraph(tflite).input_tensor()
    return float(t.scales[0]), int(t.zero_points[0])


def quantize_features(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """Float features (N, frames, features) -> the model's int8 input (N, frames, features, 1)."""
    scale, zp = input_qparams(tflite)
    return quantize_activations(np.asarray(x, np.float32), scale, zp)[..., None]


def _tflm(tflite: bytes, arena_bytes: int):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(bytes(tflite), arena_size=int(arena_bytes))


@contextlib.contextmanager
def _c_output_silenced():
    """TFLM's C++ logs every failed allocation on stdout; the arena search fails on purpose."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


# What the tflite-micro runtime raises when the arena cannot hold the model's tensors.
ARENA_TOO_SMALL_MESSAGES = ("failed to allocate", "arena size is too small")


def is_arena_too_small(exc: BaseException) -> bool:
    """True only for the runtime's allocation failure; any other error is a real problem."""
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in ARENA_TOO_SMALL_MESSAGES)


def _runs_with(tflite: bytes, arena_bytes: int, probe: np.ndarray) -> bool:
    try:
        with _c_output_silenced():
            it = _tflm(tflite, arena_bytes)
            it.set_input(probe, 0)
            it.invoke()
        return True
    except Exception as exc:
        if is_arena_too_small(exc):
            return False
        raise ExportError(f"TFLM failed with a {arena_bytes}-byte arena for a reason other than its size: "
                          f"{type(exc).__name__}: {exc}") from exc


def find_arena_bytes(tflite: bytes, upper: int | None = None) -> int:
    """Smallest tensor arena (multiple of 16 bytes) with which TFLM allocates and invokes the model.

    Measured on this 64-bit host: a 32-bit Cortex-M needs slightly less (smaller pointers in
    TFLM's bookkeeping), so this is a safe size for the device, not an exact one.
    """
    g = TfliteGraph(tflite)
    probe = np.zeros(g.input_tensor().shape, np.int8)
    hi = upper or max(64 * 1024, 10 * len(tflite))
    if not _runs_with(tflite, hi, probe):
        raise ExportError(f"TFLM cannot run the model even with a {hi}-byte arena")
    lo = 0  # invariant: lo fails (or is 0), hi works
    while hi - lo > ARENA_ALIGN:
        mid = (lo + hi) // 2 // ARENA_ALIGN * ARENA_ALIGN
        if mid <= lo:
            break
        if _runs_with(tflite, mid, probe):
            hi = mid
        else:
            lo = mid
    return hi


def run_tflm(tflite: bytes, x_int8: np.ndarray, arena_bytes: int | None = None) -> np.ndarray:
    """int8 outputs (N, outputs) of TFLM for int8 inputs (N, frames, features, 1)."""
    arena = arena_bytes or max(64 * 1024, 10 * len(tflite))
    it = _tflm(tflite, arena)
    outs = []
    for xi in x_int8:
        it.set_input(np.ascontiguousarray(xi[None]), 0)
        it.invoke()
        outs.append(np.array(it.get_output(0)).reshape(-1).copy())
    return np.stack(outs) if outs else np.zeros((0, TfliteGraph(tflite).output_tensor().shape[-1]), np.int8)


def reference_interpreter(tflite: bytes, preserve_all_tensors: bool = False):
    """tf.lite with the BUILTIN_REF op resolver (reference kernels, no XNNPACK), tensors allocated."""
    import tensorflow as tf

    it = tf.lite.Interpreter(
        model_content=bytes(tflite),
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
        num_threads=1,
        experimental_preserve_all_tensors=preserve_all_tensors,
    )
    it.allocate_tensors()
    return it


def run_reference(tflite: bytes, x_int8: np.ndarray) -> np.ndarray:
    """int8 outputs of tf.lite with the BUILTIN_REF op resolver (reference kernels, no XNNPACK)."""
    it = reference_interpreter(tflite)
    inp = it.get_input_details()[0]["index"]
    out = it.get_output_details()[0]["index"]
    outs = []
    for xi in x_int8:
        it.set_tensor(inp, np.ascontiguousarray(xi[None]))
        it.invoke()
        outs.append(it.get_tensor(out).reshape(-1).copy())
    return np.stack(outs) if outs else np.zeros((0, TfliteGraph(tflite).output_tensor().shape[-1]), np.int8)


def argmax_first(outputs: np.ndarray, num_labels: int) -> np.ndarray:
    """Prediction from the first `num_labels` outputs (head padding slots are never read); ties -> lowest index, as on device."""
    return np.asarray(outputs)[:, :num_labels].astype(np.int32).argmax(axis=1)


@dataclass(frozen=True)
class TflmResult:
    accuracy: float
    arena_bytes: int
    predictions: np.ndarray
    outputs: np.ndarray

    def __iter__(self):  # (accuracy, arena_bytes, predictions), as the pipeline unpacks it
        return iter((self.accuracy, self.arena_bytes, self.predictions))


def evaluate_tflm(tflite: bytes, x: np.ndarray, y: np.ndarray, num_labels: int | None = None) -> TflmResult:
    """int8 accuracy of `tflite` under the TFLM runtime on float features `x` (N, frames, features)."""
    y = np.asarray(y)
    if len(x) != len(y):
        raise ExportError(f"{len(x)} feature samples but {len(y)} labels")
    if len(x) == 0:
        raise ExportError("no samples to evaluate")
    n = num_labels or TfliteGraph(tflite).output_tensor().shape[-1]
    if int(y.max()) >= n:
        raise ExportError(f"label index {int(y.max())} but the model has {n} usable outputs")
    arena = find_arena_bytes(tflite)
    outputs = run_tflm(tflite, quantize_features(tflite, x), arena)
    pred = argmax_first(outputs, n)
    return TflmResult(float(np.mean(pred == y)), arena, pred, outputs)


@dataclass(frozen=True)
class CrossCheck:
    samples: int
    mismatched_samples: int
    max_abs_diff_lsb: int
    argmax_disagreements: int

    def to_dict(self) -> dict:
        return {
            "samples": self.samples,
            "mismatched_samples": self.mismatched_samples,
            "max_abs_diff_lsb": self.max_abs_diff_lsb,
            "argmax_disagreements": self.argmax_disagreements,
        }


def cross_check(tflite: bytes, x: np.ndarray, num_labels: int | None = None, tflm_outputs: np.ndarray | None = None) -> CrossCheck:
    """TFLM vs tf.lite BUILTIN_REF on the same int8 inputs (equal but for FULLY_CONNECTED's rounding)."""
    xq = quantize_features(tflite, x)
    a = run_tflm(tflite, xq) if tflm_outputs is None else np.asarray(tflm_outputs)
    b = run_reference(tflite, xq)
    n = num_labels or a.shape[1]
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return CrossCheck(
        samples=len(x),
        mismatched_samples=int(np.sum(diff.max(axis=1) > 0)) if len(x) else 0,
        max_abs_diff_lsb=int(diff.max()) if diff.size else 0,
        argmax_disagreements=int(np.sum(argmax_first(a, n) != argmax_first(b, n))),
    )
