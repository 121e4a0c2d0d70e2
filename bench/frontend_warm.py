"""Warm vs reset micro frontend: how much do a device's continuous features differ from training's?

    POLYKWS_SHARED=/work/shared nice -n 5 .venv/bin/python bench/frontend_warm.py --config configs/shared-real.yaml

Training computes every clip's ``micro`` features from a fresh frontend (noise estimate and PCAN
gain start from zero). A device runs the frontend continuously, so by the time a word arrives its
noise reduction and PCAN have adapted to the preceding audio. This benchmark feeds the *same*
int16 samples both ways:

- reset: ``compute_features(clip + noise)`` - exactly what the feature cache holds;
- warm: ``--warmup-s`` seconds of the same background noise, then the same ``clip + noise``,
  through one streaming frontend (``polykws.datasets.frontend.compute_features_warm``); the
  clip's 49 frames are cut from the stream on the same frame grid and decimation phase.

Clips: up to ``--clips-per-lang`` test-split keyword clips per language (speaker-disjoint splits
of the config), loaded as the feature cache loads them (1 s). Noise: the test split of the
config's background-noise files, scaled to each condition's SNR against the clip's active speech.
The ``silence`` condition warms on digital zeros and adds no noise: it checks the method (a
frontend warmed on zeros should equal a reset one).

Figures: differences in frontend units (x 0.0390625) and on the int8 model input over the pinned
range [0, 26] (scale 26/255, zero point -128), over all frames and over the first 10 frames of a
clip (where a reset frontend's noise estimate is still rising). With ``--train-lang``, a DS-CNN-S
is trained from scratch on that language's micro features (the project's feature cache and
``training.fit``; ``--augment-copies`` noisy copies per clip) once per ``--train-warm-ms`` value
(0: reset features; else augmented copies and ``_silence_`` crops from a frontend warmed that
long on their own background, ``load_task_features(frontend_warm_ms=...)``), and its float test
accuracy is scored on the reset and warm features of every condition; each model is exported to
int8 (<out>/export_<lang>[_aug<n>_warm<ms>], for bench/streaming.py).
Writes <out>/warm_vs_reset.json and results.md.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

CONDITIONS = (("silence", None), ("noise 20 dB", 20.0), ("noise 10 dB", 10.0), ("noise 0 dB", 0.0))
EARLY_FRAMES = 10


def int8_input(x: np.ndarray, cfg) -> np.ndarray:
    from polykws.export.quantize import quantize_activations

    lo, hi = cfg.value_range
    scale = (hi - lo) / 255.0
    return quantize_activations(x, scale, int(round(-128 - lo / scale)))


def clip_pairs(clips, noise_waves, cfg, snr_db, warmup_s, seed):
    """(reset, warm) features (N, 49, 40) of every clip under one condition."""
    from polykws.datasets.augment import active_power
    from polykws.datasets.frontend import compute_features, compute_features_warm

    hop = cfg.stride_samples * cfg.frame_decimation
    warm_samples = int(round(warmup_s * cfg.sample_rate_hz)) // hop * hop
    resets, warms = [], []
    for i, clip in enumerate(clips):
        rng = np.random.default_rng([seed, i, 0 if snr_db is None else 1 + int(snr_db * 10)])
        n = warm_samples + clip.shape[0]
        if snr_db is None:
            noise = np.zeros(n, np.float32)
        else:
            w = noise_waves[int(rng.integers(0, len(noise_waves)))]
            noise = np.resize(w, n) if w.shape[0] <= n else w[(s := int(rng.integers(0, w.shape[0] - n + 1))) : s + n]
            p_noise = float(np.mean(noise[warm_samples:].astype(np.float64) ** 2)) or float(np.mean(noise.astype(np.float64) ** 2))
            noise = (noise * math.sqrt(active_power(clip) / (p_noise * 10 ** (snr_db / 10)))).astype(np.float32)
        audio = np.clip(clip + noise[warm_samples:], -1.0, 1.0)
        resets.append(compute_features(audio, cfg))
        warms.append(compute_features_warm(audio, np.clip(noise[:warm_samples], -1.0, 1.0), cfg))
    return np.stack(resets), np.stack(warms)


def stats(reset: np.ndarray, warm: np.ndarray, cfg) -> dict:
    qr, qw = int8_input(reset, cfg).astype(np.int32), int8_input(warm, cfg).astype(np.int32)
    d = qw - qr
    early = d[:, :EARLY_FRAMES]
    return {
        "clips": int(reset.shape[0]),
        "mean_abs_diff_units": float(np.mean(np.abs(warm - reset)) / cfg.micro_params["output_scale"]),
        "int8_differing_pct": float(100 * np.mean(d != 0)),
        "int8_mean_abs_diff_lsb": float(np.mean(np.abs(d))),
        "int8_mean_signed_diff_lsb": float(np.mean(d)),
        "int8_max_abs_diff_lsb": int(np.max(np.abs(d))) if d.size else 0,
        "int8_first10_mean_abs_diff_lsb": float(np.mean(np.abs(early))),
        "int8_after10_mean_abs_diff_lsb": float(np.mean(np.abs(d[:, EARLY_FRAMES:]))),
        "int8_input_std_lsb": float(np.std(qr)),
    }


def train_micro_model(lang, cfg, records, noise_dir, args, out, warm_ms: float = 0.0):
    """DS-CNN-S from scratch on the language's micro features (the project's cache and fit): reset
    features, or with `warm_ms` augmented copies and _silence_ crops from a warmed frontend."""
    import torch

    from polykws.datasets.features import load_task_features
    from polykws.datasets.task import TaskSpec
    from polykws.pipeline.config import task_spec_options
    from polykws.training.config import FitConfig
    from polykws.training.data import loaders_from_splits
    from polykws.training.fit import CHECKPOINT_NAME, fit
    from polykws.training.models.registry import create_model
    from polykws.core import seed_everything

    t = cfg.data.tasks[lang]
    task = TaskSpec(lang, tuple(t.keywords), **task_spec_options(t))
    from polykws.datasets.frontend import micro_frontend

    fe = micro_frontend()
    splits = load_task_features(records, task, fe, cache_dir=Path(".cache/features"), noise_dir=noise_dir, seed=0, progress=False,
                                augment_copies=args.augment_copies, frontend_warm_ms=warm_ms)
    torch.set_num_threads(1)
    seed_everything(0)
    model = create_model("ds_cnn_s", num_classes=len(task.labels), input_shape=fe.input_shape)
    fit_cfg = FitConfig(epochs=args.epochs, batch_size=64, label_smoothing=0.05, progress=False, num_threads=1)
    # A finished run is reused and a killed one continues (training.fit checks the config hash).
    run_dir = out / (f"model_{lang}" + (f"_aug{args.augment_copies}_warm{warm_ms:g}" if args.augment_copies or warm_ms else ""))
    res = fit(model, loaders_from_splits(splits, batch_size=64, seed=0), fit_cfg, run_dir=run_dir, frontend=fe,
              resume=(run_dir / CHECKPOINT_NAME).exists())
    from polykws.training.checkpoint import load_model

    return load_model(res.best_path).model.eval(), task, splits


def accuracy(model, x, y) -> float:
    import torch

    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(x, np.float32))[:, None])
    return float((logits.argmax(1).numpy() == y).mean())


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--langs", default="uk,ar,bn,gu,lt")
    ap.add_argument("--clips-per-lang", type=int, default=40)
    ap.add_argument("--warmup-s", type=float, default=5.0)
    ap.add_argument("--train-lang", default="uk", help="train a micro model on this language and score warm vs reset accuracy ('' to skip)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--augment-copies", type=int, default=0, help="augmented (noisy) copies per training clip")
    ap.add_argument("--train-warm-ms", default="0",
                    help="comma-separated: one model per value, its augmented copies and _silence_ crops from a frontend warmed this long")
    ap.add_argument("--out", default="artifacts/bench/frontend_warm")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def pick_clips(cfg, records, args) -> list:
    """A seeded sample of each language's test-split keyword clips, as waves."""
    from polykws.datasets.audio import load_audio
    from polykws.datasets.task import TaskSpec
    from polykws.datasets.streams import stream_sources
    from polykws.pipeline.config import task_spec_options

    clips = []
    for lang in args.langs.split(","):
        t = cfg.data.tasks[lang]
        task = TaskSpec(lang, tuple(t.keywords), **task_spec_options(t))
        rows = stream_sources(records, task, "test")["keyword"]
        rng = np.random.default_rng(args.seed)
        pick = sorted(rng.choice(len(rows), size=min(args.clips_per_lang, len(rows)), replace=False).tolist())
        clips += [load_audio(rows[i][0].path) for i in pick]
    return clips


