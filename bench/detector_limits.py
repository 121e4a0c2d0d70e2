"""What limits a language's detector: which words score highest on its negative streams, and each keyword armed alone.

    POLYKWS_SHARED=/work/shared nice -n 5 .venv/bin/python bench/detector_limits.py \\
        --config configs/shared-real-micro.yaml --run runs/shared-real-micro/run.json --out artifacts/bench/detector_limits
    .venv/bin/python bench/detector_limits.py --out O --report-only      # re-aggregate finished languages

Per language of a finished `polykws run` (the model its streaming stage scored, with the posterior
that stage chose on validation):

1. the test streams of every SNR (polykws.datasets.streams, the config's corpus and noise),
   scored once through the host TFLM runtime (polykws.pipeline.streameval.score_split);
2. **where false accepts come from**: every negative word's peak score, the highest smoothed
   keyword posterior (S/n, 0-256, argmax over the keywords as the detector takes it) from 0.2 s
   before its onset to 1 s after its end, and one peak per negative stream for the noise far from
   any word. The `--top` highest, with their kind, word, the keyword they score as and the SNR;
   beside them the keyword events' own peaks (percentiles) and, at the score only the fifth-highest
   negative word reaches, the share of keywords that reach it too;
3. **each keyword armed alone** (every other keyword's threshold at 256, as a wake-word product
   on the same model would run): its threshold is chosen on the test streams themselves (an
   oracle, an upper bound on what a validation-chosen one reaches), FRR at 0, 1 and 2 false
   accepts over all test streams.

Each language is written atomically to <out>/<lang>.json (a killed run resumes; a finished
language is kept); <out>/results.md holds the tables for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

# Seconds around a word in which a keyword posterior counts as the word's: the 1 s window
# reaches the word's end up to a second after it, and the averaging starts just before it.
BEFORE_S, AFTER_S = 0.2, 1.0
FALSE_ACCEPT_BUDGETS = (0, 1, 2)


def shipped_models(run_json: Path, langs: list[str]) -> dict[str, tuple[Path, dict]]:
    """lang -> (export folder, chosen posterior) of each streaming stage of a run."""
    stages = json.loads(run_json.read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        if not name.startswith("streaming/"):
            continue
        lang = name.split("/", 1)[1]
        if langs and lang not in langs:
            continue
        row = json.loads((Path(stage["uri"]) / "streaming.json").read_text())
        export_stage = str(Path(row["model"]).parent)
        if export_stage not in stages:
            raise SystemExit(f"{run_json}: {name} scored {row['model']}, but the run has no stage {export_stage}")
        out[lang] = (Path(stages[export_stage]["uri"]), row["posterior"])
    missing = [lang for lang in langs if lang not in out]
    if missing or not out:
        raise SystemExit(f"{run_json}: no streaming stage for {missing or 'any language'}")
    return out


def peaks(scored, never_fire: set[str]) -> tuple[list[dict], list[dict]]:
    """(negative words and noise stretches, keyword events), each with its peak keyword score."""
    negatives, keywords = [], []
    for s in scored:
        tr = s.trace
        top = tr.sums.argmax(axis=1)
        score = tr.sums[np.arange(top.size), top] / np.maximum(tr.counts, 1)
        armed = np.array([tr.labels[i] not in never_fire for i in top])
        t_s = np.asarray(tr.frame_end_s(tr.frames), np.float64)
        snr = s.name.rsplit("snr", 1)[1]
        near = np.zeros(t_s.size, bool)
        for kind, events in (("keyword", s.truth), ("negative", s.negatives)):
            for e in events:
                win = (t_s >= e.start_sample / tr.sample_rate_hz - BEFORE_S) & (t_s <= e.end_sample / tr.sample_rate_hz + AFTER_S)
                near |= win
                idx = np.flatnonzero(win & armed)
                j = int(idx[np.argmax(score[idx])]) if idx.size else -1
                row = {"score": float(score[j]) if j >= 0 else 0.0, "kind": e.kind, "word": e.label,
                       "scored_as": tr.labels[int(top[j])] if j >= 0 else "", "file": Path(e.path).name, "snr_db": snr}
                (keywords if kind == "keyword" else negatives).append(row)
        far = np.flatnonzero(~near & armed)
        if "/negative/" in s.name and far.size:
            j = int(far[np.argmax(score[far])])
            negatives.append({"score": float(score[j]), "kind": "noise", "word": "", "scored_as": tr.labels[int(top[j])], "file": "", "snr_db": snr})
    negatives.sort(key=lambda r: -r["score"])
    return negatives, keywords


def analyse(lang: str, export: Path, posterior: dict, cfg, records, noise, top: int) -> dict:
    from polykws.export.streaming import NEVER_FIRE, Posterior, keyword_curve
    from polykws.pipeline.streameval import models_from_exports, score_split

    model = models_from_exports([export])[lang]
    post = Posterior.from_dict(posterior)
    task = cfg.data.tasks[lang].spec(lang)
    det = cfg.streaming.detector
    plan = det.plan(model.frontend)
    scored, _ = score_split(model, task, records, noise, "test", cfg.streaming.stream_config("test"), det, log=lambda line: print(line, flush=True))
    scored = [replace(s, trace=s.trace.with_posterior(post, plan.average_inferences)) for s in scored]
    negatives, kw_peaks = peaks(scored, set(NEVER_FIRE))
    kw_scores = np.array([r["score"] for r in kw_peaks])
    fifth = negatives[min(4, len(negatives) - 1)]["score"] if negatives else 0.0
    alone = {}
    for kw in [lb for lb in model.labels if lb not in NEVER_FIRE]:
        events = sum(1 for s in scored for e in s.truth if e.label == kw)
        curve = keyword_curve(scored, det, plan.refractory_frames, kw, max(FALSE_ACCEPT_BUDGETS))
        alone[kw] = {"events": events, **{f"frr_at_{m}_fa": (1.0 - max((h for _, h, fa in curve if fa <= m), default=0) / events) if events else None
                                          for m in FALSE_ACCEPT_BUDGETS}}
    return {
        "language": lang, "model": str(export), "posterior": post.to_dict(), "posterior_name": post.name,
        "test_hours": sum(s.duration_s for s in scored) / 3600.0, "negative_words": sum(1 for r in negatives if r["kind"] != "noise"),
        "keyword_events": len(kw_peaks),
        "keyword_peak_percentiles": {str(q): float(np.percentile(kw_scores, q)) for q in (10, 25, 50, 75)} if kw_scores.size else {},
        "fifth_negative_score": fifth, "keywords_at_fifth_negative": float(np.mean(kw_scores >= fifth)) if kw_scores.size else None,
        "top_negatives": negatives[:top],
        "keyword_alone": alone,
    }


def results_md(rows: list[dict], top: int) -> str:
    from polykws.pipeline.report import pct

    lines = ["Negative words by peak keyword score (test streams, every SNR; the shipped posterior):", "",
             f"| lang | posterior | negative words | top {top}: by kind and language | top {top}: most frequent words | keywords reaching the 5th-highest negative's score |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        by = collections.Counter((n["kind"] if n["kind"] != "other_language" else n["word"].split(":")[0]) for n in r["top_negatives"])
        words = collections.Counter(f"{n['word'] or 'noise'} as {n['scored_as']}" for n in r["top_negatives"])
        lines.append(f"| {r['language']} | {r['posterior_name']} | {r['negative_words']} | {', '.join(f'{k} {v}' for k, v in by.most_common())} | "
                     f"{', '.join(f'{k} ({v})' for k, v in words.most_common(5))} | {pct(r['keywords_at_fifth_negative'])} (score {r['fifth_negative_score']:.1f}) |")
    lines += ["", "Each keyword armed alone, its threshold chosen on test (oracle); FRR at <= 0 / 1 / 2 false accepts over all test streams:", "",
              "| lang | test hours | keyword (events): FRR at <= 1 FA | mean FRR <= 0 / 1 / 2 FA |", "|---|---|---|---|"]
    for r in rows:
        a = r["keyword_alone"]
        # A keyword without test events has no FRR: listed last, left out of the mean.
        mean = [np.mean(vals) if (vals := [v[f"frr_at_{m}_fa"] for v in a.values() if v[f"frr_at_{m}_fa"] is not None]) else None
                for m in FALSE_ACCEPT_BUDGETS]
        order = sorted(a.items(), key=lambda kv: (kv[1]["frr_at_1_fa"] is None, kv[1]["frr_at_1_fa"] or 0.0))
        each = ", ".join(f"{k} ({v['events']}) {pct(v['frr_at_1_fa'])}" for k, v in order)
        lines.append(f"| {r['language']} | {r['test_hours']:.2f} | {each} | {' / '.join(pct(m) for m in mean)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from polykws.core import atomic_write_json, atomic_write_text, run_context

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="the run's config (its corpus, noise and streaming settings)")
    ap.add_argument("--run", help="the finished run's run.json")
    ap.add_argument("--langs", default="", help="comma-separated (default: every language the run streamed)")
    ap.add_argument("--top", type=int, default=40, help="negative words kept per language")
    ap.add_argument("--out", required=True)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        if not (args.config and args.run):
            ap.error("give --config and --run (or --report-only)")
        from polykws.pipeline.config import load_config
        from polykws.pipeline.streameval import config_noise, config_records

        cfg = load_config(args.config, {"base.checkpoint": ""})
        models = shipped_models(Path(args.run), [lang for lang in args.langs.split(",") if lang])
        records = config_records(cfg)
        noise = config_noise(cfg, records)
        ctx = {**run_context(), "command": f"bench/detector_limits.py --config {args.config} --run {args.run}"}
        for lang, (export, posterior) in models.items():
            path = out / f"{lang}.json"
            if path.exists():
                print(f"{lang}: done before ({path})")
                continue
            atomic_write_json(path, {**analyse(lang, export, posterior, cfg, records, noise, args.top), "context": ctx})
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    if not rows:
        raise SystemExit(f"{out}: no finished language")
    ctx = rows[0]["context"]
    text = f"Detector limits (bench/detector_limits.py), host TFLM; {ctx['date']}, {ctx['machine']}.\nCommand: `{ctx['command']}`\n\n" + results_md(rows, args.top)
    atomic_write_text(out / "results.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
