"""`polykws train base --config ... [--resume]`, `polykws eval --model ... --config ...` and
`polykws eval --streaming --pack ... --config ...`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a model (the shared base)")
    tsub = train.add_subparsers(dest="train_command", required=True, metavar="WHAT")
    base = tsub.add_parser("base", help="pretrain the shared DS-CNN base from a YAML config (configs/base.yaml)")
    base.add_argument("--config", type=Path, required=True, help="training config YAML")
    base.add_argument("--resume", action="store_true", help="continue the run folder's last checkpoint")
    base.add_argument("--run-dir", type=Path, default=None, help="run folder (default: the config's run_dir)")
    base.add_argument("--epochs", type=int, default=None, help="override fit.epochs")
    base.add_argument("--out", type=Path, default=None, help="also copy the best model file here (e.g. artifacts/base/ds_cnn_s_mfcc.pt)")
    base.add_argument("--no-progress", action="store_true", help="no progress bar (epoch summary lines only)")
    base.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config value (YAML-parsed), e.g. --set data.frontend_warm_ms=0; repeatable")
    base.set_defaults(func=cmd_train_base)

    ev = subparsers.add_parser("eval", help="score a model file on a config's speaker-disjoint test split, or a pack on streams (--streaming)")
    ev.add_argument("--model", type=Path, default=None, help="model file (best.pt or a base under artifacts/)")
    ev.add_argument("--config", type=Path, required=True,
                    help="training config whose data defines the task; with --streaming, a `polykws run` config (data and `streaming` sections)")
    ev.add_argument("--split", choices=("test", "val", "train"), default="test")
    ev.add_argument("--out", type=Path, default=None, help="report folder (default: <model dir>/eval-<split>; with --streaming: eval-streaming)")
    ev.add_argument("--streaming", action="store_true",
                    help="FRR vs false accepts per hour on long noisy streams of each language's val/test speakers (docs/STREAMING.md)")
    ev.add_argument("--pack", type=Path, default=None, help="with --streaming: a pack folder (base.tflite + <lang>.blob + manifest.json)")
    ev.add_argument("--export", type=Path, action="append", default=[], help="with --streaming: an export folder (<lang>.tflite + <lang>.json); repeatable")
    ev.add_argument("--langs", default="", help="with --streaming: comma-separated languages (default: every model's)")
    ev.set_defaults(func=cmd_eval)


def _load(args: argparse.Namespace):
    from polykws.core import parse_set_overrides
    from polykws.training.config import load_train_config

    overrides = parse_set_overrides(getattr(args, "set", []))
    if getattr(args, "epochs", None):
        overrides["fit.epochs"] = args.epochs
    return load_train_config(args.config, overrides)


def cmd_train_base(args: argparse.Namespace) -> int:
    import shutil

    from polykws.training.base import train_base
    from polykws.core import atomic_path, sha256_file

    cfg = _load(args)
    if args.no_progress:
        from dataclasses import replace

        cfg = replace(cfg, fit=replace(cfg.fit, progress=False))
    run = train_base(cfg, resume=args.resume, run_dir=args.run_dir, progress=not args.no_progress)
    print(run.report.summary())
    print(f"best epoch {run.fit.best_epoch} (val acc {run.fit.best_val_acc:.4f}); training {run.fit.wall_time_s:.0f} s; run folder {run.run_dir}")
    if args.out:
        with atomic_path(args.out) as tmp:
            shutil.copyfile(run.fit.best_path, tmp)
        print(f"base model: {args.out} (file sha256 {sha256_file(args.out)}, weights sha256 {run.fit.best_sha256})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.streaming:
        return cmd_eval_streaming(args)
    if args.model is None:
        from polykws.core import PolykwsError

        raise PolykwsError("give --model (a model file), or --streaming with --pack/--export")
    from polykws.datasets.frontend import frontend_by_name
    from polykws.training.checkpoint import load_model
    from polykws.training.data import build_base_splits
    from polykws.training.evaluate import evaluate
    from polykws.core import PolykwsError

    cfg = _load(args)
    loaded = load_model(args.model)
    frontend = frontend_by_name(cfg.model.frontend)
    if loaded.frontend != frontend:
        raise PolykwsError(f"{args.model}: trained on the {loaded.frontend.kind} frontend, but {args.config} uses {frontend.kind}")
    splits = build_base_splits(cfg.data, frontend, seed=cfg.fit.seed, progress=True)
    split = splits[args.split]
    if tuple(split.labels) != loaded.labels:
        raise PolykwsError(f"{args.model}: its {len(loaded.labels)} labels differ from the {len(split.labels)} of {args.config}'s task")
    report = evaluate(loaded.model, split)
    out = args.out or args.model.parent / f"eval-{args.split}"
    report.save(out, title=f"{args.model.name} on {args.config.name} ({args.split} split)")
    print(report.summary())
    print(f"report: {out}")
    return 0


def cmd_eval_streaming(args: argparse.Namespace) -> int:
    from polykws.core import PolykwsError, atomic_write_json
    from polykws.pipeline.config import load_config
    from polykws.pipeline.streameval import config_noise, config_records, evaluate_language, results_table, select_models, write_results

    if not args.pack and not args.export:
        raise PolykwsError("--streaming needs --pack or --export")
    cfg = load_config(args.config, check_files=False)
    models = select_models(args.pack, args.export, cfg.data.tasks, [x for x in args.langs.split(",") if x])
    out = args.out or Path("eval-streaming")
    out.mkdir(parents=True, exist_ok=True)
    records = config_records(cfg)
    noise = config_noise(cfg, records)
    rows = []
    for lang, model in models.items():
        print(f"{lang}: scoring streams", flush=True)
        rows += evaluate_language(model, cfg.data.tasks[lang].spec(lang), records, noise, cfg.streaming, parity=True,
                                  log=lambda line: print(line, flush=True))
    atomic_write_json(out / "streaming.json", rows)
    write_results(out, rows)
    print("\n".join(results_table(rows)))
    print(f"report: {out / 'results.md'}, DET: {out / 'det.png'}")
    return 0
