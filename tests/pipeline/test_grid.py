"""Benchmark grids on the engine: rows are stages, infeasible budgets are rows, reruns reuse, new families are cells."""

from __future__ import annotations

import json

import pytest
import yaml
from corpus_fixture import make_corpus, pipeline_config

from polykws.pipeline.config import load_config
from polykws.pipeline.engine import SerialExecutor
from polykws.pipeline.schedule import run_pipeline
from polykws.pipeline.grid import GridCell, aggregate, grid_fit, grid_rows, grid_stages
from polykws.pipeline.store import ArtifactStore


def test_grid_rows_run_as_stages_record_infeasible_and_resume(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run")
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({**raw, "adapt": {**raw["adapt"], "languages": ["bb"]}}))
    cfg = load_config(tmp_path / "grid.yaml")
    cells = [GridCell("head_only", "head_only"), GridCell("dense", "dense", 1)]
    fit = {"epochs": 1, "probe_epochs": 1, "batch_size": 32}

    def run():
        stages = grid_stages(cfg, cells, seeds=[0], fit=fit, progress=False)
        return run_pipeline(stages, ArtifactStore(cfg.artifacts_uri), SerialExecutor(), show_progress=False)

    first = run()
    rows = {r["cell"]: r for r in grid_rows(first)}
    assert rows["head_only"]["status"] == "ok" and 0.0 <= rows["head_only"]["test_acc"] <= 1.0
    assert rows["head_only"]["body_params"] == 0 and rows["head_only"]["updated_params"] > 0
    assert rows["dense@1"]["status"] == "infeasible" and "no site fits" in rows["dense@1"]["reason"]
    assert set(aggregate(grid_rows(first), "test_acc")) == {("head_only", "bb")}, "an infeasible row has no accuracy"
    second = run()
    assert second.ran() == [], "a second run reuses every row"
    assert grid_rows(second) == grid_rows(first)


def test_byte_budget_cells_reach_the_method_as_budget_bytes():
    cell = GridCell("swr_blob", "swr", 800, "bytes")
    assert cell.name == "swr_blob@800B"
    assert cell.stage_config() == {"method": "swr", "method_options": {"budget_bytes": 800}, "budget": None}
    with pytest.raises(Exception, match="budget_unit"):
        GridCell("x", "swr", 1, "kilobytes")


def test_benchmarks_cover_every_registered_family(monkeypatch, bench_module):
    from polykws.training.adapt import list_methods
    from polykws.training.deltas import list_deltas

    blob = bench_module("blob_budget")
    transfer = bench_module("transfer")
    blob_methods = {c.method for c in blob.main_cells([1000])}
    assert set(list_deltas()) <= blob_methods
    assert {c.method for c in transfer.cells(list_methods(), [1000])} == set(list_methods())


@pytest.mark.slow
def test_blob_grid_exports_each_row_against_the_base(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run", export=True)
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({**raw, "adapt": {**raw["adapt"], "languages": ["bb"]}}))
    cfg = load_config(tmp_path / "grid.yaml")
    cells = [GridCell("head_only", "head_only"), GridCell("dense", "dense", 1)]
    stages = grid_stages(cfg, cells, seeds=[0], fit={"epochs": 1, "probe_epochs": 1, "batch_size": 32}, export=True, progress=False)
    result = run_pipeline(stages, ArtifactStore(cfg.artifacts_uri), SerialExecutor(), show_progress=False)
    rows = {r["cell"]: r for r in grid_rows(result)}
    head = rows["head_only"]
    assert head["status"] == "ok" and 0 < head["blob_bytes"] < head["base_tflite_bytes"]
    assert head["body_patched_bytes"] + head["head_patched_bytes"] > 0 and head["fixed_bytes"] > 0
    assert 0.0 <= head["int8_acc"] <= 1.0 and head["float_acc"] == head["test_acc"]
    assert rows["dense@1"]["status"] == "infeasible" and "blob_bytes" not in rows["dense@1"]