def score_micro_model(cfg, records, noise_dir, noise_waves, fe, args, out: Path, warm_ms: float = 0.0) -> tuple[dict, dict]:
    """Warm vs reset accuracy of a micro model trained on --train-lang, and its int8 export."""
    from polykws.datasets.audio import load_audio
    from polykws.export.api import export_base

    model, task, splits = train_micro_model(args.train_lang, cfg, records, noise_dir, args, out, warm_ms)
    test = splits["test"]
    keep = np.array([o == "clip" for o in test.origin]) & (test.y < len(task.keywords))
    paths = [p for p, k in zip(test.paths, keep) if k]
    y = test.y[keep]
    kw_clips = [load_audio(p if os.path.isabs(p) else p) for p in paths]
    acc = {"language": args.train_lang, "test_keyword_clips": int(len(y)), "reset_cache_acc": accuracy(model, test.x[keep], y),
           "train_warm_ms": warm_ms, "augment_copies": args.augment_copies}
    for name, snr in CONDITIONS:
        reset, warm = clip_pairs(kw_clips, noise_waves, fe, snr, args.warmup_s, args.seed)
        acc[name] = {"reset": accuracy(model, reset, y), "warm": accuracy(model, warm, y)}
        print(name, acc[name], flush=True)
    # int8 export of the same model, for bench/streaming.py --export <out>/export_<lang>[_warm<ms>]
    exp = out / (f"export_{args.train_lang}" + (f"_aug{args.augment_copies}_warm{warm_ms:g}" if args.augment_copies or warm_ms else ""))
    ex = export_base(model, fe, task.labels, splits["train"].x, exp, lang=args.train_lang,
                     parity_x=test.x, meta={"model_name": "ds_cnn_s", "trained_by": "bench/frontend_warm.py"})
    return acc, {"dir": str(exp), "tflite_bytes": len(ex.tflite), "tflite_sha256": ex.sha256}


