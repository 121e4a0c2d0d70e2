"""`polykws adapt`: adapt the shared base to one language with one method under a budget.

    polykws adapt --lang uk --method swr --budget-bytes 2000      # the base shipped with the package
    polykws adapt --base artifacts/base/base.pt --lang uk --method swr --budget 500 --out runs/adapt/uk-swr-500
    polykws adapt --base base.pt --lang lt --method lora --epochs 40 --seed 1
    polykws adapt --lang xx --data my_recordings                 # your own recordings (data check first)
    polykws adapt --list-methods

The language's task (keywords, _silence_/_unknown_) and the corpus come from a pipeline config
(default configs/shared-real.yaml: uk/ar/bn/gu digits, lt commands on ../shared), or from
--keywords. With --data the corpus is a folder of your own recordings: a data check runs first
(clips and speakers per keyword, durations, levels, flagged clips; too few clips or speakers stop
the run), and the task is its words (or --keywords) plus _silence_ (and _unknown_ when other
words remain). Features are cached (.cache/features), so a second run starts training at once.
Writes to --out: the merged model (`model.pt`, same shapes and MACs as the base), the delta file
(`delta.pt`, when the method has one), and `report.json` (cost, accuracies, selection, timing).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from polykws.pipeline.tasks import DEFAULT_CONFIG


def register(subparsers) -> None:
    p = subparsers.add_parser("adapt", help="adapt the base to a new language (SWR, a delta family or a baseline)")
    p.add_argument("--base", type=Path, help="base model file (polykws model format; default: the base shipped with the package, "
                   "see `polykws base info`)")
    p.add_argument("--lang", help="language code of the task (e.g. uk)")
    p.add_argument("--method", default="swr", help="method name (see --list-methods); default swr")
    p.add_argument("--budget", type=int, default=None, help="budget of updated body parameters (budgeted methods)")
    p.add_argument("--budget-includes-head", action="store_true", help="swr: the head is paid from the budget")
    p.add_argument("--budget-bytes", type=int, default=None,
                   help="budget of body blob bytes (budgeted methods; SWR's default currency, 2000 when no budget is given; "
                        "docs/METHOD.md, section 5)")
    p.add_argument("--families", default=None, help="swr: comma-separated families for a per-site search's options (default: SWR's "
                   "defaults; implies --search greedy)")
    p.add_argument("--search", default=None, help="swr: how the bytes are placed, l0 (the default), greedy, measured, policy, "
                   "random or uniform (docs/METHOD.md, section 5)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"pipeline config defining the corpus and the language's task (default {DEFAULT_CONFIG})")
    p.add_argument("--keywords", default=None, help="comma-separated keywords (overrides the config's task)")
    p.add_argument("--data", type=Path, default=None, help="your own recordings instead of the config's corpus (<data>/<keyword>/<file> "
                   "as it is, <data>/<lang>/<source>/<keyword>/, GSC or MSWC layout); a data check runs first")
    p.add_argument("--speaker-regex", default=None, help="with --data: one-group regex giving the speaker from a file name "
                   "(default: inferred from the names)")
    p.add_argument("--noise-dir", type=Path, default=None, help="with --data: background-noise folder for _silence_ and mixing")
    p.add_argument("--epochs", type=int, default=None, help="method epochs (default: TransferConfig's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; 1-2 on a shared machine)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/adapt/<lang>-<method>[-<budget>]-s<seed>)")
    p.add_argument("--list-methods", action="store_true", help="print the registered methods and exit")
    p.set_defaults(func=cmd_adapt)


def cmd_adapt(args: argparse.Namespace) -> int:
    from polykws.core import ConfigError
    from polykws.training.adapt import get_method, list_methods

    if args.list_methods:
        for name in list_methods():
            print(f"{name:12s} {'budgeted' if get_method(name).budgeted else 'fixed baseline'}")
        return 0
    if args.lang is None:
        raise ConfigError("adapt needs --lang (or --list-methods)")
    return run_adapt(args, _method_config(args))


def _method_config(args: argparse.Namespace):
    """The library method config the flags describe; flags that do not apply to the method are errors."""
    from polykws.core import ConfigError
    from polykws.training.adapt import get_method, method_config

    spec = get_method(args.method)
    options: dict[str, Any] = {}
    if args.method == "swr":
        from polykws.training.swr import SWRConfig

        if args.search:
            options["search"] = args.search
        if args.families:
            families = [f.strip() for f in args.families.split(",") if f.strip()]
            options["ablation"] = {"options": SWRConfig.with_families(families, search=args.search or "greedy").options}
            options.setdefault("search", "greedy")
        if args.budget_includes_head:
            options["budget_includes_head"] = True
    elif args.families or args.budget_includes_head or args.search:
        raise ConfigError("--families, --search and --budget-includes-head apply to --method swr only")
    if args.budget_bytes is not None:
        if not spec.budgeted:
            raise ConfigError(f"method {args.method!r} is a fixed baseline: it takes no budget")
        options["budget_bytes"] = args.budget_bytes
    # SWR budgets in blob bytes by default (SWRConfig.budget_bytes); a family needs a size.
    if spec.budgeted and args.method != "swr" and args.budget is None and args.budget_bytes is None:
        raise ConfigError(f"method {args.method!r} needs --budget-bytes (body blob bytes) or --budget (updated body parameters)")
    mcfg = method_config(args.method, budget_params=args.budget if spec.budgeted else None, **options)
    if args.budget is not None and not spec.budgeted:
        raise ConfigError(f"method {args.method!r} is a fixed baseline: it takes no budget")
    return mcfg


def run_adapt(args: argparse.Namespace, mcfg) -> int:
    import time

    from polykws.core import ConfigError, repo_root
    from polykws.training.adapt import TransferConfig, adapt
    from polykws.training.checkpoint import load_base
    from polykws.pipeline.tasks import load_language_splits

    base = load_base(args.base)
    keywords = [k.strip() for k in args.keywords.split(",")] if args.keywords else None
    t0 = time.perf_counter()
    if args.data is not None:
        splits = _user_splits(args, base.frontend, keywords)
    else:
        if args.speaker_regex or args.noise_dir:
            raise ConfigError("--speaker-regex and --noise-dir go with --data")
        splits = load_language_splits(args.lang, base.frontend, config=args.config, keywords=keywords, seed=args.seed)
    data_s = time.perf_counter() - t0
    tcfg = TransferConfig(seed=args.seed, num_threads=args.threads, **({"epochs": args.epochs} if args.epochs else {}))
    result = adapt(base.model, splits, mcfg, tcfg)
    budget_tag = f"-{args.budget_bytes}B" if args.budget_bytes is not None else (f"-{args.budget}" if args.budget is not None else "")
    out = args.out or repo_root() / "runs" / "adapt" / f"{args.lang}-{result.method}{budget_tag}-s{args.seed}"
    _write_outputs(args, out, base, result, splits, tcfg, data_s)
    _print_result(args, out, result, splits)
    return 0


def _user_splits(args: argparse.Namespace, frontend, keywords):
    """The data check (printed; its errors stop the run), then the recordings' task features."""
    from polykws.datasets.report import print_data_check
    from polykws.pipeline.userdata import check_user_data, user_splits

    scanned, check = check_user_data(args.data, args.lang, keywords=keywords, speaker_regex=args.speaker_regex)
    print_data_check(check)
    check.raise_on_errors()
    splits, _ = user_splits(scanned, args.lang, frontend, keywords=keywords, noise_dir=args.noise_dir, seed=args.seed)
    return splits


