"""`polykws base info` and `polykws base build`: the base that ships inside the package.

    polykws base info                 # the model card (classes, data + licences, SHA-256 of every file)
    polykws base info --verify        # and check every shipped file against its recorded SHA-256
    polykws base build --from artifacts/base/ds_cnn_s_mfcc.pt --config configs/shared-real.yaml \
        --lang en --head-slots 24 --out polykws/assets/base

`build` keeps the pretrained body frozen and fits a new deployable head for one language's task
with the transfer harness's `head_only` method (the same linear probe + head training every
language gets), then exports the int8 base with `--head-slots` head rows and scores it (float and
int8 host TFLM) on the task's speaker-disjoint test split. It writes `base.pt`, `base.tflite` and
`base.json` (what `polykws.core.assets` verifies on load); the model card is written by hand
from `base.json` and the benchmarks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polykws.pipeline.tasks import DEFAULT_CONFIG


def register(subparsers) -> None:
    p = subparsers.add_parser("base", help="the shipped base: print its model card, or build it")
    sub = p.add_subparsers(dest="base_command", required=True, metavar="WHAT")
    info = sub.add_parser("info", help="print the shipped base's model card (and verify its files)")
    info.add_argument("--verify", action="store_true", help="also print each shipped file's SHA-256 check")
    info.set_defaults(func=cmd_info)

    b = sub.add_parser("build", help="fit a deployable head on a pretrained base's frozen body and export it for shipping")
    b.add_argument("--from", dest="source", type=Path, required=True, help="pretrained base model file (its body is kept)")
    b.add_argument("--config", default=DEFAULT_CONFIG, help=f"pipeline config defining the head's task (default {DEFAULT_CONFIG})")
    b.add_argument("--lang", default="en", help="language of the head's task in the config (default en)")
    b.add_argument("--head-slots", type=int, default=24, help="head rows of the int8 base (>= every language's label count; default 24)")
    b.add_argument("--epochs", type=int, default=None, help="head training epochs (default: TransferConfig's)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=int, default=None, help="torch threads")
    b.add_argument("--calibration-samples", type=int, default=500)
    b.add_argument("--out", type=Path, required=True, help="folder for base.pt, base.tflite, base.json (e.g. polykws/assets/base)")
    b.set_defaults(func=cmd_build)


def cmd_info(args: argparse.Namespace) -> int:
    from polykws.core.assets import shipped_base, shipped_base_dir

    sb = shipped_base()  # verifies every file first: a damaged install prints no card
    try:
        print(sb.card.read_text(encoding="utf-8"), end="")
    except FileNotFoundError:
        from polykws.core.assets import ShippedBaseError

        raise ShippedBaseError(f"{sb.card}: the model card is missing from the shipped base") from None
    if args.verify:
        print(f"\nverified in {shipped_base_dir()}:")
        for name, rec in sb.manifest["files"].items():
            print(f"  {name:12s} {rec['bytes']:>8,} B  sha256 {rec['sha256']}  ok")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    import shlex
    import sys

    import torch

    from polykws.core import ConfigError, PolykwsError, atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file
    from polykws.core.assets import CHECKPOINT_NAME, MANIFEST_NAME, SHIPPED_BASE_FORMAT, SHIPPED_BASE_FORMAT_VERSION, TFLITE_NAME
    from polykws.export.api import evaluate_export, export_base
    from polykws.pipeline.tasks import load_language_splits
    from polykws.training.adapt import HeadOnlyConfig, TransferConfig, adapt
    from polykws.training.checkpoint import load_model, save_model
    from polykws.training.deltas import HEAD_SITE
    from polykws.training.profile import count_params_macs

    src = load_model(args.source)
    splits = load_language_splits(args.lang, src.frontend, config=args.config, seed=args.seed)
    labels = splits["train"].labels
    if args.head_slots < len(labels):
        raise ConfigError(f"--head-slots {args.head_slots} is below the {len(labels)} labels of {args.lang}'s task")
    tcfg = TransferConfig(seed=args.seed, num_threads=args.threads, **({"epochs": args.epochs} if args.epochs else {}))
    result = adapt(src.model, splits, HeadOnlyConfig(), tcfg)
    # The shipped body must be the pretrained one, bit for bit: the transfer results are its.
    new_state, old_state = result.model.state_dict(), src.model.state_dict()
    changed = [k for k in old_state if not k.startswith(f"{HEAD_SITE}.") and not torch.equal(old_state[k], new_state[k])]
    if changed or set(new_state) != set(old_state):
        raise PolykwsError(f"head fitting changed the body ({', '.join(changed) or 'tensor names differ'}); the body must stay frozen")

    test, cal = splits["test"], splits["train"].x
    meta = {"role": "base", "language": args.lang, "head_slots": args.head_slots, "source_state_sha256": src.sha256,
            "head_fit": {"method": "head_only", "epochs": tcfg.epochs, "probe_epochs": tcfg.probe_epochs, "seed": args.seed}}
    state_sha = save_model(args.out / CHECKPOINT_NAME, result.model, labels=labels, frontend=src.frontend, meta=meta)
    ex = export_base(result.model, src.frontend, labels, cal, None, lang="base", parity_x=test.x, head_slots=args.head_slots,
                     max_calibration=args.calibration_samples, meta={"model_name": src.model_name, "base_state_sha256": state_sha})
    ev = evaluate_export(ex, result.model, test.x, test.y)
    atomic_write_bytes(args.out / TFLITE_NAME, ex.tflite)
    # The pretraining head's int8 export, for the bytes the new head saves (same calibration rows).
    before = export_base(src.model, src.frontend, src.labels, cal, None, lang="base", parity_x=test.x,
                         max_calibration=args.calibration_samples, meta={"model_name": src.model_name})
    prof = count_params_macs(result.model)
    manifest = {
        "format": SHIPPED_BASE_FORMAT,
        "format_version": SHIPPED_BASE_FORMAT_VERSION,
        "model_name": src.model_name,
        "state_sha256": state_sha,
        "language": args.lang,
        "labels": list(labels),
        "head_slots": args.head_slots,
        "frontend": src.frontend.to_dict(),
        "params": prof.total_params,
        "macs": prof.total_macs,
        "files": {name: {"sha256": sha256_file(args.out / name), "bytes": (args.out / name).stat().st_size}
                  for name in (CHECKPOINT_NAME, TFLITE_NAME)},
        "eval": {"split": "test", "clips": int(len(test.y)), "float_acc": ev["float_acc"], "int8_tflm_acc": ev["int8_acc"],
                 "val_acc_float": result.val_acc, "arena_bytes": ev["arena_bytes"]},
        "source": {"file": Path(args.source).name, "state_sha256": src.sha256, "labels": len(src.labels),
                   "int8_tflite_bytes": len(before.tflite), "int8_tflite_sha256": sha256_bytes(before.tflite)},
        "config": str(args.config),
        "build_command": "polykws " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    atomic_write_json(args.out / MANIFEST_NAME, manifest)
    print(f"{args.lang} head on the frozen body: {len(labels)} labels in {args.head_slots} slots; "
          f"test float {100 * ev['float_acc']:.1f}%, int8 TFLM {100 * ev['int8_acc']:.1f}% ({len(test.y)} clips); val {100 * result.val_acc:.1f}%")
    print(f"int8 base: {len(ex.tflite):,} B (the {len(src.labels)}-slot pretraining head: {len(before.tflite):,} B); "
          f"params {prof.total_params:,}, MACs {prof.total_macs:,}")
    print(f"wrote {args.out}/{CHECKPOINT_NAME} (weights sha256 {state_sha}), {TFLITE_NAME}, {MANIFEST_NAME}")
    return 0
