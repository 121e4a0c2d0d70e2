"""polykws: multilingual keyword spotting for Cortex-M from one shared int8 base plus per-language blobs.

The one console script: one module per command group, each with `register(subparsers)`. This
package is the composition root: it parses flags, builds the layers' config objects, hands one
layer's output to the next (e.g. a model loaded through training/ to export/), and turns
PolykwsError into one clear line and exit code 2. The layers expose library functions only.
Command modules keep heavy imports (torch, tensorflow) inside their handlers so `polykws --help`
stays fast. No stage of `polykws run` hashes this package, so editing it reuses every artifact.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from polykws import __version__
from polykws.core import PolykwsError

# Every command group; a module that fails to import fails the CLI (never a silently missing command).
COMMAND_MODULES = (
    "polykws.cli.data",
    "polykws.cli.train",
    "polykws.cli.adapt",
    "polykws.cli.addlang",
    "polykws.cli.export",
    "polykws.cli.firmware",
    "polykws.cli.run",
    "polykws.cli.base",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polykws", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"polykws {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


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
