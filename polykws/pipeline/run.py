"""Build the stage graph from a PipelineConfig and run it.

    corpus? -> scan -> features/<lang> -> base -> adapt/<lang>/<method>[/b<budget>]/s<seed>  (fan-out)
                                            \\-> export_base -> export/<job>  (fan-out) -> pack -> tflm_eval
                                                                                          \\-> firmware
    everything -> report

Stage configs hold only what changes a stage's output. Folder locations (the corpus root,
the feature cache, progress display) travel as `runtime` and are not part of any key; the
content of an external data folder enters the key as a fingerprint (relative path, size,
mtime of every file), so editing the data re-scans it and moving it does not.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from polykws.pipeline.stages import detection, device, exporting, ingest, mining, packing, pretrain, reporting, transfer
from polykws.core import to_plain
from polykws.datasets.augment import AugmentConfig
from polykws.pipeline.config import PipelineConfig, base_checkpoint_path, data_roots, resolve_path
from polykws.pipeline.engine import RunResult, Stage, make_executor
from polykws.pipeline.schedule import run_pipeline
from polykws.pipeline.store import ArtifactStore
from polykws.core import ConfigError, PolykwsError, atomic_write_json, stable_hash

def fingerprint_tree(root: Path, subdirs: Iterable[str] | None = None) -> str:
    """Hash of (relative path, size, mtime_ns) of every file under root (or root/<subdir> for each)."""
    if not root.is_dir():
        raise PolykwsError(f"{root}: data folder not found")
    tops = [root / d for d in subdirs] if subdirs else [root]
    rows = []
    for top in tops:
        if not top.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                st = p.stat()
                rows.append((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return stable_hash(rows, 32)


def job_name(lang: str, method: str, budget: int | None, seed: int, kind: str = "adapt") -> str:
    return f"{kind}/{lang}/{method}" + (f"/b{budget}" if budget is not None else "") + f"/s{seed}"


def firmware_status(cfg: PipelineConfig) -> tuple[list[str], dict[str, Any]]:
    """What the firmware stage lacks on this machine (empty = it can run), and a fingerprint of what it has."""
    missing = []
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} not found on PATH")
    info: dict[str, Any] = {}
    try:
        from polykws.firmware.build import ThirdParty

        for kernels in cfg.firmware.kernels:
            tp = ThirdParty.from_env(kernels)
            info["third_party"] = {k: _git_head(v) for k, v in vars(tp).items() if v is not None}
    except ModuleNotFoundError as exc:
        missing.append(f"the firmware layer is not importable ({exc.name})")
    except PolykwsError as exc:
        missing.append(str(exc))
    return missing, info


def _git_head(path: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or str(path)
    except (OSError, subprocess.SubprocessError):
        return str(path)


def build_stages(cfg: PipelineConfig, *, progress: bool = True) -> list[Stage]:
    out, runtime = _data_stages(cfg, progress)
    out.append(_base_stage(cfg, runtime))
    adapt, adapt_jobs, ship_adapt = _adapt_stages(cfg, runtime)
    out += adapt
    mining = _mining_stages(cfg, runtime, ship_adapt)
    out += mining
    ship_adapt = {**ship_adapt, **{s.config["language"]: s.name for s in mining}}
    adapt_jobs = adapt_jobs + [s.name for s in mining]
    export_jobs: dict[str, str] = {}
    ship_export: dict[str, str] = {}
    if cfg.export.enabled:
        export, export_jobs, ship_export = _export_stages(cfg, runtime, adapt_jobs, ship_adapt)
        out += export
    a = cfg.adapt
    report_cfg = {
        "config_name": cfg.name, "title": cfg.title or f"polykws run: {cfg.name}", "notes": list(cfg.notes),
        "base_language": cfg.base.language, "languages": list(a.languages), "frontend": cfg.data.frontend, "model": cfg.base.model,
        "ship_adapt": ship_adapt, "ship_export": ship_export, "export_jobs": export_jobs, "adapt_jobs": adapt_jobs,
        "ship_method": a.ship_method, "ship_budget": a.ship_budget, "export_enabled": cfg.export.enabled,
        "ship_streaming": {s.config["language"]: s.name for s in out if s.kind == "streaming"},
        "command": f"polykws run --config {cfg.source_path}" if cfg.source_path else "",
    }
    out.append(Stage("report", "report", reporting.report_stage, report_cfg, deps=tuple(s.name for s in out)))
    return out


def _task_languages(cfg: PipelineConfig) -> list[str]:
    b, a = cfg.base, cfg.adapt
    return [lang for lang in dict.fromkeys([b.language, *b.pool_languages, *a.languages]) if lang in cfg.data.tasks]


def _scan_languages(cfg: PipelineConfig, task_langs: list[str]) -> list[str]:
    """The task languages and every language their `_unknown_` draws on: a task's negatives (and
    its streams' other-language words) must not depend on which languages a run adapts."""
    extra = [lang for t in task_langs for lang in cfg.data.tasks[t].unknown_languages]
    return list(dict.fromkeys([*task_langs, *extra]))


