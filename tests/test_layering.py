"""Data flows one way: core -> datasets -> training -> export -> firmware; nothing imports back up.

export/ may see datasets' FrontendConfig (a plain config) but never training/: it receives a
merged plain nn.Module. The pipeline (polykws/pipeline) sits on the layers; the CLI package
(polykws/cli) sits on top of everything and nothing imports it, bench/ included. Across
packages only public names are imported: a leading underscore means "this package's own".
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
    "polykws/core": {"polykws.core"},
    "polykws/pipeline": {"polykws", "polykws.core", "polykws.datasets", "polykws.training", "polykws.export", "polykws.firmware",
                         "polykws.pipeline"},
    "bench": {"polykws", "polykws.core", "polykws.datasets", "polykws.training", "polykws.export", "polykws.firmware",
              "polykws.pipeline"},
}
# The package each source folder is (bench/ is scripts: every polykws name it imports is foreign).
PACKAGE_OF = {"datasets": "polykws.datasets", "training": "polykws.training", "export": "polykws.export",
              "firmware": "polykws.firmware", "polykws/core": "polykws.core", "polykws/pipeline": "polykws.pipeline",
              "polykws/cli": "polykws.cli", "bench": None}
SUBPACKAGES = ("core", "cli", "pipeline", "datasets", "training", "export", "firmware")


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, imported name or None) for every absolute polykws import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.module, a.name) for a in node.names]
    return [(m, n) for m, n in out if m == "polykws" or m.startswith("polykws.")]


def _polykws_imports(path: Path) -> set[str]:
    return {m for m, _ in _imports(path)}


def _layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in SUBPACKAGES:
        return ".".join(parts[:2])
    return parts[0]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_imports(path: Path, own_package: str | None) -> list[str]:
    """Imports of a private module or name that belongs to another package than `own_package`."""
    bad = []
    for module, name in _imports(path):
        if _layer_of(module) == own_package:
            continue
        parts = module.split(".") + ([name] if name else [])
        if any(_is_private(p) for p in parts):
            bad.append(f"{module}" + (f" import {name}" if name else ""))
    return bad


def _files(folder: str) -> list[Path]:
    return sorted(p for p in (repo_root() / folder).rglob("*.py") if ".venv" not in p.parts and "build" not in p.parts)


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_imports_only_flow_downward(folder):
    violations = []
    for py in _files(folder):
        for mod in _polykws_imports(py):
            if _layer_of(mod) not in ALLOWED[folder]:
                violations.append(f"{py.relative_to(repo_root())}: imports {mod}")
    assert not violations, "upward imports:\n" + "\n".join(violations)


@pytest.mark.parametrize("folder", sorted(PACKAGE_OF))
def test_no_private_names_across_packages(folder):
    violations = [f"{py.relative_to(repo_root())}: {imp}" for py in _files(folder) for imp in _private_imports(py, PACKAGE_OF[folder])]
    assert not violations, "private names imported from another package:\n" + "\n".join(violations)


def test_scanner_detects_an_upward_import(tmp_path):
    # The check above must be able to fail: an export module importing training is caught.
    bad = tmp_path / "bad.py"
    bad.write_text("from polykws.training.models import ds_cnn_s\nimport polykws.core\n")
    layers = {_layer_of(m) for m in _polykws_imports(bad)}
    assert "polykws.training" in layers and not layers <= ALLOWED["export"]


def test_scanner_detects_bench_importing_the_cli(tmp_path):
    bad = tmp_path / "bench_script.py"
    bad.write_text("from polykws.cli.adapt import run_adapt\n")
    assert {_layer_of(m) for m in _polykws_imports(bad)} - ALLOWED["bench"] == {"polykws.cli"}


def test_scanner_detects_private_names_across_packages(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from polykws.datasets.features import (\n    TaskSpec,\n    _Example,\n)\n"
                   "import polykws.datasets._parallel\nfrom polykws.training.data import _mix\n")
    assert _private_imports(bad, None) == ["polykws.datasets.features import _Example", "polykws.datasets._parallel",
                                          "polykws.training.data import _mix"]
    # Inside its own package a private name is fine.
    assert _private_imports(bad, "polykws.training") == ["polykws.datasets.features import _Example", "polykws.datasets._parallel"]


# --- import circles -------------------------------------------------------------------------------
# Circles that remain, each for a reason; anything else found fails the test below.
KNOWN_CIRCLES: dict[frozenset[str], str] = {
    frozenset({"polykws.training.deltas.base", "polykws.training.deltas.budget"}):
        "DeltaLayer.fit_to_budget's default imports the budget helpers lazily; budget reads the site table from base",
}


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (lazily or not), less a package imported by its own submodules."""
    from polykws.pipeline import codekey

    mods = {}
    for folder in ("polykws", "datasets", "training", "export", "firmware"):
        for f in sorted((repo_root() / folder).rglob("*.py")):
            if (name := codekey.module_of_file(f)) is not None and codekey.locate(name) is not None:
                mods[name] = codekey.locate(name)
    return {m: {t for t in codekey.direct_imports(m) if t in mods and t != m and not (mods[t].is_package and m.startswith(t + "."))}
            for m in mods}


def _circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def test_no_import_circles():
    found = set(_circles(_import_graph()))
    unexpected = [sorted(c) for c in found - set(KNOWN_CIRCLES)]
    assert not unexpected, f"import circles: {unexpected}"
    assert not set(KNOWN_CIRCLES) - found, "a known circle is gone: drop it from KNOWN_CIRCLES"


def test_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _circles(graph) == [frozenset({"a", "b", "c"})]
