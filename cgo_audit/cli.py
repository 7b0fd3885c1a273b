"""The `cgo-audit` command line: a parser with a subcommand per module of
cgo_audit.commands, and one place that turns errors into exit statuses.

Exit status: 0 no leak (or only leaks the baseline accepts), 1 a new leak,
2 the audit could not run (bad input, a build failure, a target that
crashed or hung). Errors are one line, never a traceback (--debug shows it)."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
import traceback
from typing import NoReturn, Sequence

from cgo_audit import __version__
from cgo_audit.commands import add_commands
from cgo_audit.commands.common import EXIT_ERROR
from cgo_audit.errors import AuditError
from cgo_audit.extras import require_extras


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other bad input
    (`cgo-audit CMD --help` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cgo-audit", description="Find C-heap leaks in Go programs "
                                     "that use cgo, where go tool pprof cannot look.")
    parser.add_argument("--version", action="version", version=f"cgo-audit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        require_extras(args)
        return args.handler(args)
    except AuditError as exc:
        print(f"cgo-audit: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("cgo-audit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: still one line, unless asked for more
        if args.debug or os.environ.get("CGO_AUDIT_DEBUG"):
            traceback.print_exc()
        print(f"cgo-audit: internal error: {type(exc).__name__}: {exc} (rerun with --debug)", file=sys.stderr)
        return EXIT_ERROR


def run_cli() -> NoReturn:
    """`cgo-audit` and `python -m cgo_audit`: main(), then exit without
    Python's teardown, which frees every loaded module one by one (15-30 ms
    after the report is out, added to every run). Skipped only once nothing
    depends on it: the atexit handlers have run, the output is flushed and
    no other non-daemon thread is left (else the ordinary exit)."""
    status = main()
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others:
        sys.exit(status)
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        sys.exit(status)   # a broken pipe and the like: Python's own exit reports it
    os._exit(status)
