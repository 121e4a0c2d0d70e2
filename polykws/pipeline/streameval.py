"""Streaming evaluation of shipped language models: FRR at a fixed false-accept rate on long noisy streams.

What `polykws run` (the `streaming/<lang>` stages), `polykws eval --streaming` and
bench/streaming.py share. Per language:

1. seeded streams (polykws.datasets.streams) from the language's validation and test speakers,
   keyword clips and negatives in the config's background noise at each SNR;
2. the streaming detector (polykws.export.streaming, docs/STREAMING.md) over the host TFLM
   runtime: the model runs once per stream and the traces are kept;
3. one threshold for every keyword, chosen on the validation streams at the target FA/h
   (`choose_thresholds`), then scored on the test streams; the test DET curve (every threshold
   0..256) gives FRR at 0.5 and 1 FA/h, the best test operating point (an oracle, reported
   beside the validation-chosen one).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from polykws.core import ConfigError, PolykwsError
from polykws.datasets.frontend import FrontendConfig
from polykws.export.streaming import DetectorConfig
from polykws.pipeline.config import StreamingSection

ORACLE_FA_PER_HOUR = (0.5, 1.0)
# The SNRs of the one-line summary, highest first: the conditions a detector's targets are stated at.
SUMMARY_SNRS_DB = ("20", "10", "5", "0")


@dataclass(frozen=True)
class StreamModel:
    """An int8 language model as the detector needs it."""

    tflite: bytes = field(repr=False)
    labels: tuple[str, ...]
    frontend: FrontendConfig
    source: str


def models_from_pack(pack_dir: str | Path) -> dict[str, StreamModel]:
    """Every language of a pack folder (base.tflite + <lang>.blob + manifest.json), rebuilt as base + blob."""
    from polykws.export.blob import apply_blob

    p = Path(pack_dir)
    try:
        man = json.loads((p / "manifest.json").read_text())
        base = (p / man["base"]["file"]).read_bytes()
        fe = FrontendConfig.from_dict(man["frontend"])
        entries = man["languages"].items()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PolykwsError(f"{p}: not a readable pack folder ({type(exc).__name__}: {exc})") from None
    out = {}
    for lang, entry in entries:
        src = p / entry["file"]
        out[lang] = StreamModel(apply_blob(base, src.read_bytes(), source=str(src)), tuple(entry["labels"]), fe, str(src))
    return out


def models_from_exports(folders: Sequence[str | Path]) -> dict[str, StreamModel]:
    """Every language model of export folders (<lang>.tflite + <lang>.json)."""
    from polykws.export.api import ExportedModel

    out = {}
    for d in map(Path, folders):
        for js in sorted(d.glob("*.json")):
            if js.name == "stage.json" or not (d / f"{js.stem}.tflite").is_file():
                continue
            ex = ExportedModel.load(d, js.stem)
            out[ex.lang] = StreamModel(ex.tflite, tuple(ex.labels), ex.frontend, str(d / f"{ex.lang}.tflite"))
    return out


def config_records(cfg) -> list:
    """Scanned clip records of a pipeline config's corpora, with the config's speaker-disjoint splits."""
    from polykws.datasets.scan import scan
    from polykws.datasets.splits import mark_training_only
    from polykws.datasets.synth import MULTILINGUAL
    from polykws.pipeline.config import data_roots, resolve_path

    records = []
    for r in data_roots(cfg.data):
        if r.train_only or (r.path == "@corpus" and r.languages and set(r.languages) <= {MULTILINGUAL}):
            continue  # training material (synthesized keywords, pseudo-words) never enters a stream
        if r.path.startswith("@corpus"):
            raise ConfigError(f"{cfg.source_path}: data root {r.path} is the pipeline's synthesized corpus; "
                              "score its streams inside `polykws run` (streaming.enabled: true)")
        opts = {"gsc_language": r.gsc_language} if r.layout in ("gsc_v2", "auto") else {}
        res = scan(resolve_path(r.path), layout=r.layout, languages=list(r.languages) or list(cfg.data.tasks), split=cfg.data.split, **opts)
        records += mark_training_only(res.records)
    return records


def stream_noise(noise_dir: str | Path | None, records, source: str) -> list[str]:
    """The background-noise files streams are built on: the configured noise folder's, else the
    corpora's own noise rows (`_background_noise_`). One rule for the pipeline's stages and the CLI."""
    from polykws.datasets.features import noise_files

    paths = noise_files(noise_dir) if noise_dir else [r.path for r in records if r.is_noise]
    if not paths:
        raise ConfigError(f"{source}: no background noise (data.noise_dir is empty and the corpora have none); streams need it")
    return paths


def config_noise(cfg, records) -> list[str]:
    """`stream_noise` for a pipeline config's data section."""
    from polykws.pipeline.config import resolve_path

    return stream_noise(resolve_path(cfg.data.noise_dir) if cfg.data.noise_dir else None, records, cfg.source_path)