def _write_outputs(args: argparse.Namespace, out: Path, base, result, splits, tcfg, data_s: float) -> None:
    """model.pt, delta.pt (when the method has one) and report.json under `out`."""
    from polykws.core import atomic_write_json, to_plain
    from polykws.training.checkpoint import save_model

    meta = {"language": args.lang, "method": result.method, "budget_params": args.budget, "budget_bytes": args.budget_bytes,
            "seed": args.seed, "base_sha256": base.sha256}
    model_sha = save_model(out / "model.pt", result.model, labels=result.labels, frontend=base.frontend, meta=meta)
    if result.delta_model is not None:
        result.delta_model.save(out / "delta.pt", labels=result.labels, meta=meta)
    atomic_write_json(out / "report.json", {
        **result.summary(),
        "language": args.lang,
        "labels": list(result.labels),
        "budget_params": args.budget,
        "budget_bytes": args.budget_bytes,
        "estimated_body_blob_bytes": result.details.get("estimated_body_blob_bytes"),
        "seed": args.seed,
        "base": str(args.base) if args.base is not None else "shipped",
        "data": str(args.data) if args.data is not None else None,
        "base_sha256": base.sha256,
        "model_sha256": model_sha,
        "method_config": result.method_config,
        "train_config": to_plain(tcfg),
        "examples": {k: len(v) for k, v in splits.items()},
        "data_load_s": data_s,
        "selection": result.details.get("selection"),
        "details": {k: v for k, v in result.details.items() if k != "selection"},
    })


def _print_result(args: argparse.Namespace, out: Path, result, splits) -> None:
    import json

    sel = result.details.get("selection")
    print(
        f"{args.lang} {result.method}: updated params {result.cost.total:,} (body {result.cost.body:,} + head {result.cost.head:,}); "
        f"val {100 * result.val_acc:.1f}%, test {100 * result.test_acc:.1f}% ({len(splits['test'])} clips); "
        f"adapt {result.wall_s:.1f} s"
    )
    if sel is not None:
        print("selection: " + (json.dumps(sel) if sel else "(no body delta fits; head only)"))
    print(f"wrote {out}/model.pt" + (", delta.pt" if result.delta_model is not None else "") + ", report.json")