def _root_entries(cfg: PipelineConfig, scan_langs: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each corpus root as key config (layout, languages, content fingerprint) and as a runtime path."""
    entries, paths = [], []
    for r in data_roots(cfg.data):
        entry: dict[str, Any] = {"layout": r.layout, "languages": list(r.languages) or scan_langs}
        if r.layout in ("gsc_v2", "auto"):
            entry["gsc_language"] = r.gsc_language
        if r.train_only:
            entry["train_only"] = True
        if r.path == "@corpus":
            entry["corpus"] = True
            paths.append("@corpus")
        else:
            path = resolve_path(r.path)
            langs_here = [lang for lang in entry["languages"] if (path / lang).is_dir()]
            entry["fingerprint"] = fingerprint_tree(path, langs_here or None)
            paths.append(str(path))
        entries.append(entry)
    return entries, paths


def _data_stages(cfg: PipelineConfig, progress: bool) -> tuple[list[Stage], dict[str, Any]]:
    """corpus? -> scan -> features/<lang>; also the runtime (folders, progress) every later stage gets."""
    d, b = cfg.data, cfg.base
    out: list[Stage] = []
    runtime: dict[str, Any] = {"progress": progress, "cache_dir": str(resolve_path(d.cache_dir))}
    data_deps: tuple[str, ...] = ()
    if any(r.path == "@corpus" for r in data_roots(d)):
        # resumable: the synthesizer keeps finished languages of a killed run (per-language markers).
        out.append(Stage("corpus", "corpus", ingest.corpus_stage, {"synth": to_plain(cfg.corpus)}, resumable=True, runtime=runtime))
        data_deps = ("corpus",)
    task_langs = _task_languages(cfg)
    scan_roots, root_paths = _root_entries(cfg, _scan_languages(cfg, task_langs))
    data_cfg: dict[str, Any] = {"roots": scan_roots}
    runtime = {**runtime, "roots": root_paths}
    if d.noise_dir.startswith("@corpus"):
        data_cfg["noise"] = d.noise_dir
        runtime["noise_rel"] = d.noise_dir[len("@corpus"):].lstrip("/")
    elif d.noise_dir:
        noise = resolve_path(d.noise_dir)
        data_cfg["noise_fingerprint"] = fingerprint_tree(noise)
        runtime["noise_dir"] = str(noise)
    out.append(Stage("scan", "scan", ingest.scan_stage, {"split": to_plain(d.split), **data_cfg},
                     deps=data_deps, runtime=runtime))
    for lang in task_langs:
        t = d.tasks[lang]
        folds = _fold_config(cfg, lang)
        out.append(Stage(
            f"features/{lang}", "features", ingest.features_stage,
            {"language": lang, "keywords": list(t.keywords), "task_options": _task_options(t), "max_per_keyword": t.max_per_keyword,
             "frontend": d.frontend, "augment_copies": d.base_augment_copies if lang == b.language else d.adapt_augment_copies,
             "seed": cfg.seed, **folds, **data_cfg, **({"frontend_warm_ms": d.frontend_warm_ms} if d.frontend_warm_ms else {}),
             **({"augment": d.augment.to_dict()} if d.augment != AugmentConfig() else {})},
            deps=("scan", *data_deps), runtime=runtime))
    return out, runtime


def _base_stage(cfg: PipelineConfig, runtime: dict[str, Any]) -> Stage:
    """A given checkpoint (verified and scored) or pretraining on the base language(s)."""
    d, b = cfg.data, cfg.base
    base_feats = tuple(f"features/{lang}" for lang in [b.language, *b.pool_languages] if lang in d.tasks)
    if b.checkpoint:
        from polykws.core import sha256_file

        ck = base_checkpoint_path(b)
        return Stage("base", "base", pretrain.given_base_stage, {"checkpoint_sha256": sha256_file(ck), "language": b.language, "frontend": d.frontend},
                     deps=base_feats[:1], runtime={**runtime, "checkpoint": str(ck)})
    return Stage("base", "base", pretrain.base_stage,
                 {"language": b.language, "pool_languages": list(b.pool_languages), "model": b.model, "frontend": d.frontend, "fit": to_plain(b.fit)},
                 deps=base_feats, resumable=True, runtime=runtime)


def _adapt_stages(cfg: PipelineConfig, runtime: dict[str, Any]) -> tuple[list[Stage], list[str], dict[str, str]]:
    """One fan-out stage per language x method x budget x seed; and the job each language ships."""
    from polykws.training.adapt import get_method

    a = cfg.adapt
    out: list[Stage] = []
    ship: dict[str, str] = {}
    for lang in a.languages:
        for method in a.methods:
            for budget in list(a.budgets) if get_method(method).budgeted else [None]:
                for seed in a.seeds:
                    name = job_name(lang, method, budget, seed)
                    out.append(Stage(
                        name, "adapt", transfer.adapt_stage,
                        {"language": lang, "method": method, "method_options": dict(a.method_options.get(method, {})),
                         "budget": budget, "budget_unit": a.budget_unit, "seed": seed, "fit": to_plain(a.fit), "threads": a.threads_per_job},
                        deps=("base", f"features/{lang}"),
                        fanout=True, threads=a.threads_per_job, seed=seed, runtime=runtime))
                    if method == a.ship_method and (budget == a.ship_budget or budget is None) and seed == a.seeds[0]:
                        ship[lang] = name
    return out, [s.name for s in out], ship


def _mining_stages(cfg: PipelineConfig, runtime: dict[str, Any], ship_adapt: dict[str, str]) -> list[Stage]:
    """mine/<lang>/... for each shipped job when adapt.mining.rounds > 0: hard negatives from
    training streams, then a fine-tune; what ships is its model instead of the adapted one."""
    from polykws.training.adapt import get_method

    a = cfg.adapt
    if not a.mining.rounds:
        return []
    corpus = _corpus_deps(cfg)
    budget = a.ship_budget if get_method(a.ship_method).budgeted else None
    out = []
    for lang, job in ship_adapt.items():
        out.append(Stage(
            "mine/" + job.split("/", 1)[1], "mine", mining.mining_stage,
            {"language": lang, "adapt_stage": job, "method": a.ship_method, "budget": budget, "budget_unit": a.budget_unit,
             "seed": a.seeds[0], "fit": to_plain(a.fit), "threads": a.threads_per_job, "mining": to_plain(a.mining),
             "snrs_db": list(cfg.streaming.snrs_db), **_stream_task_config(cfg, lang)},
            deps=("base", job, f"features/{lang}", "scan", *corpus),
            fanout=True, threads=a.threads_per_job, seed=a.seeds[0], runtime=runtime))
    return out


def _export_stages(cfg: PipelineConfig, runtime: dict[str, Any], adapt_jobs: list[str],
                   ship_adapt: dict[str, str]) -> tuple[list[Stage], dict[str, str], dict[str, str]]:
    """export_base, one export per (shipped or every) adaptation job, pack, tflm_eval, firmware."""
    b, a, e = cfg.base, cfg.adapt, cfg.export
    feats_all = tuple(f"features/{lang}" for lang in [b.language, *a.languages])
    out = [Stage("export_base", "export_base", exporting.export_base_stage,
                 {"language": b.language, "calibration_samples": e.calibration_samples, "languages": list(a.languages)},
                 deps=("base", *feats_all), runtime=runtime)]
    export_jobs: dict[str, str] = {}
    for job in adapt_jobs:
        if not e.all_jobs and job not in ship_adapt.values():
            continue
        lang = job.split("/")[1]
        # An adapt job's export keeps its old name; a mined model's is named after its stage.
        name = export_jobs[job] = "export/" + (job.split("/", 1)[1] if job.startswith("adapt/") else job)
        out.append(Stage(name, "export", exporting.export_language_stage,
                         {"language": lang, "base_language": b.language, "calibration_samples": e.calibration_samples,
                          "adapt_stage": job, **e.language_options()},
                         deps=("export_base", job, f"features/{lang}"),
                         fanout=True, threads=1, runtime=runtime))
    ship_export = {lang: export_jobs[job] for lang, job in ship_adapt.items()}
    streaming = _streaming_stages(cfg, runtime, ship_export)
    out += streaming
    pack_cfg: dict[str, Any] = {"languages": list(a.languages), "base_language": b.language, "ship": ship_export}
    if streaming:
        pack_cfg["models"] = {s.config["language"]: s.name for s in streaming}
    out.append(Stage("pack", "pack", packing.pack_stage, pack_cfg,
                     deps=("export_base", *ship_export.values(), *(s.name for s in streaming))))
    eval_cfg = {"base_language": b.language, "ship": ship_export, **({"models": pack_cfg["models"]} if streaming else {})}
    out.append(Stage("tflm_eval", "tflm_eval", packing.tflm_eval_stage, eval_cfg,
                     deps=("pack", *ship_export.values(), *(s.name for s in streaming), *feats_all)))
    out.append(_firmware_stage(cfg, runtime, feats_all))
    return out, export_jobs, ship_export


def _fold_config(cfg: PipelineConfig, lang: str) -> dict[str, Any]:
    """The speaker-fold re-split of `lang`, for the stages that read its rows (features, streams).

    Only a transfer language's own rows are re-split, so the base stages stay the same.
    """
    d = cfg.data
    if d.speaker_folds is not None and lang in cfg.adapt.languages and lang != cfg.base.language:
        return {"speaker_folds": to_plain(d.speaker_folds)}
    return {}


def _corpus_deps(cfg: PipelineConfig) -> tuple[str, ...]:
    """("corpus",) when a data root is the synthesized corpus: the stages that read audio wait for it."""
    return ("corpus",) if any(r.path == "@corpus" for r in data_roots(cfg.data)) else ()


def _stream_task_config(cfg: PipelineConfig, lang: str) -> dict[str, Any]:
    """What a stage that builds `lang`'s streams reads of its task: keywords, options, speaker fold."""
    t = cfg.data.tasks[lang]
    return {"keywords": list(t.keywords), "task_options": _task_options(t), **_fold_config(cfg, lang)}


def _streaming_stages(cfg: PipelineConfig, runtime: dict[str, Any], ship_export: dict[str, str]) -> list[Stage]:
    """streaming/<lang> for each shipped language when streaming.enabled: FRR at a fixed FA/h, thresholds into its blob."""
    if not cfg.streaming.enabled:
        return []
    corpus = _corpus_deps(cfg)
    out = []
    for lang, export_stage in ship_export.items():
        out.append(Stage(
            f"streaming/{lang}", "streaming", detection.streaming_stage,
            {"language": lang, "base_language": cfg.base.language, "export_stage": export_stage,
             "streaming": to_plain(cfg.streaming), **_stream_task_config(cfg, lang)},
            deps=("export_base", export_stage, "scan", *corpus), fanout=True, threads=1,
            runtime=runtime))
    return out


def _firmware_stage(cfg: PipelineConfig, runtime: dict[str, Any], feats_all: tuple[str, ...]) -> Stage:
    fw = cfg.firmware
    missing, fw_info = firmware_status(cfg)
    if fw.enabled == "on" and missing:
        raise ConfigError("firmware.enabled is on but: " + "; ".join(missing))
    runs = not missing and fw.enabled != "off"
    return Stage("firmware", "firmware", device.firmware_stage,
                 {"mode": fw.enabled, "boards": list(fw.boards), "kernels": list(fw.kernels), "bench_samples": fw.bench_samples,
                  "missing": missing if fw.enabled != "off" else [], "languages": [cfg.base.language, *cfg.adapt.languages], **fw_info},
                 deps=("pack", *feats_all) if runs else ("pack",),
                 runtime={**runtime, "build_root": os.environ.get("POLYKWS_FIRMWARE_BUILD", "")})


def _task_options(t) -> dict[str, Any]:
    from polykws.pipeline.config import task_spec_options

    return {k: list(v) if isinstance(v, tuple) else v for k, v in task_spec_options(t).items()}


def run(cfg: PipelineConfig, *, force: Iterable[str] = (), plan_only: bool = False, show_progress: bool = True,
        vectors_path: Path | None = None) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    t0 = time.perf_counter()
    stages = build_stages(cfg, progress=show_progress)
    store = ArtifactStore(cfg.artifacts_uri)
    if plan_only:
        _print_plan(cfg, stages, store)
        return 0
    ex = cfg.executor
    n_fan = sum(1 for s in stages if s.fanout)
    workers = ex.workers or min(os.cpu_count() or 1, max(1, n_fan))
    console.print(f"[bold]polykws run[/bold] {cfg.name}: {len(stages)} stages, artifacts in {store.uri}")
    if ex.ray_address and store.local:
        console.print(f"[yellow]note:[/yellow] with --ray-address the artifact store {store.uri} must be the same path on every "
                      "node (a shared filesystem), or use an object-store URI (e.g. s3://bucket/polykws)")
    try:
        with make_executor(ex.kind, workers=workers, ray_address=ex.ray_address or None) as executor:
            console.print(f"fan-out: {executor.name} executor, {executor.workers} worker(s)")
            result = run_pipeline(stages, store, executor, force=force, console=console, show_progress=show_progress, log=True)
        wall = time.perf_counter() - t0
        report_path = publish(cfg, result, wall)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or exc.errno is None:
            raise
        from polykws.pipeline.engine import storage_error

        raise PolykwsError(storage_error(exc, f"run {cfg.name}")) from None
    _print_summary(result, console)
    console.print(f"{len(result.ran())} stage(s) ran, {len(result.reused())} reused, {wall:.1f} s")
    for line in artifact_lines(result):
        print(line)
    print(f"report: {report_path}")
    if vectors_path is not None:
        fw = next(s for s in stages if s.name == "firmware")
        print(write_run_vectors(result, fw.config["languages"], Path(vectors_path)))
    return 0


def write_run_vectors(result: RunResult, languages: Iterable[str], path: Path) -> str:
    """The test vectors the firmware stage benches (every clip of each test split), as a file for `firmware bench --features`."""
    pack = result.outcomes["pack"].path
    from polykws.pipeline.stages.packing import split_vectors, write_vectors_npz

    vectors, langs, left_out = split_vectors(pack, {lang: result.outcomes[f"features/{lang}"].path for lang in languages})
    write_vectors_npz(path, vectors)
    counts = ", ".join(f"{lang} {len(vectors[f'{lang}_y'])}" for lang in langs)
    skipped = "".join(f"; left out {lang}: {why}" for lang, why in left_out.items())
    return f"test vectors: {path} ({counts} clips{skipped})"


def _print_plan(cfg: PipelineConfig, stages: list[Stage], store: ArtifactStore) -> None:
    from rich.console import Console
    from rich.table import Table

    from polykws.pipeline.schedule import plan

    rows = plan(stages, store)
    table = Table(title=f"{cfg.name}: {len(stages)} stages, artifacts in {store.uri}")
    for col in ("stage", "depends on", "fan-out", "status", "key"):
        table.add_column(col)
    for s, status, key in rows:
        table.add_row(s.name, ", ".join(s.deps) if len(s.deps) <= 3 else f"{len(s.deps)} stages", "yes" if s.fanout else "", status, key or "")
    Console().print(table)
    counts = {st: sum(1 for _, x, _ in rows if x == st) for st in ("reuse", "run", "after upstream")}
    Console().print(f"reuse {counts['reuse']}, run {counts['run']}, then {counts['after upstream']} downstream")


def publish(cfg: PipelineConfig, result: RunResult, wall_s: float) -> Path:
    """runs/<name>/run.json (what ran, what was reused, where) and a copy of the report folder."""
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "run.json", {
        "config": cfg.source_path,
        "name": cfg.name,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "wall_s": round(wall_s, 2),
        "stages": {n: {"kind": o.kind, "key": o.key, "status": o.status, "uri": o.uri, "build_wall_s": o.manifest.get("wall_s")}
                   for n, o in result.outcomes.items()},
        "resolved_config": to_plain(cfg),
    })
    report = result.outcomes["report"]
    final = out / "report"
    tmp = out / f".report-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(report.path, tmp)
    old = out / f".report-old-{os.getpid()}"
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final / "index.html"


