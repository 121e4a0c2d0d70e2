"""Benchmark grids on the stage engine: language x method x budget x seed as fan-out stages.

A grid reuses the pipeline's data and base stages (scan, features, a given or pretrained base,
the int8 base export) and adds one `bench_adapt` stage per row and, for blob grids, one
`bench_export` stage per row. Rows are keyed like every stage (config, code, upstream content),
so a grid is resumable, cached, and runs on worker processes or Ray like `polykws run`.

A budget a family cannot use at all (e.g. `dense` below one depthwise kernel) is a row with
status "infeasible", never a dropped row. The bench scripts only choose the cells, call
`run_grid`, and render tables and plots from `grid_rows`.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from polykws.core import PolykwsError, atomic_path
from polykws.pipeline.stages.benchrows import adapt_row_stage, export_row_stage
from polykws.pipeline.config import PipelineConfig
from polykws.pipeline.engine import RunResult, Stage, make_executor
from polykws.pipeline.schedule import run_pipeline
from polykws.pipeline.run import build_stages
from polykws.pipeline.store import ArtifactStore

# The pipeline stages a grid builds on; the rest (adapt, export jobs, pack, report) it replaces.
_UPSTREAM_KINDS = ("corpus", "scan", "features", "base", "export_base")


@dataclass(frozen=True)
class GridCell:
    """One column group of a grid: a registered method, its options and its budget.

    `budget` counts updated body parameters, or estimated blob bytes when `budget_unit` is
    "bytes" (SWR's byte budget). `label` names the cell in tables and stage names.
    """

    label: str
    method: str
    budget: int | None = None
    budget_unit: str = "params"
    method_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.budget_unit not in ("params", "bytes"):
            raise PolykwsError(f"grid cell {self.label}: budget_unit must be params or bytes, got {self.budget_unit!r}")

    @property
    def name(self) -> str:
        unit = "B" if self.budget_unit == "bytes" else ""
        return self.label if self.budget is None else f"{self.label}@{self.budget}{unit}"

    def stage_config(self) -> dict[str, Any]:
        """`method`, `method_options` and `budget` as the pipeline's adapt stage reads them."""
        options = dict(self.method_options)
        if self.budget_unit == "bytes":
            return {"method": self.method, "method_options": {**options, "budget_bytes": self.budget}, "budget": None}
        return {"method": self.method, "method_options": options, "budget": self.budget}


def swr_options(families: Sequence[str]) -> list[dict[str, Any]]:
    """SWR's default options restricted to `families`, as plain data for a stage config."""
    from polykws.training.swr import SWRConfig

    return [{"family": o.family, **dict(o.options)} for o in SWRConfig.with_families(list(families)).options]


def grid_fit(cfg: PipelineConfig, epochs: int | None = None) -> dict[str, Any]:
    """The adapt.fit a grid row trains with: the config's, as its pipeline's adapt stages take it
    (a k-fold of a recipe is then of that recipe, class balance and epochs included), with
    `epochs` in place of the config's when given. Fields at TransferConfig's defaults are left
    out, so a config that sets none keys its rows as before."""
    from polykws.core import to_plain
    from polykws.training.adapt import TransferConfig

    default = to_plain(TransferConfig())
    fit = {k: v for k, v in to_plain(cfg.adapt.fit).items() if k not in ("seed", "num_threads") and v != default[k]}
    if epochs:
        fit["epochs"] = int(epochs)
    return fit


def grid_stages(cfg: PipelineConfig, cells: Sequence[GridCell], *, seeds: Sequence[int], fit: Mapping[str, Any],
                export: bool = False, progress: bool = True) -> list[Stage]:
    """The config's data and base stages plus one adapt (and export) row per language x cell x seed."""
    upstream = [s for s in build_stages(cfg, progress=progress) if s.kind in _UPSTREAM_KINDS]
    if not export:
        upstream = [s for s in upstream if s.kind != "export_base"]
    rows: list[Stage] = []
    for seed in seeds:  # seed-major: a partial run already covers every cell at the first seed
        for cell in cells:
            for lang in cfg.adapt.languages:
                rows += _row_stages(cfg, cell, lang, seed, fit, export)
    return upstream + rows


def _row_stages(cfg: PipelineConfig, cell: GridCell, lang: str, seed: int, fit: Mapping[str, Any], export: bool) -> list[Stage]:
    name = f"bench_adapt/{lang}/{cell.name}/s{seed}"
    adapt = Stage(name, "bench_adapt", adapt_row_stage,
                  {"language": lang, **cell.stage_config(), "seed": seed, "fit": dict(fit), "threads": 1, "cell": cell.name},
                  deps=("base", f"features/{lang}"),
                  fanout=True, threads=1, seed=seed)
    if not export:
        return [adapt]
    export_stage = Stage(f"bench_export/{lang}/{cell.name}/s{seed}", "bench_export", export_row_stage,
                         {"language": lang, "base_language": cfg.base.language, "calibration_samples": cfg.export.calibration_samples,
                          "adapt_stage": name, **cfg.export.language_options()},
                         deps=("export_base", name, f"features/{lang}"),
                         fanout=True, threads=1)
    return [adapt, export_stage]


def run_grid(stages: Iterable[Stage], store: ArtifactStore, *, executor: str = "auto", workers: int | None = None,
             ray_address: str | None = None, show_progress: bool = True) -> RunResult:
    with make_executor(executor, workers=workers, ray_address=ray_address) as ex:
        return run_pipeline(stages, store, ex, show_progress=show_progress, log=True)


def grid_rows(result: RunResult) -> list[dict[str, Any]]:
    """One row per language x cell x seed: the adapt summary joined with its export summary."""
    rows = []
    for name, outcome in result.outcomes.items():
        if outcome.kind != "bench_adapt":
            continue
        cfg = outcome.manifest["config"]
        row = {**outcome.summary, "lang": cfg["language"], "cell": cfg["cell"], "method": cfg["method"], "seed": cfg["seed"],
               "budget": cfg["budget"] if cfg["budget"] is not None else cfg["method_options"].get("budget_bytes")}
        if row.get("selection") is not None:
            row["selection"] = json.dumps(row["selection"], sort_keys=True)
        exported = result.outcomes.get("bench_export/" + name.split("/", 1)[1])
        if exported is not None and row.get("status") == "ok":
            row.update({k: v for k, v in exported.summary.items() if k != "headline"}, float_acc=row.get("test_acc"))
        rows.append(row)
    return rows


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[tuple[str, str], dict[str, Any]]:
    """{(cell, lang): mean/sd of `metric` over seeds and medians of the cost columns}, ok rows only."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("status") == "ok":
            groups.setdefault((r["cell"], r["lang"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        m, sd = mean_sd([r[metric] for r in rs])
        entry = {"mean": m, "sd": sd, "seeds": len(rs), "per_seed": {r["seed"]: r[metric] for r in rs}}
        for col in ("updated_params", "body_params", "blob_bytes", "blob_pct_of_base", "adapt_wall_s", "test_clips",
                    "fixed_bytes", "records", "stream_bytes", "head_patched_bytes", "body_patched_bytes", "body_changed_bytes"):
            vals = [r[col] for r in rs if r.get(col) is not None]
            if vals:
                entry[col] = statistics.median(vals)
        if "blob_bytes" in entry:
            entry["blob_range"] = (min(r["blob_bytes"] for r in rs), max(r["blob_bytes"] for r in rs))
            entry["float_mean"] = statistics.fmean(r["float_acc"] for r in rs)
        out[key] = entry
    return out


def plot_accuracy(agg: Mapping[tuple[str, str], Mapping[str, Any]], *, x: str, xlabel: str, ylabel: str, path: Path,
                  vline: tuple[float, str] | None = None) -> None:
    """Accuracy against a cost on one shared log-x axis: one line per method, one marker per language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def method_of(cell: str) -> str:
        return cell.split("@", 1)[0]

    methods = sorted({method_of(c) for c, _ in agg})
    langs = sorted({lang for _, lang in agg})
    colors = {m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(methods)}
    markers = dict(zip(langs, "osD^v<>pP*X"))
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for m in methods:
        for lang in langs:
            pts = sorted((e[x], 100 * e["mean"], 100 * e["sd"]) for (c, lg), e in agg.items() if method_of(c) == m and lg == lang and x in e)
            if pts:
                xs, ys, sds = zip(*pts)
                ax.errorbar(xs, ys, yerr=sds, color=colors[m], marker=markers.get(lang, "o"), ls="-" if len(pts) > 1 else "none",
                            lw=2.2 if m.startswith("swr") else 1.0, ms=5, capsize=2)
    extra = [ax.axvline(vline[0], color="k", ls="--", lw=1, label=vline[1])] if vline is not None else []
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    handles = [plt.Line2D([], [], color=colors[m], lw=2, label=m) for m in methods]
    handles += [plt.Line2D([], [], color="0.3", marker=markers.get(lg, "o"), ls="none", label=lg) for lg in langs]
    ax.legend(handles=handles + extra, fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
