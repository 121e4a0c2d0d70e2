"""`polykws data ...`: scan, manifest, features, synth, download.

Handlers stay short: they parse flags into library objects and print. Heavy imports happen
inside handlers so `polykws --help` stays fast.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--val-pct", type=float, default=10.0, help="validation share of speakers, percent (default 10)")
    p.add_argument("--test-pct", type=float, default=10.0, help="test share of speakers, percent (default 10)")
    p.add_argument("--split-mode", choices=("auto", "hash", "quota"), default="auto", help="speaker split rule (docs/DATA.md)")


def _scan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", type=Path, help="corpus root (folder layout, GSC v2 or MSWC)")
    p.add_argument("--layout", default="auto", help="auto | folder | gsc_v2 | mswc")
    p.add_argument("--language", action="append", dest="languages", help="only this language (repeatable)")
    p.add_argument("--source", action="append", dest="sources", help="only this source (repeatable)")
    p.add_argument("--strict", action="store_true", help="any skipped file is an error naming it")
    p.add_argument("--workers", type=int, default=None, help="decoder processes (default: all cores)")
    _split_args(p)


def _split_config(args):
    from polykws.datasets.splits import SplitConfig

    return SplitConfig(val_pct=args.val_pct, test_pct=args.test_pct, mode=args.split_mode)


def _do_scan(args):
    from polykws.datasets.scan import scan

    return scan(
        args.root,
        layout=args.layout,
        languages=args.languages,
        sources=args.sources,
        split=_split_config(args),
        strict=args.strict,
        workers=args.workers,
        progress=True,
    )


def cmd_scan(args) -> int:
    from polykws.datasets.report import print_scan

    t0 = time.perf_counter()
    result = _do_scan(args)
    print_scan(result, elapsed_s=time.perf_counter() - t0, verbose=args.verbose)
    return 0


def cmd_manifest(args) -> int:
    from polykws.datasets.manifest import write_manifest
    from polykws.datasets.report import print_scan
    from polykws.core import atomic_write_text

    import json

    t0 = time.perf_counter()
    result = _do_scan(args)
    out = write_manifest(args.out, result.records)
    skipped_path = args.out.with_name(args.out.name + ".skipped.jsonl")
    atomic_write_text(skipped_path, "".join(json.dumps(s.to_dict(), sort_keys=True) + "\n" for s in result.skipped))
    print_scan(result, elapsed_s=time.perf_counter() - t0, verbose=False)
    print(f"wrote {len(result.records)} rows to {out} and {len(result.skipped)} skipped files to {skipped_path}")
    return 0


def cmd_features(args) -> int:
    from polykws.datasets.features import load_task_features, warm_feature_cache
    from polykws.datasets.task import TaskSpec
    from polykws.datasets.frontend import frontend_by_name
    from polykws.datasets.manifest import read_manifest
    from polykws.datasets.report import print_feature_splits
    from polykws.core import PolykwsError

    frontend = frontend_by_name(args.frontend)
    if args.manifest:
        records = read_manifest(args.manifest)
    elif args.root:
        scanned = _do_scan(args)
        _print_scan_skips(scanned)
        records = scanned.records
    else:
        raise PolykwsError("pass a corpus root or --manifest")
    t0 = time.perf_counter()
    if not args.keywords:
        stats = warm_feature_cache(records, frontend, cache_dir=args.cache_dir, workers=args.workers, progress=True, languages=args.languages)
        print(
            f"{args.frontend} features for {stats['clips']} clips: {stats['computed']} computed, "
            f"{stats['cached']} from cache, {stats['skipped']} skipped, in {time.perf_counter() - t0:.1f} s "
            f"(cache {args.cache_dir})"
        )
        return 0
    if not args.languages or len(args.languages) != 1:
        raise PolykwsError("--keywords needs exactly one --language")
    task = TaskSpec(args.languages[0], tuple(k.strip() for k in args.keywords.split(",") if k.strip()), silence=not args.no_silence, unknown=not args.no_unknown)
    splits = load_task_features(
        records,
        task,
        frontend,
        cache_dir=args.cache_dir,
        noise_dir=args.noise_dir,
        augment_copies=args.augment_copies,
        seed=args.seed,
        workers=args.workers,
        progress=True,
    )
    print_feature_splits(splits, elapsed_s=time.perf_counter() - t0)
    return 0


def _print_scan_skips(result) -> None:
    """The files the scan behind `data features` left out, by reason and by name: its own
    feature counts start after them, so they would otherwise go unseen."""
    if not result.skipped:
        return
    counts = ", ".join(f"{n} {reason}" for reason, n in sorted(result.skip_counts().items()))
    print(f"scan skipped {len(result.skipped)} file(s): {counts}")
    for s in result.skipped:
        print(f"  skipped {s.path}: {s.reason}" + (f" ({s.detail})" if s.detail else ""))


def cmd_synth(args) -> int:
    from polykws.datasets.synth import SynthConfig, synthesize_corpus

    kwargs = {"seed": args.seed, "speakers": args.speakers, "pseudo_words": args.pseudo_words}
    if args.languages:
        kwargs["languages"] = tuple(args.languages)
    cfg = SynthConfig(**kwargs)
    t0 = time.perf_counter()
    summary = synthesize_corpus(cfg, args.out, workers=args.workers, progress=True)
    dt = time.perf_counter() - t0
    print(
        f"synthesized {summary['clips']} clips ({len(summary['languages'])} languages; words: "
        f"{', '.join(f'{lang} {n}' for lang, n in summary['words_per_language'].items())}; {cfg.speakers} voices) and {summary['noise_files']} noise files, "
        f"{summary['bytes'] / 1e6:.1f} MB, in {dt:.1f} s -> {args.out}"
    )
    return 0


def cmd_download(args) -> int:
    from polykws.datasets.sources.gsc import download_gsc_v2

    if args.dataset != "gsc_v2":  # pragma: no cover - argparse choices
        raise SystemExit(2)
    target = download_gsc_v2(args.out)
    print(f"GSC v2 extracted to {target}; scan it with: polykws data scan {target}")
    return 0


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="datasets: scan corpora, write manifests, build features, synthesize the default corpus")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    p = sub.add_parser("scan", help="decode every clip of a corpus and print clips/speakers/splits/skips per language and source")
    _scan_args(p)
    p.add_argument("-v", "--verbose", action="store_true", help="list every skipped file")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("manifest", help="scan a corpus and write its JSONL manifest (+ <out>.skipped.jsonl)")
    _scan_args(p)
    p.add_argument("--out", type=Path, required=True, help="manifest path (.jsonl)")
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("features", help="compute (and cache) features: every clip, or one task's splits")
    p.add_argument("root", type=Path, nargs="?", help="corpus root (or use --manifest)")
    p.add_argument("--manifest", type=Path, help="read clips from this manifest instead of scanning")
    p.add_argument("--layout", default="auto")
    p.add_argument("--language", action="append", dest="languages", help="only this language (repeatable)")
    p.add_argument("--source", action="append", dest="sources")
    p.add_argument("--strict", action="store_true")
    _split_args(p)
    p.add_argument("--frontend", default="micro", help="mfcc | micro | micro_1500ms (default micro)")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/features"))
    p.add_argument("--keywords", help="comma-separated keywords: build this task's train/val/test splits")
    p.add_argument("--no-silence", action="store_true")
    p.add_argument("--no-unknown", action="store_true")
    p.add_argument("--noise-dir", type=Path, help="background-noise folder for _silence_ and mixing")
    p.add_argument("--augment-copies", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("synth", help="synthesize the embedded multilingual keyword corpus with espeak-ng")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--language", action="append", dest="languages", help="only this language (repeatable)")
    p.add_argument("--speakers", type=int, default=40, help="voice configurations per language (each is a speaker)")
    p.add_argument("--pseudo-words", type=int, default=0,
                   help="also the language `mul`: this many pseudo-words per espeak-ng Latin-script language, for _unknown_ (docs/DATA.md)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("download", help="download a public corpus (SHA-256 checked)")
    p.add_argument("dataset", choices=("gsc_v2",))
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_download)