def select_models(pack: str | Path | None, exports: Sequence[str | Path], tasks, langs: Sequence[str] = ()) -> dict[str, StreamModel]:
    """The models of a pack folder and export folders, for `langs` (default: every one of them);
    each must have a task in `tasks` (a config's data.tasks)."""
    models = {**(models_from_pack(pack) if pack else {}), **models_from_exports(exports)}
    langs = list(langs) or sorted(models)
    missing = [lang for lang in langs if lang not in models or lang not in tasks]
    if missing:
        raise PolykwsError(f"no model or no task for {missing} (models: {sorted(models)}; tasks: {sorted(tasks)})")
    return {lang: models[lang] for lang in langs}


def model_label(labels: Sequence[str], lang: str, keyword: str) -> str:
    """The model's name for a task keyword: the plain word, or `<lang>:<word>` in a multi-language head."""
    return keyword if keyword in labels else f"{lang}:{keyword}"


def score_split(model: StreamModel, task, records, noise_paths: Sequence[str], split: str, stream_cfg, det_cfg: DetectorConfig,
                *, frontend_state: str = "warm", parity: bool = False, log: Callable[[str], None] = print):
    """(ScoredStream per stream, info) for one split; `parity` also compares the first stream's
    int8 ring with the per-clip features of the same second of audio."""
    from polykws.datasets.frontend import compute_features
    from polykws.datasets.streams import iter_streams
    from polykws.export.evaluate import find_arena_bytes, input_qparams, quantize_features
    from polykws.export.quantize import quantize_activations
    from polykws.export.posterior import logits_model
    from polykws.export.streaming import ScoredStream, score_stream, stream_features, stream_pcm

    arena = find_arena_bytes(logits_model(model.tflite)[0])
    scored, info = [], {"streams": [], "parity": None}
    for s in iter_streams(records, task, noise_paths, split, stream_cfg):
        pcm = stream_pcm(s.audio)
        tr = score_stream(model.tflite, model.labels, pcm, model.frontend, det_cfg, arena, frontend_state)
        truth = tuple(replace(e, label=model_label(model.labels, task.language, e.label)) for e in s.keyword_events)
        scored.append(ScoredStream(s.name, tr, truth, s.duration_s, tuple(e for e in s.events if e.kind != "keyword")))
        info["streams"].append({"name": s.name, "duration_s": s.duration_s, "keywords": len(truth), "events": len(s.events),
                                "inferences": int(tr.frames.size)})
        log(f"  {s.name}: {s.duration_s:.0f} s, {len(truth)} keywords, {tr.frames.size} inferences")
        if parity and info["parity"] is None:
            fe = model.frontend
            plan = det_cfg.plan(fe)
            q = quantize_activations(stream_features(pcm, fe), *input_qparams(model.tflite))
            newest = tr.frames[:: max(1, tr.frames.size // 200)][:200]
            diff = same = 0
            for n in newest:
                start = int(n - (plan.window_frames - 1)) * plan.frame_hop_samples
                clip = quantize_features(model.tflite, compute_features(pcm[start : start + fe.clip_samples].astype(np.float32) / 32768.0, fe)[None])[0, ..., 0]
                ring = q[n - plan.window_frames + 1 : n + 1]
                diff += int(np.sum(clip != ring))
                same += int(clip.size)
            info["parity"] = {"windows": int(len(newest)), "int8_values": same, "int8_values_differing": diff, "stream": s.name}
        del s, pcm
    return scored, info


def evaluate_language(model: StreamModel, task, records, noise_paths: Sequence[str], settings: StreamingSection,
                      *, average_windows_ms: Sequence[int] = (), parity: bool = False,
                      log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per averaging window (default: the detector's own): thresholds chosen on the
    validation streams, the test DET curve, FRR at 0.5 and 1 FA/h, FRR by SNR and latency.

    The model runs once per stream; every window re-averages its outputs.
    """
    from polykws.export.streaming import Posterior, choose_thresholds, det_curve, score_thresholds

    lang = task.language
    t0 = time.time()
    det_cfg = settings.detector
    val, val_info = score_split(model, task, records, noise_paths, "val", settings.stream_config("val"), det_cfg,
                                frontend_state=settings.frontend_state, log=log)
    test, test_info = score_split(model, task, records, noise_paths, "test", settings.stream_config("test"), det_cfg,
                                  frontend_state=settings.frontend_state, parity=parity, log=log)
    rows = []
    candidates = ([Posterior("softmax", k) for k in settings.log2_temperatures] + ([Posterior("margin")] if settings.compare_margin else [])
                  + ([Posterior("rest", k) for k in settings.log2_temperatures] if settings.compare_rest else []))
    for avg_ms in list(average_windows_ms) or [det_cfg.average_window_ms]:
        dc = replace(det_cfg, average_window_ms=int(avg_ms))
        plan = dc.plan(model.frontend)
        # Each posterior gets its own validation threshold; the shippable one with the lowest
        # validation FRR at the target (ties: fewer false accepts, then the lower temperature) ships.
        chosen_at, val_of, test_traces = {}, {}, {}
        for post in candidates:
            val_of[post] = [replace(s, trace=s.trace.with_posterior(post, plan.average_inferences)) for s in val]
            chosen_at[post] = choose_thresholds(lang, val_of[post], dc, model.frontend, settings.target_fa_per_hour)
        post, th = min(((p, t) for p, t in chosen_at.items() if p.shippable),
                       key=lambda pt: (not pt[1].met_target, pt[1].val_frr, pt[1].val_fa_per_hour, pt[0].log2_temperature))
        compared, test_of = [], {}
        for other, oth in chosen_at.items():
            tw = test_traces[other] = [replace(s, trace=s.trace.with_posterior(other, plan.average_inferences)) for s in test]
            othr = next(iter(oth.thresholds.values()))
            pts = det_curve(tw, dc, plan.refractory_frames)
            test_of[other] = pts
            compared.append({"posterior": other.to_dict(), "name": other.name, "shippable": other.shippable, "shipped": other == post,
                             "threshold": othr, "val_frr": oth.val_frr, "val_fa_per_hour": oth.val_fa_per_hour, "met_target": oth.met_target,
                             "oracle": oracle(pts),
                             "at_val_threshold": next(p for p in pts if p.threshold == othr).to_dict(),
                             "by_snr": snr_points(tw, dc, plan.refractory_frames, settings.snrs_db, othr)})
        points = test_of[post]
        thr = next(iter(th.thresholds.values()))
        chosen = next(p for p in points if p.threshold == thr).to_dict()
        by_snr = next(c["by_snr"] for c in compared if c["shipped"])
        extra = {}
        if settings.per_keyword_thresholds:
            # The chosen posterior's validation traces again, one threshold per keyword: what ships,
            # with the one threshold's figures kept beside it.
            test_p = test_traces[post]
            kw = choose_thresholds(lang, val_of[post], dc, model.frontend, settings.target_fa_per_hour, per_keyword=True)
            extra["one_threshold"] = {"thresholds": th.to_dict(), "at_val_threshold": chosen,
                                      "by_snr": {k: v["at_val_threshold"] for k, v in by_snr.items()}}
            th, chosen = kw, score_thresholds(test_p, dc, plan.refractory_frames, kw.thresholds).to_dict()
            by_snr = {k: {**v, "at_val_threshold": _at(score_thresholds(snr_streams(test_p, k), dc,
                                                                        plan.refractory_frames, kw.thresholds))}
                      for k, v in by_snr.items()}
        rows.append({
            "language": lang,
            "model": model.source,
            "frontend": model.frontend.kind,
            "frontend_state": settings.frontend_state,
            "labels": list(model.labels),
            "detector": dc.to_dict(),
            "test_hours": sum(s.duration_s for s in test) / 3600.0,
            "test_negative_hours": sum(s.duration_s for s in test if "/negative/" in s.name) / 3600.0,
            "test_keywords": chosen["keywords"],
            "val": {"hours": th.val_hours, "streams": val_info["streams"]},
            "thresholds": th.to_dict(),
            "at_val_threshold": {**chosen, "frr_by_snr": {k: {"keywords": v["keywords"], "frr": v["at_val_threshold"]["frr"]}
                                                       for k, v in by_snr.items()}},
            "by_snr": by_snr,
            "posterior": post.to_dict(),
            "posteriors_compared": compared,
            "oracle": oracle(points),
            "det": [p.to_dict() for p in points],
            "parity": test_info["parity"],
            "streams": test_info["streams"],
            **extra,
            "wall_s": time.time() - t0,
        })
    return rows


def _at(p) -> dict[str, Any]:
    return {"frr": p.frr, "fa_per_hour": p.fa_per_hour, "false_accepts": p.false_accepts}


def oracle(points) -> dict[str, dict[str, Any] | None]:
    """The best test operating point at each of ORACLE_FA_PER_HOUR (None where none reaches it)."""
    from polykws.export.streaming import operating_point

    return {str(fa): (p.to_dict() if (p := operating_point(points, fa)) else None) for fa in ORACLE_FA_PER_HOUR}


def snr_streams(streams, snr: str) -> list:
    """The streams of one SNR (its key as `by_snr` writes it, e.g. "20")."""
    return [s for s in streams if s.name.endswith(f"/snr{snr}")]


def snr_points(streams, cfg: DetectorConfig, refractory_frames: int, snrs_db: Sequence[float], threshold: int) -> dict[str, dict[str, Any]]:
    """Per SNR, on that SNR's streams alone (its keywords and its negatives): the DET curve's
    FRR at 0.5 and 1 FA/h, and FRR and FA/h at the shipped `threshold`."""
    from polykws.export.streaming import det_curve

    out = {}
    for snr in snrs_db:
        sub = snr_streams(streams, f"{snr:g}")
        if not sub:
            continue
        points = det_curve(sub, cfg, refractory_frames)
        at = next(p for p in points if p.threshold == threshold)
        out[f"{snr:g}"] = {
            "hours": sum(s.duration_s for s in sub) / 3600.0,
            "keywords": at.keywords,
            "oracle": oracle(points),
            "at_val_threshold": _at(at),
        }
    return out


def summary_line(rows: Sequence[dict[str, Any]], snrs_db: Sequence[str] = SUMMARY_SNRS_DB, fa_per_hour: str = "1.0") -> str:
    """One line for a run: mean over languages of FRR at 1 FA/h (per-SNR DET), at each SNR, and
    at the shipped thresholds."""
    parts = []
    for snr in snrs_db:
        at_snr = [r["by_snr"][snr] for r in rows if snr in r.get("by_snr", {})]
        # No threshold reaching the rate is an FRR of 100 %.
        vals = [(v["oracle"].get(fa_per_hour) or {"frr": 1.0})["frr"] for v in at_snr]
        shipped = [v["at_val_threshold"] for v in at_snr]
        if vals:
            parts.append(f"{snr} dB: {_pct(float(np.mean(vals)))} % "
                         f"(shipped thresholds: FRR {_pct(float(np.mean([a['frr'] for a in shipped])))} % at "
                         f"{float(np.mean([a['fa_per_hour'] for a in shipped])):.2f} FA/h)")
    langs = ", ".join(sorted({r["language"] for r in rows}))
    return f"Mean FRR at {float(fa_per_hour):g} FA/h over {langs}: " + "; ".join(parts)


def posterior_name(row: dict[str, Any]) -> str:
    from polykws.export.streaming import Posterior

    return Posterior.from_dict(row.get("posterior") or {}).name


def posterior_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per language, every posterior scored side by side: validation-chosen threshold, its test
    FRR / FA/h, and the test DET's FRR at 1 FA/h overall and at each SNR."""
    snrs = sorted({k for r in rows for c in r.get("posteriors_compared", []) for k in c["by_snr"]}, key=lambda k: -float(k))
    lines = ["| lang | posterior | val thr (FRR / FA/h) | test at val thr: FRR / FA/h | FRR @1 FA/h | " + " | ".join(f"FRR @1 FA/h, {k} dB" for k in snrs) + " |",
             "|---|---|---|---|---|" + "---|" * len(snrs)]
    for r in rows:
        for c in r.get("posteriors_compared", []):
            o1 = c["oracle"]["1.0"]
            per = [(c["by_snr"].get(k, {}).get("oracle", {}).get("1.0") or {"frr": None})["frr"] for k in snrs]
            name = c["name"] + (" (shipped)" if c["shipped"] else "" if c["shippable"] else " (host only)")
            a = c["at_val_threshold"]
            lines.append(f"| {r['language']} | {name} | {c['threshold']} ({_pct(c['val_frr'])} / {c['val_fa_per_hour']:.2f}) | "
                         f"{_pct(a['frr'])} / {a['fa_per_hour']:.2f} | {_pct(o1['frr'] if o1 else None)} | " + " | ".join(_pct(v) for v in per) + " |")
    return lines


def _by_snr(d: dict[str, Any]) -> list[tuple[str, Any]]:
    """A per-SNR mapping's items, highest SNR first (JSON rows keep their keys sorted as text)."""
    return sorted(d.items(), key=lambda kv: -float(kv[0]))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def results_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The markdown table of streaming rows (docs/BENCHMARKS.md, `polykws eval --streaming`)."""
    lines = [
        "| lang | frontend (state) | avg ms | test h (neg h) | keywords | FRR @0.5 FA/h | FRR @1 FA/h | thr (val @target) | test FRR / FA/h at thr | FRR by SNR (dB) | thr 0: FRR / FA/h | thr 255: FRR / FA/h | median latency s (thr 0) | ring vs clip int8 differing |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o5, o1, a = r["oracle"]["0.5"], r["oracle"]["1.0"], r["at_val_threshold"]
        snr = " / ".join(f"{k}: {_pct(v['frr'])}" for k, v in _by_snr(a["frr_by_snr"]))
        det = {p["threshold"]: p for p in r["det"]}
        lat = det[0]["median_latency_s"]
        ends = " | ".join(f"{_pct(det[t]['frr'])} / {det[t]['fa_per_hour']:.0f}" for t in (0, 255))
        par = r["parity"] or {}
        parity = f"{par.get('int8_values_differing', 0)}/{par.get('int8_values', 0)}" if par else "-"
        th = r["thresholds"]
        thr = f"{threshold_text(th)}" + ("" if th.get("met_target", True) else " (target not met)")
        lines.append(
            f"| {r['language']} | {r['frontend']} ({r['frontend_state']}) | {r['detector']['average_window_ms']} | "
            f"{r['test_hours']:.2f} ({r['test_negative_hours']:.2f}) | {r['test_keywords']} | "
            f"{_pct(o5['frr'] if o5 else None)} | {_pct(o1['frr'] if o1 else None)} | {thr} | "
            f"{_pct(a['frr'])} / {a['fa_per_hour']:.2f} | {snr} | {ends} | {'-' if lat is None else f'{lat:.2f}'} | {parity} |")
    return lines


def snr_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per language and SNR: FRR at 0.5 and 1 FA/h on that SNR's test streams, and at the shipped threshold."""
    lines = ["| lang | SNR dB | test h | keywords | FRR @0.5 FA/h | FRR @1 FA/h | shipped thr: FRR / FA/h |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        for snr, v in _by_snr(r.get("by_snr", {})):
            o5, o1, a = v["oracle"]["0.5"], v["oracle"]["1.0"], v["at_val_threshold"]
            lines.append(f"| {r['language']} | {snr} | {v['hours']:.2f} | {v['keywords']} | {_pct(o5['frr'] if o5 else None)} | "
                         f"{_pct(o1['frr'] if o1 else None)} | {_pct(a['frr'])} / {a['fa_per_hour']:.2f} |")
    return lines


def plot_det(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "DET, test streams") -> Path:
    """FRR against false accepts per hour (log axis), one curve per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        # Points with no false accept have no place on a log axis; a curve that never gets there ends early.
        pts = sorted((p for p in r["det"] if p["fa_per_hour"] > 0), key=lambda p: p["fa_per_hour"])
        ax.plot([p["fa_per_hour"] for p in pts], [100 * p["frr"] for p in pts], marker=".", ms=2,
                label=f"{r['language']} ({r['frontend']}, {r['frontend_state']}, avg {r['detector']['average_window_ms']} ms)")
    ax.set_xscale("log")
    ax.set_xlabel("false accepts per hour")
    ax.set_ylabel("FRR %")
    for fa, ls in zip(ORACLE_FA_PER_HOUR, (":", "-")):
        ax.axvline(fa, color="grey", lw=0.5, ls=ls)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_results(out: str | Path, rows: Sequence[dict[str, Any]], *, header: Sequence[str] = (),
                  title: str = "DET, test streams") -> None:
    """<out>/results.md (the rows' table under `header`) and <out>/det.png."""
    from polykws.core import atomic_write_text

    out = Path(out)
    by_snr = [r for r in rows if r.get("by_snr")]
    extra = ["", summary_line(by_snr), "", *snr_table(by_snr)] if by_snr else []
    if any(len(r.get("posteriors_compared", [])) > 1 for r in rows):
        extra += ["", *posterior_table(rows)]
    atomic_write_text(out / "results.md", "\n".join([*header, *results_table(rows), *extra]) + "\n")
    plot_det(rows, out / "det.png", title=title)


def threshold_text(thresholds: dict[str, Any]) -> int | str:
    """A LanguageThresholds dict's thresholds for a table: the one threshold, or the per-keyword range."""
    values = sorted(set(thresholds["thresholds"].values()))
    return values[0] if len(values) == 1 else f"per keyword {values[0]}-{values[-1]}"


def row_summary(row: dict[str, Any]) -> dict[str, Any]:
    """The figures a report shows for one language (no curve, no stream list)."""
    a, th = row["at_val_threshold"], row["thresholds"]
    return {
        "frr_at_1_fa_per_hour": (row["oracle"]["1.0"] or {}).get("frr"),
        "frr_at_0_5_fa_per_hour": (row["oracle"]["0.5"] or {}).get("frr"),
        "threshold": threshold_text(th),
        "posterior": posterior_name(row),
        "threshold_met_target": th.get("met_target", True),
        "target_fa_per_hour": th["target_fa_per_hour"],
        "shipped_frr": a["frr"],
        "shipped_fa_per_hour": a["fa_per_hour"],
        "median_latency_s": a.get("median_latency_s"),
        "test_hours": row["test_hours"],
        "test_negative_hours": row["test_negative_hours"],
        "test_keywords": row["test_keywords"],
    }
