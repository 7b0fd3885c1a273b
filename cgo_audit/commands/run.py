"""`cgo-audit run`: run any program under the shim and watch it for leaks."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from cgo_audit.commands.common import (
    add_load_options,
    add_metrics_option,
    add_output_options,
    add_sampling_options,
    byte_size,
    check_load_options,
    count,
    end_on_sigterm,
    make_console,
    prefetch_report_modules,
    report_program,
    seconds,
)
from cgo_audit.errors import AuditError

if TYPE_CHECKING:
    from cgo_audit.audits.live import LiveFigures
    from cgo_audit.model import ProgramSample

HELP = "run any program under the shim and watch it for leaks"
DESCRIPTION = ("Start CMD under the shim (a server while a load generator hits it), "
               "sample its C heap, RSS, fds and threads, and its goroutines and Go heap through "
               "net/http/pprof, then give verdicts from the trends.")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS")
    add_sampling_options(parser, duration=30.0,
                         duration_help="seconds to watch before stopping it with SIGINT (0: until it exits)")
    parser.add_argument("--warmup", type=seconds, default=0.0, help="seconds left out of the trends at the start")
    add_load_options(parser)
    parser.add_argument("--memory-limit", type=byte_size, help="kill it when RSS passes this, like the OOM killer")
    parser.add_argument("--restarts", type=count, default=0,
                        help="start it again up to this many times when it dies (the OOM-kill sawtooth)")
    parser.add_argument("--stacks", choices=("all", "sampled", "off"), default="all",
                        help="allocation stacks for leak sites: every allocation, exact (default), sampled "
                        "(cheaper, estimated), or off")
    parser.add_argument("--cwd", type=Path, default=Path("."), help="directory to start CMD in")
    add_output_options(parser, quiet_help="no live progress")
    add_metrics_option(parser)


def run(args: argparse.Namespace) -> int:
    # Only what starting the target needs is imported before it starts (the
    # rest loads while it runs): start-up is time added to every run.
    from cgo_audit.audits.live import LiveFigures
    from cgo_audit.audits.run import RunSettings, audit_program

    end_on_sigterm()
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise AuditError("run needs a command: cgo-audit run [options] -- CMD ARGS")
    check_load_options(args)
    if not args.cwd.is_dir():
        raise AuditError(f"--cwd: no such directory: {args.cwd}")
    settings = RunSettings(argv=command, cwd=args.cwd, duration_s=args.duration or None,
                           interval_s=args.interval, pprof_url=args.pprof_url, load_urls=args.load,
                           load_concurrency=args.concurrency, memory_limit_bytes=args.memory_limit,
                           restarts=args.restarts, stop_after_ops=args.requests,
                           stacks=args.stacks, warmup_s=args.warmup, max_samples=args.max_samples)
    # A quiet run prints nothing before the report: its console can wait.
    console = make_console() if not args.quiet or args.metrics_addr else None
    live = console is not None and console.is_terminal and not args.quiet

    figures = LiveFigures(command, "request" if args.load else "second", args.memory_limit, args.warmup)
    prefetched = False

    def progress(s: ProgramSample) -> None:
        nonlocal prefetched
        if not prefetched:   # the first sample: the target is running
            prefetch_report_modules()
            prefetched = True
        figures.add(s)
        if live and console is not None:
            c = f"C {s.c_bytes} B" if s.c_bytes is not None else "C -"
            console.print(f"[dim]  {s.time_s:5.0f}s  {c}  RSS {s.rss_bytes >> 10} KiB  fds {s.fds}  "
                          f"threads {s.threads}[/]".ljust(79), end="\r")

    with serve_metrics(args.metrics_addr, figures) as url:
        if url and console is not None:
            console.print(f"metrics: {url}")
        result = audit_program(settings, progress)
    if live and console is not None:
        console.print(" " * 79, end="\r")
    return report_program(result, "run", args, console or make_console())


def serve_metrics(address: str | None, figures: LiveFigures) -> contextlib.AbstractContextManager[str | None]:
    """The metrics server when an address is asked for (prometheus_client
    is imported only then)."""
    if not address:
        return contextlib.nullcontext(None)
    from cgo_audit.audits.metrics import serve_metrics as serve

    return serve(address, figures)
