"""On-device benchmark: build the TFLM app with embedded test vectors, run it under QEMU, and check it
against the host TFLM runtime (the `tflite-micro` PyPI package, TFLM's reference kernels).

The firmware prints every prediction and a CRC-32 of every int8 output; the host runs the same
int8 vectors through the same model bytes (base patched by the same blob). Accuracy on QEMU must
EQUAL the host figure: the comparison is per vector, not just per total. Instruction counts come
from SysTick under `qemu -icount shift=0` (instructions, not cycles).
"""

from __future__ import annotations

import re
import statistics
import zlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from polykws.export.blob import apply_blob, decode_blob, decode_flash_image
from polykws.firmware.gen import BenchSet
from polykws.core import PolykwsError

_KV = re.compile(r"(\w+)=(\S*)")


@dataclass(frozen=True)
class LangSwitch:
    lang: str
    source: str  # "base" (runs from flash) or "blob" (patched into RAM)
    labels: int
    select_ticks: int
    arena_used: int


@dataclass(frozen=True)
class LangBench:
    lang: str
    n: int
    correct: int
    ticks_total: int
    ticks_min: int
    ticks_max: int
    scores_crc: int
    predictions: tuple[int, ...]


@dataclass
class AppReport:
    """What one firmware run printed, parsed."""

    header: dict[str, str]
    image: dict[str, str]
    switches: list[LangSwitch] = field(default_factory=list)
    bench: dict[str, LangBench] = field(default_factory=dict)
    demo: list[dict[str, str]] = field(default_factory=list)
    profile: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # lang -> [(op, ticks)]

    @property
    def units_per_tick(self) -> float:
        return int(self.header["units_per_tick_milli"]) / 1000.0

    @property
    def unit(self) -> str:
        return self.header.get("unit", "instructions")

    def per_inference(self, lang: str) -> float:
        b = self.bench[lang]
        return b.ticks_total * self.units_per_tick / b.n

    def select_units(self, lang: str) -> float:
        """Cost of switching to `lang` (patch + verify + interpreter setup), from its last switch."""
        sw = [s for s in self.switches if s.lang == lang]
        return sw[-1].select_ticks * self.units_per_tick


