"""`cgo-audit init`: set a user's Go module up for cgo-audit (see
cgo_audit/toolchain/scaffold.py and docs/init.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cgo_audit import __version__
from cgo_audit.commands.common import EXIT_CLEAN

HELP = "set a Go module up for cgo-audit: driver, property tests, baseline, CI"
DESCRIPTION = ("Set the Go module in --dir up for cgo-audit: a driver main for its Cgo functions, "
               "pytest's configuration with a Hypothesis property test under limit_c_leaks, a baseline, "
               "a CI workflow, and goaudit in go.mod. Existing files are reported and left as they are.")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path("."), help="the Go module to set up (default: .)")
    parser.add_argument("--func", action="append", default=[], metavar="PKG.FUNC",
                        help="register this exported function in the driver (repeatable); "
                        "without it every callable one is listed as a TODO")
    parser.add_argument("--goaudit-replace", type=Path, metavar="PATH",
                        help="a local checkout of cgo-audit (or its goaudit directory): go.mod gets a "
                        "replace directive to it")
    parser.add_argument("--goaudit-version", default=f"v{__version__}",
                        help=f"the goaudit version go.mod requires (default: v{__version__}, this cgo-audit's)")


def run(args: argparse.Namespace) -> int:
    from cgo_audit.toolchain.scaffold import scaffold

    for line in scaffold(args.dir.resolve(), args.func, args.goaudit_version, args.goaudit_replace):
        print(line)
    print("next: edit the driver's TODO if there is one, then run pytest here; "
          "cgo-audit bench ./... audits the benchmarks")
    return EXIT_CLEAN
