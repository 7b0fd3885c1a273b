"""`cgo-audit watch`: watch a running process for leaks."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Sequence

from cgo_audit.commands.common import (
    add_metrics_option,
    add_output_options,
    add_sampling_options,
    end_on_sigterm,
    make_console,
    report_program,
)

if TYPE_CHECKING:
    from rich.live import Live

    from cgo_audit.model import ProgramSample

HELP = "watch a running process for leaks"
DESCRIPTION = ("Sample a running process (RSS, fds, threads; its C heap if it was "
               "started under the shim; goroutines and Go heap through --pprof) with a live view, "
               "then give verdicts from the trends. Ctrl-C ends it.")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pid", type=int)
    add_sampling_options(parser, duration=0.0, duration_help="seconds to watch (0: until Ctrl-C)")
    add_output_options(parser, quiet_help="no live view")
    add_metrics_option(parser)


def process_name(pid: int) -> str:
    import psutil

    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return str(pid)  # watch_process says what is wrong with it


def run(args: argparse.Namespace) -> int:
    from rich.live import Live

    from cgo_audit.audits.metrics import LiveFigures, serve_metrics
    from cgo_audit.audits.watch import WatchSettings, live_table, watch_process

    end_on_sigterm()
    console = make_console()
    settings = WatchSettings(pid=args.pid, duration_s=args.duration or None, interval_s=args.interval,
                             pprof_url=args.pprof_url)
    figures = LiveFigures([process_name(args.pid)], "second")
    live: Live | None = None

    def update(samples: Sequence[ProgramSample], _missing: Sequence[str]) -> None:
        figures.add(samples[-1])
        if live is not None:
            live.update(live_table(samples))

    with serve_metrics(args.metrics_addr, figures) as url:
        if url:
            console.print(f"metrics: {url}")
        if console.is_terminal and not args.quiet:
            with Live(console=console, refresh_per_second=4, transient=True) as live:
                result = watch_process(settings, update)
        else:
            result = watch_process(settings, update)
    return report_program(result, "watch", args, console)
