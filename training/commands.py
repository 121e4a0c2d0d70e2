"""`polykws train|eval` (training/cli_train.py) and `polykws adapt` (training/cli_adapt.py)."""

from __future__ import annotations

import importlib

_PARTS = ("polykws.training.cli_train", "polykws.training.cli_adapt")


def register(subparsers) -> None:
    for name in _PARTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
