"""Stage keys hash the code a stage can run, derived from its imports, and nothing else.

Two kinds of check: edits re-key exactly the stages whose import closure holds the edited file
(static), and every project module whose code actually runs while a stage runs is in that
stage's key (dynamic, on a real pipeline run with a profiler).
"""

from __future__ import annotations

import functools
import importlib
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from corpus_fixture import make_corpus, pipeline_config

from polykws.core import repo_root
from polykws.pipeline import codekey, engine
from polykws.pipeline.config import load_config
from polykws.pipeline.engine import SerialExecutor
from polykws.pipeline.run import build_stages
from polykws.pipeline.schedule import run_pipeline
from polykws.pipeline.store import ArtifactStore


def _keys(stages) -> dict[str, str]:
    # Upstream content hashes are fixed stand-ins: only each stage's own key inputs vary here.
    upstream = {s.name: {"content_hash": f"content-of-{s.name}"} for s in stages}
    return {s.name: engine.stage_key(s, upstream) for s in stages}


def _keys_with_edited(monkeypatch, stages, path: Path) -> dict[str, str]:
    """Keys as they would be after editing every source file at or under `path` (a changed file hash)."""
    real = codekey.sha256_file

    def edited(p, *a, **kw):
        digest = real(p, *a, **kw)
        return "edited-" + digest if Path(p).resolve().is_relative_to(path.resolve()) else digest

    # The sources themselves are unchanged, so only the hashed code maps are recomputed.
    monkeypatch.setattr(codekey, "sha256_file", edited)
    monkeypatch.setattr(engine, "_CODE", {})
    try:
        return _keys(stages)
    finally:
        monkeypatch.setattr(codekey, "sha256_file", real)
        monkeypatch.setattr(engine, "_CODE", {})


@pytest.fixture(scope="module")
def demo_stages():
    engine.clear_code_cache()
    return build_stages(load_config(repo_root() / "configs" / "demo.yaml"), progress=False)


def _changed(monkeypatch, stages, path: Path) -> set[str]:
    before = _keys(stages)
    after = _keys_with_edited(monkeypatch, stages, path)
    return {n for n in before if before[n] != after[n]}


def _module_file(name: str) -> Path:
    return Path(importlib.import_module(name).__file__)


def test_editing_the_cli_changes_no_stage_key(monkeypatch, demo_stages):
    assert _changed(monkeypatch, demo_stages, repo_root() / "polykws" / "cli") == set()


def test_editing_training_code_changes_the_training_stage_keys(monkeypatch, demo_stages):
    # The check above can fail: the same kind of edit under training/ re-keys the stages that run it.
    changed = _changed(monkeypatch, demo_stages, repo_root() / "training")
    assert {"base"} | {n for n in changed if n.startswith("adapt/")} <= changed
    assert any(n.startswith("adapt/") for n in changed)
    assert not any(n.startswith(("scan", "features/", "corpus")) for n in changed)


def test_code_that_training_runs_outside_training_rekeys_it(monkeypatch, demo_stages):
    """SpecAugment (datasets) runs inside the training loop; the int8 grid (core) inside every delta."""
    adapt = {n for n in _keys(demo_stages) if n.startswith("adapt/")}
    augment = _changed(monkeypatch, demo_stages, _module_file("polykws.datasets.augment"))
    assert {"base"} | adapt <= augment
    int8 = _changed(monkeypatch, demo_stages, _module_file("polykws.core.int8"))
    assert adapt <= int8
    assert "base" not in int8, "base pretraining never touches the int8 grid"


def test_code_a_stage_cannot_import_does_not_rekey_it(monkeypatch, demo_stages):
    """The report module is not training code: editing it re-keys the report and nothing upstream."""
    changed = _changed(monkeypatch, demo_stages, _module_file("polykws.pipeline.report"))
    assert changed == {"report"}


def test_base_key_leaves_out_the_transfer_methods():
    from polykws.pipeline.stages.pretrain import base_stage

    mods = codekey.closure(base_stage)
    assert "polykws.training.fit" in mods and "polykws.datasets.augment" in mods
    assert not [m for m in mods if m.startswith(("polykws.training.swr", "polykws.training.adapt", "polykws.export"))]


def test_firmware_c_sources_key_the_firmware_stage(monkeypatch, demo_stages):
    c_file = next((repo_root() / "firmware").rglob("blob.c"))
    assert _changed(monkeypatch, demo_stages, c_file) == {"firmware"}


# --- the closure rules, on a stage module written here ------------------------------------------
def _write_stage_module(folder: Path, body: str) -> object:
    folder.mkdir(parents=True, exist_ok=True)
    name = f"keyed_stage_{abs(hash(body)) % 10**8}"
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


