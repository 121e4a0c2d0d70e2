"""`polykws run --config configs/<name>.yaml`: the whole pipeline, resumable, with a report at the end."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the end-to-end pipeline (data -> base -> languages -> int8 + blobs -> firmware -> report)",
        description="Run every stage of a pipeline config. Finished stages (same inputs and config) are reused; "
        "a killed run resumes at the first unfinished stage.",
    )
    p.add_argument("--config", required=True, help="pipeline YAML, e.g. configs/demo.yaml")
    p.add_argument("--artifacts", help="artifact store: a folder or an fsspec URI (overrides the config's `artifacts`)")
    p.add_argument("--output", help="run folder for run.json and the report copy (default runs/<name>)")
    p.add_argument("--executor", choices=("auto", "serial", "process", "ray"),
                   help="how the per-language x method x budget jobs run (default: config, else auto = process pool, or ray with --ray-address)")
    p.add_argument("--workers", type=int, help="parallel adaptation/export jobs (default: CPU count)")
    p.add_argument("--ray-address", help="join an existing Ray cluster (e.g. ray://head:10001 or auto); the artifact store must be reachable from every node")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="rebuild a stage (a name like base or adapt/uk/swr/b1000/s0, or a kind like export) even if finished; repeatable")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (YAML-parsed), e.g. --set base.fit.epochs=5; repeatable")
    p.add_argument("--plan", action="store_true", help="list the stages and exit")
    p.add_argument("--write-vectors", metavar="NPZ",
                   help="also write every language's test split as firmware test vectors (for `polykws firmware bench --features`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from polykws.core import parse_set_overrides
    from polykws.pipeline.config import load_config
    from polykws.pipeline.run import run

    overrides = parse_set_overrides(args.set)
    if args.artifacts:
        overrides["artifacts"] = args.artifacts
    if args.output:
        overrides["output"] = args.output
    if args.executor:
        overrides["executor.kind"] = args.executor
    if args.workers is not None:
        overrides["executor.workers"] = args.workers
    if args.ray_address:
        overrides["executor.ray_address"] = args.ray_address
    cfg = load_config(args.config, overrides)
    return run(cfg, force=args.force, plan_only=args.plan, show_progress=not args.no_progress,
               vectors_path=Path(args.write_vectors) if args.write_vectors else None)
