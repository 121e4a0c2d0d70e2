"""Streaming benchmark: per language, FRR vs false accepts per hour on long noisy streams.

    POLYKWS_SHARED=/work/shared nice -n 5 .venv/bin/python bench/streaming.py \\
        --config configs/shared-real.yaml --pack <store>/pack/<key> --out artifacts/bench/streaming
    .venv/bin/python bench/streaming.py --config C --export <export dir> [--export <dir> ...]   # exported language models
    .venv/bin/python bench/streaming.py --config C --pack P --report-only                      # re-aggregate finished rows
    .venv/bin/python bench/streaming.py --rows <store>/streaming/*/streaming.json --out O       # a `polykws run`'s streaming stages, one table

Per language of the models given (a pack folder: base.tflite + <lang>.blob + manifest.json, each
model rebuilt as base + blob; or export folders holding <lang>.tflite + <lang>.json):

1. streams (polykws.datasets.streams) from the config's corpus, scanned with the config's
   speaker-disjoint splits and its background-noise folder: the validation split's streams
   (``--val-negative-s-per-snr`` of negatives per SNR) and the test split's (``--negative-s-per-snr``,
   900 s x 4 SNRs = 1 hour of negatives by default), SNRs 20, 10, 5, 0 dB;
2. the streaming detector (polykws.export.streaming, docs/STREAMING.md) over the host TFLM runtime;
3. a threshold (one for all keywords) chosen on the validation streams at ``--target-fa`` FA/h,
   with the posterior (``--log2-temperatures``: the softmax temperature, shipped in the blob),
   then scored on the test streams; the test DET curve (every threshold 0..256) gives FRR at 0.5
   and 1 FA/h (the best test operating point: an oracle, reported beside the validation-chosen one),
   overall and per SNR, with the one-line summary (mean FRR at 1 FA/h per SNR over the languages);
   ``--compare-margin`` scores the logit margin beside the softmax posteriors, and
   ``--compare-rest`` the keyword-vs-rest score at each temperature;
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


SNRS = (20.0, 10.0, 5.0, 0.0)


def load_data_config(path: str):
    """The run config for its data section; the base checkpoint (another stage's input) need not exist."""
    from polykws.pipeline.config import load_config

    return load_config(path, {"base.checkpoint": ""})


def report(out: Path, rows: list[dict], ctx: dict) -> None:
    from polykws.pipeline.streameval import write_results

    write_results(out, rows, header=[f"Streaming detection (docs/STREAMING.md), host TFLM; {ctx['date']}, {ctx['machine']}.",
                                     f"Command: `{ctx['command']}`", ""], title="DET, test streams (SNR 20/10/5/0 dB)")


def main() -> int:
    from polykws.core import atomic_write_json, run_context
    from polykws.export.streaming import DetectorConfig
    from polykws.pipeline.config import StreamingSection
    from polykws.pipeline.streameval import config_noise, config_records, evaluate_language, select_models

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config")
    ap.add_argument("--rows", nargs="*", default=[], help="streaming.json files of `polykws run` streaming stages: tabulate them, score nothing")
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
    ap.add_argument("--log2-temperatures", default="0",
                    help="comma-separated softmax temperatures 2**k to choose among on validation (docs/STREAMING.md, Posteriors)")
    ap.add_argument("--compare-margin", action="store_true", help="also score the logit-margin posterior (host only)")
    ap.add_argument("--compare-rest", action="store_true", help="also score the keyword-vs-rest posterior at each temperature (host only)")
    ap.add_argument("--frontend-state", choices=("warm", "reset"), default="warm",
                    help="reset: host-only measurement, per-window features as in training (docs/STREAMING.md)")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if args.rows:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        rows = sorted((json.loads(Path(p).read_text()) for p in args.rows), key=lambda r: r["language"])
        ctx = {**run_context(), "command": "bench/streaming.py --rows " + " ".join(args.rows)}
        report(out, rows, ctx)
        print((out / "results.md").read_text())
        return 0
    if not args.config or not (args.pack or args.export):
        ap.error("give --config and --pack or --export (or --rows)")

    out = Path(args.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    cfg = load_data_config(args.config)
    models = select_models(args.pack, args.export, cfg.data.tasks, [lang for lang in args.langs.split(",") if lang])
    langs = list(models)
    windows = [int(w) for w in args.average_windows_ms.split(",") if w]
    det_cfg = DetectorConfig(stride_ms=args.stride_ms, average_window_ms=windows[0], refractory_ms=args.refractory_ms)
    settings = StreamingSection(enabled=True, target_fa_per_hour=args.target_fa, snrs_db=SNRS, test_negative_s_per_snr=args.negative_s_per_snr,
                                val_negative_s_per_snr=args.val_negative_s_per_snr, detector=det_cfg, frontend_state=args.frontend_state,
                                seed=args.seed, log2_temperatures=tuple(int(k) for k in args.log2_temperatures.split(",") if k),
                                compare_margin=args.compare_margin, compare_rest=args.compare_rest)
    ctx = run_context()
    if not args.report_only:
        records = config_records(cfg)
        noise = config_noise(cfg, records)
        for lang in langs:
            paths = {w: out / "rows" / f"{lang}.{args.frontend_state}.avg{w}.json" for w in windows}
            if all(p.exists() for p in paths.values()):
                print(f"{lang}: done before ({out / 'rows'})")
                continue
            t0 = time.time()
            task = cfg.data.tasks[lang].spec(lang)
            for row in evaluate_language(models[lang], task, records, noise, settings, average_windows_ms=windows, parity=True,
                                         log=lambda line: print(line, flush=True)):
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