def report_lines(result: dict, args) -> list[str]:
    ctx = result["context"]
    lines = [f"Warm vs reset micro frontend; {ctx['date']}, {ctx['machine']}.", f"Command: `{ctx['command']}`", "",
             f"{result['stats']['silence']['clips']} test-split keyword clips ({args.langs}), warm-up {args.warmup_s:g} s of the condition's background.", "",
             "| condition | int8 values differing % | mean abs diff LSB (first 10 frames / rest) | mean signed diff LSB | max abs diff LSB | int8 input std LSB |",
             "|---|---|---|---|---|---|"]
    for name, s in result["stats"].items():
        lines.append(f"| {name} | {s['int8_differing_pct']:.1f} | {s['int8_mean_abs_diff_lsb']:.2f} ({s['int8_first10_mean_abs_diff_lsb']:.2f} / {s['int8_after10_mean_abs_diff_lsb']:.2f}) | "
                     f"{s['int8_mean_signed_diff_lsb']:+.2f} | {s['int8_max_abs_diff_lsb']} | {s['int8_input_std_lsb']:.1f} |")
    for a in result["accuracy"] or []:
        how = f"warm-up {a['train_warm_ms']:g} ms" if a["train_warm_ms"] else "reset"
        lines += ["", f"DS-CNN-S trained on {a['language']} micro features ({how}, {a['augment_copies']} augmented copies per clip), "
                  f"float test accuracy on {a['test_keyword_clips']} keyword clips (cache features: {100 * a['reset_cache_acc']:.1f} %):", "",
                  "| condition | reset | warm |", "|---|---|---|"]
        for name, _ in CONDITIONS:
            lines.append(f"| {name} | {100 * a[name]['reset']:.1f} | {100 * a[name]['warm']:.1f} |")
    return lines


def main() -> int:
    from polykws.core import atomic_write_json, atomic_write_text, run_context
    from polykws.datasets.features import noise_files
    from polykws.datasets.frontend import micro_frontend
    from polykws.datasets.streams import split_noise_waves
    from polykws.pipeline.config import resolve_path

    from streaming import load_data_config  # bench/streaming.py

    from polykws.pipeline.streameval import config_records

    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    cfg = load_data_config(args.config)
    fe = micro_frontend()
    records = config_records(cfg)
    noise_dir = resolve_path(cfg.data.noise_dir)
    noise_waves = split_noise_waves(noise_files(noise_dir), "test", fe.sample_rate_hz)
    result = {"context": run_context(), "warmup_s": args.warmup_s, "frontend": fe.to_dict(), "stats": {}, "accuracy": None}

    clips = pick_clips(cfg, records, args)
    for name, snr in CONDITIONS:
        reset, warm = clip_pairs(clips, noise_waves, fe, snr, args.warmup_s, args.seed)
        result["stats"][name] = stats(reset, warm, fe)
        print(name, json.dumps(result["stats"][name]), flush=True)

    if args.train_lang:
        result["accuracy"], result["export"] = [], []
        for warm_ms in (float(v) for v in args.train_warm_ms.split(",") if v):
            acc, ex = score_micro_model(cfg, records, noise_dir, noise_waves, fe, args, out, warm_ms)
            result["accuracy"].append(acc)
            result["export"].append(ex)
    result["wall_s"] = time.time() - t0
    atomic_write_json(out / "warm_vs_reset.json", result)

    lines = report_lines(result, args)
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