def test_closure_follows_lazy_imports_exports_tables_and_helpers(tmp_path):
    mod = _write_stage_module(tmp_path, """
        from polykws.core import stable_hash

        def _helper():
            import polykws.core.int8  # a lazy import in a helper the stage calls

        def unrelated():
            import polykws.datasets.synth  # never reached from the stage

        def stage(ctx):
            from polykws.datasets import SpecAugmentConfig  # a name of the lazy _EXPORTS table
            _helper()
            return {}
    """)
    mods = codekey.closure(mod.stage)
    assert {"polykws.core.int8", "polykws.datasets.augment", "polykws.core.io", mod.__name__} <= set(mods)
    assert "polykws.datasets.synth" not in mods
    # An import that reaches a package which discovers its subpackages keys all of them.
    mod2 = _write_stage_module(tmp_path, """
        def stage(ctx):
            from polykws.training.deltas import list_deltas
            return {}
    """)
    assert "polykws.training.deltas.lowrank.layer" in codekey.closure(mod2.stage)
    # A by-name import of a literal or of a module-level constant is an import too.
    mod3 = _write_stage_module(tmp_path, """
        import importlib

        WHICH = "polykws.core.int8"

        def stage(ctx):
            importlib.import_module(WHICH)
            return importlib.import_module("polykws.datasets.synth")
    """)
    assert {"polykws.core.int8", "polykws.datasets.synth"} <= set(codekey.closure(mod3.stage))


def test_swr_stages_are_keyed_on_the_ablation_searches_they_may_load(monkeypatch, demo_stages):
    """A config may name an ablation search, loaded by name: editing it re-keys SWR's stages, never the base."""
    changed = _changed(monkeypatch, demo_stages, Path(importlib.import_module("polykws.training.swr.ablations").__file__).parent)
    assert "base" not in changed and any(n.startswith("adapt/") and "/swr/" in n for n in changed)


# --- the dynamic check: what runs is what is keyed ------------------------------------------------
def _project_modules_run(fn):
    """Wrap a stage function: it records the project modules whose code runs while it runs."""
    seen: set[str] = set()

    def profile(frame, event, arg):
        if event == "call":
            seen.add(frame.f_code.co_filename)

    @functools.wraps(fn)
    def wrapped(ctx):
        sys.setprofile(profile)
        threading.setprofile(profile)
        try:
            return fn(ctx)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)

    def modules() -> set[str]:
        return {m for f in seen if not f.startswith("<") and (m := codekey.module_of_file(Path(f))) is not None}

    wrapped.modules = modules
    return wrapped


def test_every_module_a_stage_runs_is_in_its_key(tmp_path):
    """Run the fixture pipeline (scan, features, base, adapt with SWR and head-only, report) with
    a profiler: each stage's executed project modules must be in the closure its key hashes."""
    corpus = make_corpus(tmp_path / "corpus", speakers=6, takes=2)
    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run", methods=("head_only", "swr"))
    p = tmp_path / "fixture.yaml"
    p.write_text(yaml.safe_dump(raw))
    engine.clear_code_cache()
    stages = build_stages(load_config(p), progress=False)
    traced = [replace(s, fn=_project_modules_run(s.fn)) for s in stages]
    run_pipeline(traced, ArtifactStore(tmp_path / "store"), SerialExecutor(), show_progress=False)
    kinds = set()
    for s in traced:
        ran = s.fn.modules()
        assert ran, f"{s.name}: the profiler saw no project code"
        missing = ran - set(codekey.closure(s.fn))
        assert not missing, f"{s.name} ran modules its key leaves out: {sorted(missing)}"
        kinds.add(s.kind)
    assert {"scan", "features", "base", "adapt", "report"} <= kinds


def test_the_dynamic_check_fails_when_a_stage_imports_what_its_key_leaves_out(tmp_path, monkeypatch):
    """The check above can fail: with lazy imports ignored by the reader, a stage that imports
    a module inside its body runs code its key does not hold."""
    mod = _write_stage_module(tmp_path, """
        def stage(ctx):
            from polykws.core.int8 import head_weight_bits_error
            return {"error": head_weight_bits_error(8)}
    """)
    traced = _project_modules_run(mod.stage)
    traced(None)
    assert "polykws.core.int8" in traced.modules() and "polykws.core.int8" in codekey.closure(mod.stage)
    real = codekey._function_reach

    def module_level_only(m, fn_name):
        tree = codekey._parse(m.path).tree
        return codekey._all_imports(m, [n for n in tree.body if not isinstance(n, (codekey.ast.FunctionDef, codekey.ast.ClassDef))])

    monkeypatch.setattr(codekey, "_function_reach", module_level_only)
    codekey.clear_caches()
    try:
        assert "polykws.core.int8" in traced.modules() - set(codekey.closure(mod.stage))
    finally:
        monkeypatch.setattr(codekey, "_function_reach", real)
        codekey.clear_caches()
