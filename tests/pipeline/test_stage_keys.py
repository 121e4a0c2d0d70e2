"""Stage keys hash the code a stage runs, never the CLI: editing `polykws --help` reuses every artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

from polykws.core import repo_root
from polykws.pipeline import engine
from polykws.pipeline.config import load_config
from polykws.pipeline.run import build_stages


def _keys(stages) -> dict[str, str]:
    # Upstream content hashes are fixed stand-ins: only each stage's own key inputs vary here.
    upstream = {s.name: {"content_hash": f"content-of-{s.name}"} for s in stages}
    return {s.name: engine.stage_key(s, upstream) for s in stages}


def _keys_with_edited(monkeypatch, stages, folder: Path) -> dict[str, str]:
    """Keys as they would be after editing every source file under `folder` (a changed file hash)."""
    real = engine.sha256_file

    def edited(path, *a, **kw):
        digest = real(path, *a, **kw)
        return "edited-" + digest if Path(path).resolve().is_relative_to(folder.resolve()) else digest

    monkeypatch.setattr(engine, "sha256_file", edited)
    monkeypatch.setattr(engine, "_CODE_HASHES", {})
    return _keys(stages)


@pytest.fixture
def demo_stages(monkeypatch):
    monkeypatch.setattr(engine, "_CODE_HASHES", {})
    return build_stages(load_config(repo_root() / "configs" / "demo.yaml"), progress=False)


def test_editing_the_cli_changes_no_stage_key(monkeypatch, demo_stages):
    before = _keys(demo_stages)
    after = _keys_with_edited(monkeypatch, demo_stages, repo_root() / "polykws" / "cli")
    assert after == before


def test_editing_training_code_changes_the_training_stage_keys(monkeypatch, demo_stages):
    # The check above can fail: the same edit under training/ re-keys the stages that run it.
    before = _keys(demo_stages)
    after = _keys_with_edited(monkeypatch, demo_stages, repo_root() / "training")
    changed = {n for n in before if before[n] != after[n]}
    assert {"base"} | {n for n in before if n.startswith("adapt/")} <= changed
    assert not any(n.startswith(("scan", "features/")) for n in changed)
