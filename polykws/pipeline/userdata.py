"""A user's own recordings -> a language in a pack: the library behind `adapt --data` and `add-language`.

    scanned, check = check_user_data(folder, "xx")        # scan (any layout, speakers from the names) + data check
    splits, task = user_splits(scanned, "xx", frontend)   # the task's speaker-disjoint features
    result = add_language(AddLanguageSpec(folder, "xx", into))

The recordings go through the datasets layer's one scanner and feature builder; adaptation is
`training.adapt` (SWR at its default byte budget against the shipped base); the int8 model and
blob come from `export.api` and the pack from `export.pack`, so every figure is measured by the
component that ships.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polykws.core import ConfigError, PolykwsError, atomic_write_json, atomic_write_text, resolve_path
from polykws.datasets.check import DataCheck, DataCheckConfig, check_data, scan_user_data
from polykws.datasets.task import TaskSpec
from polykws.datasets.scan import ScanResult

DEFAULT_CACHE_DIR = ".cache/features"


def check_user_data(data: str | Path, lang: str, *, keywords: list[str] | None = None, speaker_regex: str | None = None,
                    cfg: DataCheckConfig = DataCheckConfig(), workers: int | None = None) -> tuple[ScanResult, DataCheck]:
    """Scan `data` for `lang` and run the data check (the caller prints it and decides on errors)."""
    scanned = scan_user_data(data, lang, speaker_regex=speaker_regex, workers=workers)
    return scanned, check_data(scanned, lang, keywords, cfg, workers)


def user_task(scanned: ScanResult, lang: str, keywords: list[str] | None = None, noise_dir: str | Path | None = None) -> TaskSpec:
    """The task a folder of recordings defines: its keywords (all words, or `keywords`), `_silence_`,
    and `_unknown_` when other words remain. Without background noise `_silence_` is digital silence."""
    words = sorted({r.label for r in scanned.clips if r.language == lang})
    chosen = tuple(keywords) if keywords else tuple(words)
    others = [w for w in words if w not in chosen]
    has_noise = bool(scanned.noise) or noise_dir is not None
    return TaskSpec(lang, chosen, silence=True, unknown=bool(others), true_silence_fraction=0.1 if has_noise else 1.0)


def user_splits(scanned: ScanResult, lang: str, frontend, *, keywords: list[str] | None = None, noise_dir: str | Path | None = None,
                cache_dir: str | Path = DEFAULT_CACHE_DIR, seed: int = 0, workers: int | None = None):
    """({"train","val","test"} FeatureSplits, TaskSpec) for the recordings' task, from cached features when present."""
    from polykws.datasets import load_task_features

    task = user_task(scanned, lang, keywords, noise_dir)
    rows = [r for r in scanned.records if r.language == lang or r.is_noise]
    splits = load_task_features(rows, task, frontend, cache_dir=resolve_path(cache_dir), noise_dir=noise_dir, seed=seed,
                                workers=workers, progress=False)
    return splits, task


@dataclass(frozen=True)
class AddLanguageSpec:
    """What `polykws add-language` does: recordings -> SWR blob against the shipped base -> pack / flash image."""

    data: Path
    lang: str
    into: Path
    keywords: tuple[str, ...] = ()
    speaker_regex: str | None = None
    noise_dir: Path | None = None
    budget_bytes: int | None = None  # None: SWR's default body-blob budget
    seed: int = 0
    # One torch thread: fastest for this model on shared cores, and the same bytes on any machine.
    threads: int | None = 1
    epochs: int | None = None
    out: Path | None = None  # work folder: model, export, report (default runs/add-language/<lang>)
    replace: bool = False
    cache_dir: str = DEFAULT_CACHE_DIR
    check: DataCheckConfig = field(default_factory=DataCheckConfig)

    def __post_init__(self) -> None:
        from polykws.export.blob import encode_lang

        object.__setattr__(self, "keywords", tuple(self.keywords))
        encode_lang(self.lang)  # the code must fit a blob before any work is done
        if self.into.suffix != ".bin" and self.into.exists() and not self.into.is_dir():
            raise ConfigError(f"--into {self.into}: neither a pack folder nor a .bin flash image")


