"""`cgo-audit watch`: watch a running process for leaks."""

from __future__ import annotations

import argparse

from cgo_audit.commands.common import add_output_options, add_sampling_options, make_console, report_program

HELP = "watch a running process for leaks"
DESCRIPTION = ("Sample a running process (RSS, fds, threads; its C heap if it was "
               "started under the shim; goroutines and Go heap through --pprof-url) with a live view, "
               "then give verdicts from the trends. Ctrl-C ends it.")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pid", type=int)
    add_sampling_options(parser, duration=0.0, duration_help="seconds to watch (0: until Ctrl-C)")
    add_output_options(parser, quiet_help="no live view")


def run(args: argparse.Namespace) -> int:
    from rich.live import Live

    from cgo_audit.audits.watch import WatchSettings, live_table, watch_process

    console = make_console()
    settings = WatchSettings(pid=args.pid, duration_s=args.duration or None, interval_s=args.interval,
                             pprof_url=args.pprof_url)
    if console.is_terminal and not args.quiet:
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            result = watch_process(settings, lambda samples, _missing: live.update(live_table(samples)))
    else:
        result = watch_process(settings)
    return report_program(result, "watch", args, console)