def require_clean_end(text: str, source: str = "firmware") -> list[str]:
    """The PKW_ lines of a firmware run; PolykwsError naming the failure when it reported an error
    or did not end with `PKW_END status=ok` (every firmware program ends that way)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("PKW_")]
    errors = [ln for ln in lines if ln.startswith(("PKW_ERROR", "PKW_FAULT"))]
    end = [ln for ln in lines if ln.startswith("PKW_END")]
    if errors or not end or "status=ok" not in end[-1]:
        tail = "\n".join(text.splitlines()[-15:])
        raise PolykwsError(f"{source}: run failed ({errors[0] if errors else 'no PKW_END status=ok'}); last output:\n{tail}")
    return lines


def parse_app_output(text: str, source: str = "firmware") -> AppReport:
    """Parse the PKW_ lines; PolykwsError naming the failure when the run did not end with status=ok."""
    lines = require_clean_end(text, source)
    report = AppReport(header={}, image={})
    for ln in lines:
        tag, _, rest = ln.partition(" ")
        kv = dict(_KV.findall(rest))
        if tag == "PKW_BEGIN":
            report.header = kv
        elif tag == "PKW_IMAGE":
            report.image = kv
        elif tag == "PKW_LANG":
            report.switches.append(
                LangSwitch(kv["lang"], kv["source"], int(kv["labels"]), int(kv["select_ticks"]), int(kv["arena_used"]))
            )
        elif tag == "PKW_DEMO":
            report.demo.append(kv)
        elif tag == "PKW_PROFILE":
            report.profile.setdefault(kv["lang"], []).append((kv["tag"], int(kv["ticks"])))
        elif tag == "PKW_BENCH":
            preds_hex = kv["preds"]
            preds = tuple(int(preds_hex[i : i + 2], 16) for i in range(0, len(preds_hex), 2))
            b = LangBench(
                kv["lang"], int(kv["n"]), int(kv["correct"]), int(kv["ticks_total"]), int(kv["ticks_min"]),
                int(kv["ticks_max"]), int(kv["scores_crc"], 16), preds,
            )  # fmt: skip
            if len(preds) != b.n:
                raise PolykwsError(f"{source}: {b.lang}: {len(preds)} predictions printed for n={b.n}")
            report.bench[b.lang] = b
    if not report.header:
        raise PolykwsError(f"{source}: no PKW_BEGIN line")
    return report


@dataclass(frozen=True)
class HostLang:
    """The host TFLM runtime on the same int8 vectors and the same model bytes."""

    lang: str
    outputs: np.ndarray  # (n, slots) int8
    predictions: np.ndarray  # (n,)
    labels: np.ndarray  # (n,) truth
    num_labels: int

    @property
    def correct(self) -> int:
        return int(np.sum(self.predictions == self.labels))

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, len(self.labels))

    @property
    def scores_crc(self) -> int:
        return zlib.crc32(np.ascontiguousarray(self.outputs, dtype=np.int8).tobytes()) & 0xFFFFFFFF


def _arena(model: bytes) -> int:
    # find_arena_bytes already hides the runtime's C++ noise from its failing allocation attempts.
    from polykws.export.evaluate import find_arena_bytes

    return find_arena_bytes(model)


def language_models(flash_image: bytes, base_lang: str) -> dict[str, tuple[bytes, int]]:
    """lang -> (model bytes, number of labels) exactly as the firmware builds them."""
    img = decode_flash_image(flash_image)
    models: dict[str, tuple[bytes, int]] = {}
    for i, e in enumerate(img.entries):
        blob = decode_blob(img.blob_bytes(i))
        models[e.lang] = (apply_blob(img.base, blob), len(blob.labels))
    return models


def host_reference(
    flash_image: bytes, base_lang: str, base_labels: Sequence[str], sets: Sequence[BenchSet]
) -> dict[str, HostLang]:
    from polykws.export.evaluate import argmax_first, run_tflm

    models = language_models(flash_image, base_lang)
    img = decode_flash_image(flash_image)
    out: dict[str, HostLang] = {}
    for s in sets:
        # The firmware prefers a blob of the same name over the base (kws_runtime.cc); so do we.
        model, n_labels = models.get(s.lang) or (img.base, len(base_labels))
        x = s.features.reshape((s.count, *_input_shape(model)[1:]))
        outputs = run_tflm(model, x, _arena(model))
        out[s.lang] = HostLang(s.lang, outputs.astype(np.int8), argmax_first(outputs, n_labels), s.labels.astype(np.int64), n_labels)
    return out


def _input_shape(model: bytes) -> tuple[int, ...]:
    from polykws.export.tflite_graph import TfliteGraph

    return TfliteGraph(model).input_tensor().shape


def compare_with_host(report: AppReport, host: dict[str, HostLang]) -> list[str]:
    """Every disagreement between QEMU and the host runtime (empty: bit-identical outputs)."""
    problems = []
    for lang, h in host.items():
        b = report.bench.get(lang)
        if b is None:
            problems.append(f"{lang}: no PKW_BENCH line from the firmware")
            continue
        if b.n != len(h.labels):
            problems.append(f"{lang}: firmware ran {b.n} vectors, host {len(h.labels)}")
            continue
        diff = [i for i, (p, q) in enumerate(zip(b.predictions, h.predictions.tolist())) if p != q]
        if diff:
            problems.append(f"{lang}: {len(diff)} predictions differ from the host TFLM runtime (first at vector {diff[0]})")
        if b.scores_crc != h.scores_crc:
            problems.append(f"{lang}: int8 outputs differ from the host TFLM runtime (CRC {b.scores_crc:08x} != {h.scores_crc:08x})")
        if b.correct != h.correct:
            problems.append(f"{lang}: firmware counts {b.correct} correct, host {h.correct}")
    return problems


def suggested_arena_bytes(models: Sequence[bytes]) -> int:
    """Host-measured TFLM arena (64-bit bookkeeping, reference kernels) + 25 %, rounded up to 1 KiB.

    A 32-bit core needs less bookkeeping, but CMSIS-NN asks for scratch buffers that the reference
    kernels on the host do not (measured: DS-CNN-S used 22.9 KB on the M4 and 27.3 KB with Helium
    on the M55 against 24.3 KB on the host). The firmware prints what it really used.
    """
    need = max(_arena(m) for m in models)
    return int(-(-int(need * 1.25) // 1024) * 1024)


def median_per_inference(report: AppReport) -> float:
    return statistics.median(report.per_inference(lang) for lang in report.bench)
