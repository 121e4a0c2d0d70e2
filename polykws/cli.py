"""The one `polykws` console script.

Each layer owns a `commands` module with `register(subparsers)`; this spine only wires them
together and turns PolykwsError into one clear line and exit code 2. Command modules keep
heavy imports (torch, tensorflow) inside their handlers so `polykws --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from polykws import __version__
from polykws.core import PolykwsError

COMMAND_MODULES = (
    "polykws.datasets.commands",
    "polykws.training.commands",
    "polykws.export.commands",
    "polykws.firmware.commands",
    "polykws.pipeline.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polykws", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"polykws {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only tolerate the command module itself being absent, never a broken import inside it.
            if exc.name != name:
                raise
            continue
        module.register(sub)
        if hasattr(module, "set_model_loader"):
            module.set_model_loader(_load_model_file)
    return parser


def _load_model_file(path: str):
    """The spine is the composition root: export/ never imports training/, so it is handed this loader."""
    from polykws.training.checkpoint import load_model

    return load_model(path)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except PolykwsError as exc:
        print(f"polykws {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished artifacts are kept and the run can resume", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
