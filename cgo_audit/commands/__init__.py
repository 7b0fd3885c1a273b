"""The CLI commands, one module each, registered in COMMANDS.

A command module has HELP (one line for `cgo-audit --help`), DESCRIPTION
(its own --help, or None), `prepare_parser(parser) -> None` that adds its
arguments, and `run(args) -> int` that returns the exit status. Option groups
that several commands share are in common.py. To add a command, write its
module and add one line to COMMANDS; cli.py needs no change."""

from __future__ import annotations

import argparse
from types import ModuleType

from cgo_audit.commands import attach, baseline, bench, build_shim, demo, exec_binary, init, run, watch

# In the order `cgo-audit --help` lists them.
COMMANDS: dict[str, ModuleType] = {
    "bench": bench,
    "run": run,
    "watch": watch,
    "attach": attach,
    "baseline": baseline,
    "exec": exec_binary,
    "demo": demo,
    "init": init,
    "build-shim": build_shim,
}


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """A subparser per registered command, whose handler is the module's run."""
    for name, module in COMMANDS.items():
        parser = subparsers.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.prepare_parser(parser)
        parser.set_defaults(handler=module.run)
