"""`cgo-audit build-shim`: build the LD_PRELOAD shim and print its path."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cgo_audit.commands.common import EXIT_CLEAN

HELP = "build the LD_PRELOAD shim and print its path"
DESCRIPTION = None


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, help="also copy the library here")


def run(args: argparse.Namespace) -> int:
    from cgo_audit.shim.build import build_shim

    path = build_shim()
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, args.output)
        path = args.output
    print(path)
    return EXIT_CLEAN
