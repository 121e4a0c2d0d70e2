"""Data flows one way: datasets -> training -> export -> firmware; nothing imports back up.

export/ may see datasets' FrontendConfig (a plain config) but never training/: it receives a
merged plain nn.Module. The CLI spine and the pipeline (polykws/) sit on top of everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from polykws.core import repo_root

ALLOWED = {
    "datasets": {"polykws.core", "polykws.datasets"},
    "training": {"polykws.core", "polykws.datasets", "polykws.training"},
    "export": {"polykws.core", "polykws.datasets", "polykws.export"},
    "firmware": {"polykws.core", "polykws.datasets", "polykws.export", "polykws.firmware"},
}


# CLI handlers sit on top of every layer even where their module lives in a layer's folder:
# `polykws adapt` reads a language's task from a pipeline config (polykws.pipeline.tasks).
CLI_MODULES = {"training/cli_adapt.py": {"polykws.pipeline"}}


def _polykws_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n == "polykws" or n.startswith("polykws.")}


def _layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ALLOWED | {"core": None}:
        return ".".join(parts[:2])
    return module if len(parts) == 1 else ".".join(parts[:2])


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_imports_only_flow_downward(folder):
    violations = []
    for py in sorted((repo_root() / folder).rglob("*.py")):
        allowed = ALLOWED[folder] | CLI_MODULES.get(py.relative_to(repo_root()).as_posix(), set())
        for mod in _polykws_imports(py):
            if _layer_of(mod) not in allowed:
                violations.append(f"{py.relative_to(repo_root())}: imports {mod}")
    assert not violations, "upward imports:\n" + "\n".join(violations)


def test_scanner_detects_an_upward_import(tmp_path):
    # The check above must be able to fail: an export module importing training is caught.
    bad = tmp_path / "bad.py"
    bad.write_text("from polykws.training.models import ds_cnn_s\nimport polykws.core\n")
    layers = {_layer_of(m) for m in _polykws_imports(bad)}
    assert "polykws.training" in layers and not layers <= ALLOWED["export"]