def test_kfold_blob_budgets_fit_by_the_largest_blob_and_pair_on_the_same_rows(bench_module):
    kfold = bench_module("kfold")
    langs = ["aa", "bb"]
    # (cell, per-language blob bytes, accuracy per (fold, seed)); diff_prune@2000B's median blob
    # fits 3 KB, its largest does not.
    table = {"full_ft": ((9000, 9000), 0.90), "swr@1000B": ((1800, 1900), 0.86), "swr@2000B": ((2800, 2900), 0.88),
             "diff_prune@1000B": ((1700, 1800), 0.85), "diff_prune@2000B": ((2900, 3100), 0.95)}
    rows = [{"cell": cell, "lang": lg, "fold": fold, "seed": 0, "status": "ok", "blob_bytes": blobs[i],
             "int8_acc": acc + 0.01 * fold}
            for cell, (blobs, acc) in table.items() for i, lg in enumerate(langs) for fold in range(3)]
    summary = kfold.summarize(rows, langs)
    lines = {ln.split(" |")[0].strip("| "): ln for ln in kfold.by_blob_budget(summary, rows, (2, 3, 10)).splitlines()[2:]}
    assert "swr@1000B (1,900)" in lines["2 KB"] and "diff_prune@1000B (1,800)" in lines["2 KB"] and "+1.00 ± 0.00, 3" in lines["2 KB"]
    assert "swr@2000B (2,900)" in lines["3 KB"] and "diff_prune@1000B" in lines["3 KB"], "a blob over the budget does not fit"
    assert "+3.00 ± 0.00, 3" in lines["3 KB"] and "-2.00 ± 0.00, 3" in lines["3 KB"]
    assert "diff_prune@2000B (3,100)" in lines["10 KB"] and "-7.00 ± 0.00, 3" in lines["10 KB"]


def test_kfold_merge_renames_one_runs_cells_and_a_later_run_wins(tmp_path, capsys, bench_module):
    kfold = bench_module("kfold")
    langs = ["aa"]

    def run(name: str, cells: dict[str, float]) -> str:
        rows = [{"cell": c, "lang": "aa", "fold": f, "seed": 0, "status": "ok", "blob_bytes": 100, "int8_acc": acc}
                for c, acc in cells.items() for f in range(2)]
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"rows": rows, "base_tflite_bytes": 1000}))
        return str(tmp_path / name)

    old = run("old", {"swr@1000B": 0.5, "full_ft": 0.6})
    new = run("new", {"swr@1000B": 0.7, "full_ft": 0.8})
    kfold.merge([f"{old}:swr=swr_greedy", new], tmp_path / "m", langs)
    got = {(r["cell"], r["fold"]): r["int8_acc"] for r in json.loads((tmp_path / "m" / "summary.json").read_text())["rows"]}
    assert got == {("swr_greedy@1000B", 0): 0.5, ("swr_greedy@1000B", 1): 0.5, ("swr@1000B", 0): 0.7, ("swr@1000B", 1): 0.7,
                   ("full_ft", 0): 0.8, ("full_ft", 1): 0.8}


def test_kfold_sites_counts_the_int8_weights_a_model_moves_on_the_base_grid(bench_module):
    import copy

    import torch

    from polykws.training.deltas.model import site_grid
    from polykws.training.models import ds_cnn_s

    sites = bench_module("kfold_sites")
    torch.manual_seed(0)
    base = ds_cnn_s(num_classes=4).eval()
    model = copy.deepcopy(base)
    layer = model.get_submodule("blocks.1.pw")
    grid = site_grid(base, "blocks.1.pw", base.get_submodule("blocks.1.pw"))
    with torch.no_grad():
        for idx, dq in (((3, 5), 3.0), ((7, 1), -2.0), ((0, 0), 0.4)):  # 0.4 of a step rounds back to the base byte
            i = (*idx, 0, 0)
            layer.weight[i] = float((grid.q0[i] + dq) * grid.step[i])
    got = sites.site_changes(base, model)
    assert got["blocks.1.pw"] == (2, 2.5)
    assert all(v == (0, 0.0) for k, v in got.items() if k != "blocks.1.pw") and "conv0" in got


def test_grid_rows_train_with_the_configs_recipe(tmp_path):
    """A grid of a config is a grid of its recipe: adapt.fit's settings reach every row (a k-fold of
    a recipe with class balance trains with it), --epochs replaces only the epochs, and a config
    at TransferConfig's defaults keys its rows as before (an empty fit)."""
    corpus = make_corpus(tmp_path / "corpus")
    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run")
    plain = {**raw, "adapt": {**raw["adapt"], "fit": {}}}
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(plain))
    assert grid_fit(load_config(tmp_path / "plain.yaml")) == {}
    recipe = {**raw, "adapt": {**raw["adapt"], "fit": {"epochs": 3, "class_balance": 1.0}}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    cfg = load_config(tmp_path / "recipe.yaml")
    assert grid_fit(cfg) == {"epochs": 3, "class_balance": 1.0}
    assert grid_fit(cfg, 7) == {"epochs": 7, "class_balance": 1.0}
    stage = next(s for s in grid_stages(cfg, [GridCell("head_only", "head_only")], seeds=[0], fit=grid_fit(cfg), progress=False)
                 if s.kind == "bench_adapt")
    assert stage.config["fit"] == {"epochs": 3, "class_balance": 1.0}
