"""Build, run and benchmark the TFLM application for a pack: the library behind `polykws firmware`."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from polykws.firmware.bench import (
    AppReport,
    HostLang,
    compare_with_host,
    host_reference,
    language_models,
    parse_app_output,
    suggested_arena_bytes,
)
from polykws.firmware.boards import check_kernels, get_board
from polykws.firmware.build import ElfSize, ThirdParty, build_app, default_build_root, elf_size
from polykws.firmware.flash import MemoryCheck, check_memory
from polykws.firmware.gen import BenchSet, GeneratedSources, generate_app_sources
from polykws.firmware.packreader import FirmwarePack, load_bench_sets, load_pack
from polykws.firmware.qemu import run_elf
from polykws.core import ConfigError, PolykwsError


@dataclass(frozen=True)
class FirmwareConfig:
    board: str
    kernels: str = "cmsis-nn"
    per_lang: int = 100  # benchmark vectors embedded per language
    arena_bytes: int | None = None  # None: host-measured + margin (bench.suggested_arena_bytes)
    build_root: Path | None = None
    profile: bool = False  # per-op counts of each language's first inference (a separate ELF)

    def __post_init__(self) -> None:
        get_board(self.board)
        check_kernels(self.kernels)
        if not 0 <= self.per_lang <= 255 * 4:
            raise ConfigError(f"per_lang must be 0..1020, got {self.per_lang}")
        if self.arena_bytes is not None and self.arena_bytes < 1024:
            raise ConfigError(f"arena_bytes must be >= 1024, got {self.arena_bytes}")

    @property
    def root(self) -> Path:
        return Path(self.build_root) if self.build_root else default_build_root()

    @property
    def gen_dir(self) -> Path:
        return self.root / f"gen-{self.board}-{self.kernels}"


@dataclass
class BuiltApp:
    config: FirmwareConfig
    pack: FirmwarePack
    elf: Path
    sources: GeneratedSources
    bench_sets: list[BenchSet]
    arena_bytes: int
    size: ElfSize
    memory: MemoryCheck


def build_firmware(cfg: FirmwareConfig, pack_dir: Path, features: Path | None = None, langs: list[str] | None = None) -> BuiltApp:
    """Generate the model sources from the pack (+ test vectors), then build the ELF and check its memory map."""
    pack = load_pack(pack_dir)
    sets = load_bench_sets(features, pack, cfg.per_lang, langs) if features else []
    models = [pack.base] + [m for m, _ in language_models(pack.flash_image, pack.base_lang).values()]
    arena = cfg.arena_bytes or suggested_arena_bytes(models)
    sources = generate_app_sources(
        cfg.gen_dir,
        pack.flash_image,
        base_lang=pack.base_lang,
        base_labels=pack.base_labels,
        bench_sets=sets,
        arena_bytes=arena,
        frontend=pack.frontend,
        source=str(pack.source),
    )
    elf = build_app(cfg.board, cfg.kernels, sources.out_dir, ThirdParty.from_env(cfg.kernels), cfg.root, profile=cfg.profile)
    memory = check_memory(elf, cfg.board)
    if not memory.ok:
        raise PolykwsError(f"{elf} does not fit {cfg.board}:\n  " + "\n  ".join(memory.problems))
    return BuiltApp(cfg, pack, elf, sources, sets, arena, elf_size(elf), memory)


@dataclass
class LangRow:
    lang: str
    source: str
    n: int
    device_correct: int
    host_correct: int
    per_inference: float
    per_inference_min: float
    per_inference_max: float
    select_cost: float
    arena_used: int
    export_accuracy: float | None = None  # the pack manifest's host TFLM figure, when n covers its test split

    @property
    def accuracy(self) -> float:
        return self.device_correct / self.n if self.n else float("nan")

    @property
    def host_accuracy(self) -> float:
        return self.host_correct / self.n if self.n else float("nan")


@dataclass
class BenchResult:
    board: str
    kernels: str
    unit: str
    rows: list[LangRow]
    mean_kernel: str  # "fast" (runtime/fast_mean.cc, bit-exact) or "reference" (TFLM's); matters only for MEAN models
    arena_bytes: int
    flash_bytes: int
    ram_bytes: int
    text_bytes: int
    data_bytes: int
    bss_bytes: int
    model_image_bytes: int
    bench_vector_bytes: int
    image_verify_cost: float
    mismatches: list[str] = field(default_factory=list)
    # lang -> [(op, units)] for the first inference, when built with profile=True
    profile: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    @property
    def identical_to_host(self) -> bool:
        return not self.mismatches

    def median_per_inference(self) -> float:
        return statistics.median(r.per_inference for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["identical_to_host"] = self.identical_to_host
        for row, r in zip(d["rows"], self.rows):
            row["accuracy"] = r.accuracy
            row["host_accuracy"] = r.host_accuracy
        return d

    def table(self) -> str:
        u = self.unit
        lines = [
            f"| lang | model | n | QEMU acc | host TFLM acc | pack's TFLM acc | equal | {u}/inference | switch {u} | arena used |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            packed = f"{r.export_accuracy:.4f}" if r.export_accuracy is not None else "-"
            lines.append(
                f"| {r.lang} | {r.source} | {r.n} | {r.accuracy:.4f} | {r.host_accuracy:.4f} | {packed} | "
                f"{'yes' if r.device_correct == r.host_correct and not self.mismatches else 'NO'} | "
                f"{r.per_inference:,.0f} | {r.select_cost:,.0f} | {r.arena_used} |"
            )
        return "\n".join(lines)


def _rows(report: AppReport, host: dict[str, HostLang], pack: FirmwarePack | None = None) -> list[LangRow]:
    rows = []
    exported = pack.export_accuracy if pack else {}
    for lang, b in report.bench.items():
        sw = [s for s in report.switches if s.lang == lang][-1]
        upt = report.units_per_tick
        rows.append(
            LangRow(
                lang=lang,
                source=sw.source,
                n=b.n,
                device_correct=b.correct,
                host_correct=host[lang].correct if lang in host else -1,
                per_inference=b.ticks_total * upt / b.n if b.n else float("nan"),
                per_inference_min=b.ticks_min * upt,
                per_inference_max=b.ticks_max * upt,
                select_cost=sw.select_ticks * upt,
                arena_used=sw.arena_used,
                export_accuracy=(exported[lang]["int8_acc"]
                                 if lang in exported and exported[lang].get("test_clips") == b.n else None),
            )
        )
    return rows


def run_firmware(app: BuiltApp, timeout_s: float = 3600.0) -> tuple[str, AppReport]:
    run = run_elf(app.elf, app.config.board, timeout_s=timeout_s)
    return run.stdout, parse_app_output(run.stdout, f"{app.elf.name} on {app.config.board}")


def bench_firmware(app: BuiltApp, timeout_s: float = 3600.0) -> BenchResult:
    """Run the built app under QEMU and compare every prediction and output with the host TFLM runtime."""
    if not app.bench_sets:
        raise PolykwsError("bench needs test vectors: pass --features <file.npz> with <lang>_x / <lang>_y arrays")
    _, report = run_firmware(app, timeout_s)
    host = host_reference(app.pack.flash_image, app.pack.base_lang, app.pack.base_labels, app.bench_sets)
    mismatches = compare_with_host(report, host)
    s = app.size
    return BenchResult(
        board=app.config.board,
        kernels=app.config.kernels,
        unit=report.unit,
        mean_kernel=report.header.get("mean", "reference"),
        rows=_rows(report, host, app.pack),
        arena_bytes=app.arena_bytes,
        flash_bytes=s.flash_bytes,
        ram_bytes=s.ram_bytes,
        text_bytes=s.text,
        data_bytes=s.data,
        bss_bytes=s.bss,
        model_image_bytes=s.models,
        bench_vector_bytes=s.bench,
        image_verify_cost=int(report.image.get("verify_ticks", 0)) * report.units_per_tick,
        mismatches=mismatches,
        profile={lang: [(op, t * report.units_per_tick) for op, t in ops] for lang, ops in report.profile.items()},
    )
