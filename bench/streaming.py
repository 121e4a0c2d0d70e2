"""Streaming benchmark: per language, FRR vs false accepts per hour on long noisy streams.

    POLYKWS_SHARED=/work/shared nice -n 5 .venv/bin/python bench/streaming.py \\
        --config configs/shared-real.yaml --pack <store>/pack/<key> --out artifacts/bench/streaming
    .venv/bin/python bench/streaming.py --config C --export <export dir> [--export <dir> ...]   # exported language models
    .venv/bin/python bench/streaming.py --config C --pack P --report-only                      # re-aggregate finished rows

Per language of the models given (a pack folder: base.tflite + <lang>.blob + manifest.json, each
model rebuilt as base + blob; or export folders holding <lang>.tflite + <lang>.json):

1. streams (polykws.datasets.streams) from the config's corpus, scanned with the config's
   speaker-disjoint splits and its background-noise folder: the validation split's streams
   (``--val-negative-s-per-snr`` of negatives per SNR) and the test split's (``--negative-s-per-snr``,
   900 s x 4 SNRs = 1 hour of negatives by default), SNRs 20, 10, 5, 0 dB;
2. the streaming detector (polykws.export.streaming, docs/STREAMING.md) over the host TFLM runtime;
3. a threshold (one for all keywords) chosen on the validation streams at ``--target-fa`` FA/h,
   then scored on the test streams; the test DET curve (every threshold 0..256) gives FRR at 0.5
   and 1 FA/h (the best test operating point: an oracle, reported beside the validation-chosen one);
4. frontend parity: on the first test stream, the int8 model inputs of the streaming ring vs the
   per-clip features of the same 1 s of audio (``quantize_features(compute_features(...))``).

Each language x averaging window is written atomically to <out>/rows/<lang>.<state>.avg<ms>.json (a killed
run resumes; the model runs once per stream and every window re-averages its outputs);
<out>/results.md holds the table for docs/BENCHMARKS.md and <out>/det.png the DET curves.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

SNRS = (20.0, 10.0, 5.0, 0.0)


def load_models(pack: str | None, exports: list[str]) -> dict[str, dict]:
    """{lang: {"tflite", "labels", "frontend"}} from a pack folder or export folders."""
    from polykws.datasets.frontend import FrontendConfig
    from polykws.export.api import ExportedModel
    from polykws.export.blob import apply_blob

    out: dict[str, dict] = {}
    if pack:
        p = Path(pack)
        man = json.loads((p / "manifest.json").read_text())
        base = (p / man["base"]["file"]).read_bytes()
        fe = FrontendConfig.from_dict(man["frontend"])
        for lang, entry in man["languages"].items():
            model = apply_blob(base, (p / entry["file"]).read_bytes(), source=str(p / entry["file"]))
            out[lang] = {"tflite": model, "labels": tuple(entry["labels"]), "frontend": fe, "source": f"{p}/{entry['file']}"}
    for d in exports:
        d = Path(d)
        for js in sorted(d.glob("*.json")):
            if js.name == "stage.json" or not (d / f"{js.stem}.tflite").is_file():
                continue
            ex = ExportedModel.load(d, js.stem)
            out[ex.lang] = {"tflite": ex.tflite, "labels": tuple(ex.labels), "frontend": ex.frontend, "source": str(d / f"{ex.lang}.tflite")}
    return out


def load_data_config(path: str):
    """The run config for its data section; the base checkpoint (another stage's input) need not exist."""
    from polykws.pipeline.config import load_config

    return load_config(path, {"base.checkpoint": ""})


def scan_records(cfg):
    from polykws.datasets.scan import scan
    from polykws.pipeline.config import data_roots, resolve_path

    split = cfg.data.split  # the pipeline config parses it into a SplitConfig
    records = []
    for r in data_roots(cfg.data):
        opts = {"gsc_language": r.gsc_language} if r.layout in ("gsc_v2", "auto") else {}
        res = scan(resolve_path(r.path), layout=r.layout, languages=list(r.languages) or list(cfg.data.tasks), split=split, **opts)
        records += res.records
    return records


def model_label(labels: tuple[str, ...], lang: str, kw: str) -> str:
    """The model's name for a task keyword: the plain word, or `<lang>:<word>` in a multi-language head."""
    return kw if kw in labels else f"{lang}:{kw}"


def score_split(model, task, records, noise, split, stream_cfg, det_cfg, lang, parity=False, frontend_state="warm"):
    from dataclasses import replace

    from polykws.datasets.frontend import compute_features
    from polykws.datasets.streams import iter_streams
    from polykws.export.evaluate import find_arena_bytes, quantize_features
    from polykws.export.streaming import ScoredStream, score_stream, stream_features, stream_pcm
    from polykws.export.quantize import quantize_activations
    from polykws.export.evaluate import input_qparams

    arena = find_arena_bytes(model["tflite"])
    scored, info = [], {"streams": [], "parity": None}
    for s in iter_streams(records, task, noise, split, stream_cfg):
        pcm = stream_pcm(s.audio)
        tr = score_stream(model["tflite"], model["labels"], pcm, model["frontend"], det_cfg, arena, frontend_state)
        truth = tuple(replace(e, label=model_label(model["labels"], lang, e.label)) for e in s.keyword_events)
        scored.append(ScoredStream(s.name, tr, truth, s.duration_s))
        info["streams"].append({"name": s.name, "duration_s": s.duration_s, "keywords": len(truth), "events": len(s.events), "inferences": int(tr.frames.size)})
        print(f"  {s.name}: {s.duration_s:.0f} s, {len(truth)} keywords, {tr.frames.size} inferences", flush=True)
        if parity and info["parity"] is None:
            fe = model["frontend"]
            plan = det_cfg.plan(fe)
            q = quantize_activations(stream_features(pcm, fe), *input_qparams(model["tflite"]))
            newest = tr.frames[:: max(1, tr.frames.size // 200)][:200]
            diff = same = 0
            for n in newest:
                start = int(n - (plan.window_frames - 1)) * plan.frame_hop_samples
                clip = quantize_features(model["tflite"], compute_features(pcm[start : start + fe.clip_samples].astype(np.float32) / 32768.0, fe)[None])[0, ..., 0]
                ring = q[n - plan.window_frames + 1 : n + 1]
                diff += int(np.sum(clip != ring))
                same += int(clip.size)
            info["parity"] = {"windows": int(len(newest)), "int8_values": same, "int8_values_differing": diff, "stream": s.name}
        del s, pcm
    return scored, info


def run_language(lang, model, cfg, records, noise, args, det_cfg, average_windows_ms):
    """One row per averaging window: the model runs once per stream, the windows re-average its outputs."""
    from dataclasses import replace

    from polykws.datasets.features import TaskSpec
    from polykws.datasets.streams import StreamConfig
    from polykws.export.streaming import choose_thresholds, decide, det_curve, match, operating_point
    from polykws.pipeline.config import task_spec_options

    t = cfg.data.tasks[lang]
    task = TaskSpec(lang, tuple(t.keywords), **task_spec_options(t))
    t0 = time.time()
    val_cfg = StreamConfig(snrs_db=SNRS, negative_s_per_snr=args.val_negative_s_per_snr, seed=args.seed)
    val, val_info = score_split(model, task, records, noise, "val", val_cfg, det_cfg, lang, frontend_state=args.frontend_state)
    test_cfg = StreamConfig(snrs_db=SNRS, negative_s_per_snr=args.negative_s_per_snr, seed=args.seed)
    test, test_info = score_split(model, task, records, noise, "test", test_cfg, det_cfg, lang, parity=True, frontend_state=args.frontend_state)
    rows = []
    for avg_ms in average_windows_ms:
        dc = replace(det_cfg, average_window_ms=avg_ms)
        plan = dc.plan(model["frontend"])
        val_w = [replace(s, trace=s.trace.resmoothed(plan.average_inferences)) for s in val]
        test_w = [replace(s, trace=s.trace.resmoothed(plan.average_inferences)) for s in test]
        th = choose_thresholds(lang, val_w, dc, model["frontend"], args.target_fa)
        points = det_curve(test_w, dc, plan.refractory_frames)
        thr = next(iter(th.thresholds.values()))
        chosen = next(p for p in points if p.threshold == thr)
        per_snr = {}
        for snr in SNRS:
            streams = [s for s in test_w if s.name.endswith(f"/snr{snr:g}") and "/positive/" in s.name]
            hits = sum(match(decide(s.trace, thr, plan.refractory_frames), s.truth, s.trace.sample_rate_hz, dc).hits for s in streams)
            kws = sum(len(s.truth) for s in streams)
            per_snr[f"{snr:g}"] = {"keywords": kws, "frr": 1.0 - hits / kws if kws else None}
        op = {str(fa): (p.to_dict() if (p := operating_point(points, fa)) else None) for fa in (0.5, 1.0)}
        rows.append({
            "language": lang,
            "model": model["source"],
            "frontend": model["frontend"].kind,
            "frontend_state": args.frontend_state,
            "labels": list(model["labels"]),
            "detector": dc.to_dict(),
            "test_hours": sum(s.duration_s for s in test) / 3600.0,
            "test_negative_hours": sum(s.duration_s for s in test if "/negative/" in s.name) / 3600.0,
            "test_keywords": chosen.keywords,
            "val": {"hours": th.val_hours, "streams": val_info["streams"]},
            "thresholds": th.to_dict(),
            "at_val_threshold": {**chosen.to_dict(), "frr_by_snr": per_snr},
            "oracle": op,
            "det": [p.to_dict() for p in points],
            "parity": test_info["parity"],
            "streams": test_info["streams"],
            "wall_s": time.time() - t0,
        })
    return rows


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}"


def report(out: Path, rows: list[dict], ctx: dict) -> None:
    from polykws.core import atomic_write_text

    lines = [
        f"Streaming detection (docs/STREAMING.md), host TFLM; {ctx['date']}, {ctx['machine']}.",
        f"Command: `{ctx['command']}`", "",
        "| lang | frontend (state) | avg ms | test h (neg h) | keywords | FRR @0.5 FA/h | FRR @1 FA/h | thr (val @1 FA/h) | test FRR / FA/h at thr | FRR by SNR 20/10/5/0 dB | thr 0: FRR / FA/h | thr 255: FRR / FA/h | median latency s (thr 0) | ring vs clip int8 differing |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o5, o1, a = r["oracle"]["0.5"], r["oracle"]["1.0"], r["at_val_threshold"]
        snr = "/".join(_pct(v["frr"]) for v in a["frr_by_snr"].values())
        det = {p["threshold"]: p for p in r["det"]}
        lat = det[0]["median_latency_s"]
        ends = " | ".join(f"{_pct(det[t]['frr'])} / {det[t]['fa_per_hour']:.0f}" for t in (0, 255))
        par = r["parity"] or {}
        parity = f"{par.get('int8_values_differing', 0)}/{par.get('int8_values', 0)}" if par else "-"
        lines.append(
            f"| {r['language']} | {r['frontend']} ({r['frontend_state']}) | {r['detector']['average_window_ms']} | {r['test_hours']:.2f} ({r['test_negative_hours']:.2f}) | {r['test_keywords']} | "
            f"{_pct(o5['frr'] if o5 else None)} | {_pct(o1['frr'] if o1 else None)} | {r['thresholds']['thresholds'] and next(iter(r['thresholds']['thresholds'].values()))} | "
            f"{_pct(a['frr'])} / {a['fa_per_hour']:.2f} | {snr} | {ends} | {'-' if lat is None else f'{lat:.2f}'} | {parity} |"
        )
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
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
    ax.axvline(1.0, color="grey", lw=0.5)
    ax.axvline(0.5, color="grey", lw=0.5, ls=":")
    ax.set_title("DET, test streams (SNR 20/10/5/0 dB)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "det.png", dpi=120)
    plt.close(fig)


def main() -> int:
    from polykws.core import atomic_write_json, run_context
    from polykws.datasets.features import noise_files
    from polykws.export.streaming import DetectorConfig
    from polykws.pipeline.config import resolve_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--pack")
    ap.add_argument("--export", action="append", default=[])
    ap.add_argument("--langs", default="", help="comma-separated subset of the models' languages")
    ap.add_argument("--out", default="artifacts/bench/streaming")
    ap.add_argument("--stride-ms", type=int, default=DetectorConfig.stride_ms)
    ap.add_argument("--average-windows-ms", default=f"{DetectorConfig.average_window_ms}",
                    help="comma-separated averaging windows, all scored from one run of the model")
    ap.add_argument("--refractory-ms", type=int, default=DetectorConfig.refractory_ms)
    ap.add_argument("--negative-s-per-snr", type=float, default=900.0)
    ap.add_argument("--val-negative-s-per-snr", type=float, default=300.0)
    ap.add_argument("--target-fa", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frontend-state", choices=("warm", "reset"), default="warm",
                    help="reset: host-only measurement, per-window features as in training (docs/STREAMING.md)")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if not args.pack and not args.export:
        ap.error("give --pack or --export")

    out = Path(args.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    cfg = load_data_config(args.config)
    models = load_models(args.pack, args.export)
    langs = [lang for lang in (args.langs.split(",") if args.langs else models) if lang]
    missing = [lang for lang in langs if lang not in models or lang not in cfg.data.tasks]
    if missing:
        raise SystemExit(f"no model or no task in {args.config} for: {missing} (models: {sorted(models)})")
    windows = [int(w) for w in args.average_windows_ms.split(",") if w]
    det_cfg = DetectorConfig(stride_ms=args.stride_ms, average_window_ms=windows[0], refractory_ms=args.refractory_ms)
    ctx = run_context()
    if not args.report_only:
        records = scan_records(cfg)
        noise = noise_files(resolve_path(cfg.data.noise_dir)) if cfg.data.noise_dir else []
        for lang in langs:
            paths = {w: out / "rows" / f"{lang}.{args.frontend_state}.avg{w}.json" for w in windows}
            if all(p.exists() for p in paths.values()):
                print(f"{lang}: done before ({out / 'rows'})")
                continue
            t0 = time.time()
            for row in run_language(lang, models[lang], cfg, records, noise, args, det_cfg, windows):
                row["context"] = ctx
                atomic_write_json(paths[row["detector"]["average_window_ms"]], row)
                a = row["at_val_threshold"]
                print(f"{lang} avg {row['detector']['average_window_ms']} ms: FRR {100 * a['frr']:.1f}% at {a['fa_per_hour']:.2f} FA/h (thr {a['threshold']}), {time.time() - t0:.0f} s", flush=True)
    rows = [json.loads(p.read_text()) for lang in langs for st in ("warm", "reset") for w in windows if (p := out / "rows" / f"{lang}.{st}.avg{w}.json").exists()]
    report(out, rows, rows[0]["context"] if rows else ctx)
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
