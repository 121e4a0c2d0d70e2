"""The package list, computed: every folder with an __init__.py below each root of pyproject's
[tool.setuptools] package-dir is installed under its polykws.* name, so adding a folder (a new
delta family, say) needs no edit here or in pyproject.toml."""

import tomllib
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def package_dirs() -> dict[str, str]:
    return tomllib.loads((HERE / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def packages() -> list[str]:
    out = []
    for name, folder in package_dirs().items():
        out.append(name)
        out += [f"{name}.{sub}" for sub in find_packages(str(HERE / folder), exclude=["build", "build.*"])]
    return sorted(set(out))


if __name__ == "__main__":
    setup(packages=packages())
