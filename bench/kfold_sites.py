"""Where a method spends its bytes: per body site, the int8 weights its merged models change.

    .venv/bin/python bench/kfold_sites.py --store runs/bench_kfold/store_micro --base artifacts/base/ds_cnn_s_fb40_micro.pt \
        --cells swr@2000B,diff_prune@2000B

Reads every `bench_adapt` stage of the given cells in a bench/kfold.py store that the installed
code produced (`--code`, default the current code digest of a grid row's adapt stage; a store
also holds rows of older code), re-quantizes each merged model's body weights on the base's frozen int8
grid (the exporter's `frozen` scales: training/deltas/grid.py) and reports, per site, the mean
number of changed int8 weights per model and their mean |Δq| in int8 steps.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch


def site_changes(base: torch.nn.Module, model: torch.nn.Module) -> dict[str, tuple[int, float]]:
    """Per body site of `base`: (changed int8 weights, mean |Δq| over them) of `model`."""
    from polykws.training.deltas.base import candidate_sites
    from polykws.training.deltas.model import site_grid

    mods = dict(model.named_modules())
    out = {}
    for name, layer in candidate_sites(base).items():
        grid = site_grid(base, name, layer)
        if grid is None:
            continue
        d = grid.int8_values(layer.weight, mods[name].weight - layer.weight) - grid.q0
        moved = d != 0
        out[name] = (int(moved.sum()), float(d[moved].abs().mean()) if bool(moved.any()) else 0.0)
    return out


def main() -> None:
    from polykws.training.checkpoint import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--base", type=Path, required=True, help="the base checkpoint the store's models were adapted from")
    ap.add_argument("--cells", required=True, help="comma-separated cell names, e.g. swr@2000B,diff_prune@2000B")
    ap.add_argument("--code", default=None, help="the code digest of the rows to read (stage.json `code_digest`; default: the installed code's)")
    args = ap.parse_args()
    from polykws.pipeline.engine import Stage, code_digest
    from polykws.pipeline.stages.benchrows import adapt_row_stage

    code = args.code or code_digest(Stage("row", "bench_adapt", adapt_row_stage))
    cells = [c for c in args.cells.split(",") if c]
    base = load_model(args.base).model.eval()
    stages: dict[str, list[Path]] = defaultdict(list)
    for sj in sorted(args.store.glob("bench_adapt/*/stage.json")):
        d = json.loads(sj.read_text())
        if d["config"].get("cell") in cells and d.get("code_digest") == code and (sj.parent / "model.pt").is_file():
            stages[d["config"]["cell"]].append(sj.parent / "model.pt")
    header = "| site | " + " | ".join(f"{c}: changes, mean abs dq" for c in cells) + " |"
    table: dict[str, list[str]] = defaultdict(list)
    totals = []
    for cell in cells:
        paths = stages[cell]
        if not paths:
            raise SystemExit(f"{args.store}: no bench_adapt stage of cell {cell!r} from code digest {code}")
        per_site: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for p in paths:
            for name, v in site_changes(base, load_model(p).model).items():
                per_site[name].append(v)
        total = 0.0
        for name, vals in per_site.items():
            n = sum(c for c, _ in vals) / len(vals)
            total += n
            table[name].append(f"{n:,.0f}, {sum(m for _, m in vals) / len(vals):.1f}")
        totals.append(f"{total:,.0f} ({len(paths)} models)")
    print(header)
    print("|---|" + "---|" * len(cells))
    for name, vals in table.items():
        print(f"| {name} | " + " | ".join(vals) + " |")
    print("| all body sites | " + " | ".join(totals) + " |")


if __name__ == "__main__":
    main()