def summary_table(data: dict[str, Any]):
    """The per-language table `polykws run` prints: 7 short columns, readable at 80 columns and in logs.

    The report (report.md, index.html) has every column; this one keeps what a terminal needs.
    """
    from rich import box
    from rich.table import Table

    from polykws.pipeline.report import num, pct

    table = Table(title="languages (speaker-disjoint test split)", box=box.SIMPLE_HEAD, pad_edge=False)
    for h in ("lang", "method", "budget", "clips", "float", "int8", "params", "blob B"):
        table.add_column(h, justify="left" if h in ("lang", "method") else "right", no_wrap=True)
    b = data.get("base") or {}
    if b:
        table.add_row(f"{b.get('language')} base", "pretrained", "-", num(b.get("test_clips")), pct(b.get("float_acc")),
                      pct(b.get("int8_acc")), num(b.get("params")), num(b.get("tflite_bytes")))
    for r in data.get("languages", []):
        table.add_row(r["lang"], str(r.get("method")), num(r.get("budget")), num(r.get("test_clips")), pct(r.get("float_acc")),
                      pct(r.get("int8_acc")), num(r.get("updated_params")), num(r.get("blob_bytes")))
    return table


def artifact_lines(result: RunResult) -> list[str]:
    """Where the shipped files are: the report, the pack folder and its flash image."""
    lines = []
    pack = result.outcomes.get("pack")
    if pack is not None:
        lines.append(f"pack: {pack.path}")
        if (pack.path / "flash.bin").exists():
            lines.append(f"flash image: {pack.path / 'flash.bin'}")
    return lines


def _print_summary(result: RunResult, console) -> None:
    """A compact per-language table on the terminal (the report has the full one)."""
    import json

    rep = result.outcomes.get("report")
    if rep is None:
        return
    data = json.loads((rep.path / "report.json").read_text())
    console.print(summary_table(data))
    fw = data.get("firmware") or {}
    if fw.get("status") != "measured":
        console.print(f"[yellow]firmware stage skipped:[/yellow] {fw.get('reason')}")
