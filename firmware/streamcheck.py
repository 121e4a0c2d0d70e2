"""The streaming firmware (APP_MAIN=stream_main) against the host's detector, event for event.

The device hears a PCM stream through its PCM source (under QEMU a host file over semihosting),
runs the micro frontend, the ring, the model every stride and the detector; the host runs
`polykws.export.streaming.detect` over the tflite-micro runtime on the same samples. Detections
(class, model frame) must be identical.
"""

from __future__ import annotations

import itertools
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from polykws.core import PolykwsError
from polykws.datasets.frontend import FrontendConfig
from polykws.export.blob import apply_blob, decode_blob, decode_flash_image
from polykws.export.evaluate import input_qparams
from polykws.export.streaming import DetectorConfig, detect, threshold_vector
from polykws.firmware import gen
from polykws.firmware.bench import require_clean_end, suggested_arena_bytes
from polykws.firmware.build import ThirdParty, build_app, default_build_root
from polykws.firmware.frontendcheck import FrontendSources, generate_frontend_tables
from polykws.firmware.frontendgen import InputQuant, write_stream_config
from polykws.firmware.qemu import run_elf


@dataclass(frozen=True)
class StreamRun:
    detections: list[tuple[int, int]]  # (class, model frame)
    threshold_source: str  # "blob" (the language's own) or "generated"
    steps: int
    model_frames: int
    inferences: int
    instructions: dict[str, float]  # frontend / invoke / detector, per 10 ms step or per inference
    memory: dict[str, int]  # polykws_memory's report: flash_image, arena, arena_used, model_ram, state (bytes)


def _language_blob(image: bytes, lang: str) -> tuple[bytes, bytes]:
    """(base, the language's blob bytes) from a flash image."""
    img = decode_flash_image(image, source="flash image")
    for entry in img.blobs:
        if entry.lang == lang:
            return img.base, entry.data
    raise PolykwsError(f"no blob for language {lang!r} in the flash image (it has {[e.lang for e in img.blobs]})")


def blob_thresholds(image: bytes, lang: str) -> dict[str, int] | None:
    """The thresholds the language's blob carries, by label (None when it carries none)."""
    blob = decode_blob(_language_blob(image, lang)[1])
    return dict(zip(blob.labels, blob.thresholds)) if blob.thresholds else None


def language_model(image: bytes, lang: str) -> tuple[bytes, tuple[str, ...]]:
    """The language's model and labels from its blob in a flash image."""
    base, blob = _language_blob(image, lang)
    return apply_blob(base, blob), tuple(decode_blob(blob).labels)


def generate_stream_sources(gen_dir: Path, image: bytes, *, base_lang: str, base_labels: Sequence[str], lang: str,
                            thresholds: dict[str, int] | int, frontend: FrontendConfig, detector: DetectorConfig,
                            board: str, sources: FrontendSources, build_root: Path | None = None,
                            step_graphs: bool = False) -> Path:
    """The generated sources the runtime (runtime/polykws.cc) compiles against: the flash image and
    model sizes, the frontend's tables, and the detector plan with `lang` as the default language
    and `thresholds` as its fallback (used when its blob carries none). `step_graphs`: also the
    base's linked step and head graphs, which the runtime then runs in place of the windowed graph
    (a base without time padding only)."""
    gen_dir = Path(gen_dir).resolve()
    root = (Path(build_root) if build_root else default_build_root()).resolve()
    model, labels = language_model(image, lang)
    # The host-measured arena plus the margin CMSIS-NN's scratch buffers need on the core (Helium on
    # the M55 asks for more than the host's reference kernels), as the benchmark app sizes it.
    gen.generate_app_sources(gen_dir, image, base_lang=base_lang, base_labels=base_labels, bench_sets=[],
                             arena_bytes=suggested_arena_bytes([model]), frontend=frontend, source=f"stream app ({lang})")
    generate_frontend_tables(gen_dir, frontend, InputQuant(*input_qparams(model)), sources, board, root)
    write_stream_config(gen_dir, lang, threshold_vector(labels, thresholds).tolist(), detector.plan(frontend))
    step_files = [gen_dir / "pkw_step_graphs.h", gen_dir / "pkw_step_graphs.c"]
    if step_graphs:
        from polykws.firmware.stepbench import write_runtime_step_graphs

        write_runtime_step_graphs(gen_dir, decode_flash_image(image).base, detector.plan(frontend).stride_frames)
    else:
        for f in step_files:  # a folder generated once with them must not keep them
            f.unlink(missing_ok=True)
    return gen_dir


def build_stream_app(gen_dir: Path, image: bytes, *, base_lang: str, base_labels: Sequence[str], lang: str,
                     thresholds: dict[str, int] | int, frontend: FrontendConfig, detector: DetectorConfig,
                     board: str, kernels: str, third_party: ThirdParty, sources: FrontendSources,
                     build_root: Path | None = None, step_graphs: bool = False) -> Path:
    root = (Path(build_root) if build_root else default_build_root()).resolve()
    gen_dir = generate_stream_sources(gen_dir, image, base_lang=base_lang, base_labels=base_labels, lang=lang,
                                      thresholds=thresholds, frontend=frontend, detector=detector, board=board,
                                      sources=sources, build_root=root, step_graphs=step_graphs)
    return build_app(board, kernels, gen_dir, third_party, root, main="stream_main", extra_vars=sources.make_vars())