@dataclass
class AddLanguageResult:
    check: DataCheck
    labels: tuple[str, ...]
    blob_bytes: int
    float_acc: float
    int8_acc: float
    test_clips: int
    test_speakers: int
    flash_image: Path
    pack_dir: Path | None
    out: Path
    timings_s: dict[str, float]
    selection: Any = None

    @property
    def held_out(self) -> str:
        """What the test split is, in words: held-out speakers only when the speaker ids are real."""
        if self.check.speakers_from_names:
            return f"held-out speakers ({self.test_speakers} speakers, {self.test_clips} test examples)"
        return f"held-out clips ({self.test_clips} test examples; no speaker ids, so test voices may also be in train)"


def add_language(spec: AddLanguageSpec, *, on_check=None) -> AddLanguageResult:
    """Data check -> adapt (SWR) -> export (int8 + blob) -> pack; `on_check(check)` sees the check before errors stop the run."""
    from polykws.core.assets import shipped_base
    from polykws.export.api import base_from_tflite, evaluate_export, export_language
    from polykws.export.pack import add_language as pack_add_language
    from polykws.export.pack import add_to_flash_image
    from polykws.training.adapt import TransferConfig, adapt, method_config
    from polykws.training.checkpoint import load_base, save_model

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scanned, check = check_user_data(spec.data, spec.lang, keywords=list(spec.keywords) or None, speaker_regex=spec.speaker_regex, cfg=spec.check)
    if on_check is not None:
        on_check(check)
    check.raise_on_errors()
    timings["check"] = time.perf_counter() - t0

    t = time.perf_counter()
    sb = shipped_base()
    base = load_base(None)
    if spec.lang == sb.manifest.get("language"):
        raise ConfigError(f"--lang {spec.lang!r} is the shipped base's own language; pick another code")
    splits, task = user_splits(scanned, spec.lang, base.frontend, keywords=list(spec.keywords) or None, noise_dir=spec.noise_dir,
                               cache_dir=spec.cache_dir, seed=spec.seed)
    if len(task.labels) > sb.head_slots:
        raise ConfigError(f"{len(task.labels)} labels ({len(task.keywords)} keywords + _silence_/_unknown_) exceed the base's "
                          f"{sb.head_slots} head slots; pass --keywords with at most {sb.head_slots - 2}")
    timings["features"] = time.perf_counter() - t

    t = time.perf_counter()
    mcfg = method_config("swr", **({"budget_bytes": spec.budget_bytes} if spec.budget_bytes is not None else {}))
    tcfg = TransferConfig(seed=spec.seed, num_threads=spec.threads, **({"epochs": spec.epochs} if spec.epochs else {}))
    result = adapt(base.model, splits, mcfg, tcfg)
    timings["adapt"] = time.perf_counter() - t

    t = time.perf_counter()
    out = spec.out or Path("runs") / "add-language" / spec.lang
    meta = {"language": spec.lang, "method": result.method, "seed": spec.seed, "base_sha256": base.sha256, "data": str(spec.data)}
    model_sha = save_model(out / "model.pt", result.model, labels=result.labels, frontend=base.frontend, meta=meta)
    test = splits["test"]
    train_x = splits["train"].x
    base_ex = base_from_tflite(base.model, base.frontend, base.labels, sb.tflite.read_bytes(), lang=str(sb.manifest["language"]),
                               head_slots=sb.head_slots, parity_x=test.x, meta={"model_name": base.model_name})
    ex = export_language(base_ex, result.model, result.labels, train_x, None, lang=spec.lang, parity_x=test.x,
                         meta={"method": result.method, "budget_bytes": mcfg.budget_bytes, "seed": spec.seed, "model_sha256": model_sha})
    ev = evaluate_export(ex, result.model, test.x, test.y)
    ex.save(out / "export")
    timings["export"] = time.perf_counter() - t

    t = time.perf_counter()
    into = Path(spec.into)
    if into.suffix == ".bin" and not (into.parent / "manifest.json").is_file():
        add_to_flash_image(into, base_ex.tflite, ex.blob, replace=spec.replace)
        flash, pack_dir = into, None
    else:
        pack_dir = into.parent if into.suffix == ".bin" else into
        if into.suffix == ".bin" and into.name != "flash.bin":
            raise ConfigError(f"--into {into}: a pack folder's flash image is flash.bin; name the folder or its flash.bin")
        pack_add_language(pack_dir, base_ex, ex, replace=spec.replace)
        flash = pack_dir / "flash.bin"
    timings["pack"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    res = AddLanguageResult(
        check=check, labels=tuple(result.labels), blob_bytes=len(ex.blob), float_acc=float(ev["float_acc"]), int8_acc=float(ev["int8_acc"]),
        test_clips=int(len(test.y)), test_speakers=len({s for s in test.speakers if s}), flash_image=flash, pack_dir=pack_dir, out=out,
        timings_s=timings, selection=result.details.get("selection"),
    )
    _write_report(spec, res, result, ev)
    return res


def _speakers_line(check: DataCheck) -> str:
    if not check.speakers_from_names:
        return f"no speaker ids in the file names ({check.speakers} clips as pseudo-speakers)"
    how = f" inferred from the names ({check.speaker_rule})" if check.speaker_rule else ""
    return f"{check.speakers} speakers{how}"


def _write_report(spec: AddLanguageSpec, res: AddLanguageResult, result, ev: dict) -> None:
    """`report.json` and a one-page `report.md` in the work folder."""
    d = {
        "language": spec.lang, "data": str(spec.data), "into": str(spec.into), "labels": list(res.labels),
        "blob_bytes": res.blob_bytes, "float_acc": res.float_acc, "int8_acc": res.int8_acc, "test_clips": res.test_clips,
        "test_speakers": res.test_speakers, "flash_image": str(res.flash_image), "pack_dir": str(res.pack_dir) if res.pack_dir else None,
        "timings_s": res.timings_s, "selection": res.selection, "eval": ev, "method": result.method,
        "updated_params": result.cost.total, "data_check": res.check.to_dict(),
    }
    atomic_write_json(res.out / "report.json", d)
    kw = "\n".join(f"| {k.keyword} | {k.clips} | {k.speakers} | {'/'.join(str(k.splits.get(s, 0)) for s in ('train', 'val', 'test'))} |"
                   for k in res.check.keywords)
    notes = "\n".join(f"- {w}" for w in res.check.warnings) or "- none"
    atomic_write_text(res.out / "report.md", f"""# {spec.lang}: added to {res.flash_image}

- Data: `{spec.data}` ({res.check.layout} layout), {sum(k.clips for k in res.check.keywords)} clips, {_speakers_line(res.check)}
- Labels ({len(res.labels)}): {', '.join(res.labels)}
- Method: {result.method} against the shipped base, {result.cost.total:,} updated parameters; selection `{res.selection}`
- Blob: **{res.blob_bytes:,} B**
- {res.held_out[0].upper() + res.held_out[1:]}: float {100 * res.float_acc:.1f}%, int8 host TFLM **{100 * res.int8_acc:.1f}%**
- Time: {res.timings_s['total']:.1f} s (check {res.timings_s['check']:.1f}, features {res.timings_s['features']:.1f}, adapt {res.timings_s['adapt']:.1f}, export {res.timings_s['export']:.1f}, pack {res.timings_s['pack']:.1f})

| keyword | clips | speakers | train/val/test |
|---|---:|---:|---|
{kw}

Data-check notes:
{notes}
""")
