"""Flags and the run shared by the grid benchmarks (bench/transfer.py, bench/blob_budget.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

BUDGETS = (100, 300, 1000, 3000)


def grid_config(args, extra: dict | None = None):
    """The pipeline config the grid runs on: its data, tasks and store; --base, --langs and the store override it."""
    from polykws.pipeline.config import load_config

    from polykws.core import parse_set_overrides

    overrides = {**parse_set_overrides(args.set), "adapt.languages": args.langs, "firmware.enabled": "off", **(extra or {})}
    if args.base:
        overrides["base.checkpoint"] = str(args.base.resolve())
    if args.artifacts:
        overrides["artifacts"] = args.artifacts
    return load_config(args.config, overrides)


def add_grid_args(ap: argparse.ArgumentParser, out_default: str, langs: tuple[str, ...], seeds: str) -> None:
    ap.add_argument("--base", type=Path, default=None, help="base model file (default: the config's base)")
    ap.add_argument("--config", default="configs/shared-real.yaml", help="pipeline config with the corpus, tasks and artifact store")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value (YAML-parsed), e.g. --set data.frontend=micro; repeatable")
    ap.add_argument("--artifacts", default=None, help="artifact store for the grid's stages (default: the config's)")
    ap.add_argument("--langs", default=",".join(langs))
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    ap.add_argument("--seeds", default=seeds)
    ap.add_argument("--epochs", type=int, default=None, help="method epochs (default: the config's adapt.fit)")
    ap.add_argument("--executor", default="auto", choices=("auto", "serial", "process", "ray"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ray-address", default=None)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(out_default))


def parse_list(text: str, cast=str) -> list:
    return [cast(s.strip()) for s in text.split(",") if s.strip()]


def run_grid_from_args(args, grid_cells, *, export: bool) -> tuple[list[dict], dict]:
    """Run the grid on the engine; (rows, run metadata)."""
    from polykws.core import run_context
    from polykws.pipeline.grid import grid_fit, grid_rows, grid_stages, run_grid
    from polykws.pipeline.store import ArtifactStore

    cfg = grid_config(args, {"export.enabled": export})
    seeds = parse_list(args.seeds, int)
    stages = grid_stages(cfg, grid_cells, seeds=seeds, fit=grid_fit(cfg, args.epochs), export=export,
                         progress=not args.no_progress)
    result = run_grid(stages, ArtifactStore(cfg.artifacts_uri), executor=args.executor, workers=args.workers,
                      ray_address=args.ray_address, show_progress=not args.no_progress)
    meta = {**run_context(), "config": args.config, "base": str(args.base or cfg.base.checkpoint or "pretrained by the config"),
            "base_sha256": result["base"].summary.get("state_sha256"), "epochs": args.epochs, "seeds": seeds,
            "artifacts": cfg.artifacts_uri}
    if export:
        meta["export_base"] = result["export_base"].summary
        meta["scales"] = cfg.export.scales
    return grid_rows(result), meta