@dataclass(frozen=True)
class StreamCommand:
    """Run once `sample` samples of the stream have been pushed: "switch" to `lang`, or "reset"."""

    sample: int
    verb: str
    lang: str = ""

    def __post_init__(self) -> None:
        if self.verb not in ("switch", "reset") or (self.verb == "switch") != bool(self.lang) or self.sample < 0:
            raise PolykwsError(f"not a stream command: {self}")


def run_stream(elf: Path, pcm: np.ndarray, board: str, timeout_s: float = 1800.0,
               commands: Sequence[StreamCommand] = ()) -> StreamRun:
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise PolykwsError(f"the stream must be 1-D int16 PCM, got {pcm.dtype} {pcm.shape}")
    with tempfile.TemporaryDirectory(prefix="pkw-stream-") as tmp:
        (Path(tmp) / "stream.pcm").write_bytes(pcm.astype("<i2").tobytes())
        if commands:
            (Path(tmp) / "stream.cmd").write_text("".join(f"{c.sample} {c.verb} {c.lang}\n" for c in commands))
        run = run_elf(elf, board, cwd=Path(tmp), timeout_s=timeout_s)
    require_clean_end(run.stdout, f"{elf.name} on {board}")
    dets = [(int(c), int(f)) for c, f in re.findall(r"^PKW_DET class=(\d+) frame=(\d+)", run.stdout, re.M)]
    source = re.search(r"^PKW_LANG .* thresholds=(\w+)", run.stdout, re.M)
    m = re.search(r"PKW_STREAM steps=(\d+) model_frames=(\d+) inferences=(\d+) frontend_ticks=(\d+) invoke_ticks=(\d+) "
                  r"detector_ticks=(\d+) units_per_tick_milli=(\d+)", run.stdout)
    if not m:
        raise PolykwsError(f"{elf.name}: no PKW_STREAM line:\n{run.stdout[-1500:]}")
    steps, frames, inf, fe_t, inv_t, det_t, milli = (int(g) for g in m.groups())
    per = milli / 1000.0
    mem = re.search(r"^PKW_MEMORY (.*)$", run.stdout, re.M)
    memory = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", mem.group(1))} if mem else {}
    return StreamRun(dets, source.group(1) if source else "?", steps, frames, inf, {
        "frontend_per_step": fe_t * per / max(1, steps),
        "invoke_per_inference": inv_t * per / max(1, inf),
        "detector_per_inference": det_t * per / max(1, inf),
    }, memory)


def host_detections(image: bytes, lang: str, pcm: np.ndarray, frontend: FrontendConfig, detector: DetectorConfig,
                    thresholds: dict[str, int] | int) -> list[tuple[int, int]]:
    model, labels = language_model(image, lang)
    return [(labels.index(d.keyword), d.frame) for d in detect(model, labels, pcm, frontend, detector, thresholds)]


def host_detections_scripted(image: bytes, lang: str, pcm: np.ndarray, frontend: FrontendConfig, detector: DetectorConfig,
                             commands: Sequence[StreamCommand]) -> list[tuple[int, int]]:
    """What the streaming app detects when `commands` switch language or reset mid-stream, each
    language with its blob's thresholds.

    A reset starts the stream afresh at its sample (frontend, ring, detector, frame count). A switch
    keeps the frontend and the ring and restarts the detector: the new language scores the same
    inferences, and its smoothing and refractory period start with the first model frame completed
    after the switch (model frame m completes at window + m * decimation * stride samples).
    """
    from dataclasses import replace

    from polykws.export.streaming import decide, score_stream, smooth

    plan = detector.plan(frontend)
    cuts = sorted(commands, key=lambda c: c.sample)
    resets = [0] + [c.sample for c in cuts if c.verb == "reset"] + [len(pcm)]
    out: list[tuple[int, int]] = []
    active = lang
    for seg_start, seg_end in itertools.pairwise(resets):
        seg = np.asarray(pcm[seg_start:seg_end])
        parts = [(0, active)] + [(c.sample - seg_start, c.lang) for c in cuts if c.verb == "switch" and seg_start <= c.sample < seg_end]
        for i, (begin, part_lang) in enumerate(parts):
            end = parts[i + 1][0] if i + 1 < len(parts) else len(seg)
            model, labels = language_model(image, part_lang)
            trace = score_stream(model, labels, seg, frontend, detector)
            done = frontend.window_samples + trace.frames * frontend.frame_decimation * frontend.stride_samples
            keep = (done > begin) & (done <= end) if i else done <= end
            sums, counts = smooth(trace.outputs[keep], len(labels), plan.average_inferences)
            part = replace(trace, frames=trace.frames[keep], sums=sums, counts=counts, outputs=trace.outputs[keep],
                           logits=None if trace.logits is None else trace.logits[keep])
            thresholds = blob_thresholds(image, part_lang)
            if thresholds is None:
                raise PolykwsError(f"language {part_lang!r} carries no thresholds in its blob")
            out += [(labels.index(d.keyword), d.frame) for d in decide(part, thresholds, plan.refractory_frames)]
            active = part_lang
    return out
