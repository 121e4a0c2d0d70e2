"""The one-namespace install: every package folder is installed under polykws, none at top level."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import polykws
from polykws.core import repo_root


def _pyproject() -> dict:
    return tomllib.loads((repo_root() / "pyproject.toml").read_text())


def _setup_packages() -> list[str]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("polykws_setup", repo_root() / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: defines packages() without running setup()
    return module.packages()


def test_every_package_folder_is_installed():
    cfg = _pyproject()["tool"]["setuptools"]
    assert "packages" not in cfg, "setup.py computes the package list; a static list would drift from the folders"
    listed = set(_setup_packages())
    found = set()
    for pkg, folder in cfg["package-dir"].items():
        base = repo_root() / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if any(part.startswith(".") or part == "build" for part in rel.parts):
                continue
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    # Folders under polykws/ that are also mapped elsewhere are not nested packages.
    assert found == listed, f"missing: {sorted(found - listed)}, extra: {sorted(listed - found)}"
    assert {"polykws.training.deltas.bias", "polykws.training.adapt", "polykws.core"} <= listed


def test_no_top_level_datasets_module_is_ours(tmp_path):
    # Installing polykws must never shadow Hugging Face's `datasets`. Look from a neutral cwd
    # (running from the checkout root puts the source folder itself on sys.path).
    probe = "import importlib.util as u; s = u.find_spec('datasets'); print(s.origin if s and s.origin else '')"
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    origin = out.stdout.strip()
    if origin:
        assert Path(origin).resolve().parent != (repo_root() / "datasets").resolve()
    cfg = _pyproject()["tool"]["setuptools"]
    assert all(name == "polykws" or name.startswith("polykws.") for name in _setup_packages())
    assert all(name == "polykws" or name.startswith("polykws.") for name in cfg["package-dir"])


def test_subpackages_import_from_their_folders():
    import polykws.datasets
    import polykws.export
    import polykws.training

    assert Path(polykws.datasets.__file__).parent == repo_root() / "datasets"
    assert Path(polykws.training.__file__).parent == repo_root() / "training"
    assert Path(polykws.export.__file__).parent == repo_root() / "export"


def test_console_script_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "polykws.cli", "--help"], capture_output=True, text=True, check=True)
    assert "polykws" in out.stdout
    assert polykws.__version__
