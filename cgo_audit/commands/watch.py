"""`cgo-audit watch`: watch a running process for leaks. A process that was
not started under the shim gets it attached (audits/attach.py), unless
--no-attach: then its C heap is not measured and the audit is incomplete."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cgo_audit.commands.common import (
    add_metrics_option,
    add_output_options,
    add_sampling_options,
    end_on_sigterm,
    make_console,
    report_program,
)

if TYPE_CHECKING:
    from cgo_audit.model import ProgramSample

HELP = "watch a running process for leaks"
DESCRIPTION = ("Sample a running process (RSS, fds, threads; its C heap, through the shim it was started "
               "under or, else, attached to it for the watch; goroutines and Go heap through --pprof-url) with a "
               "live view, then give verdicts from the trends. Ctrl-C ends it.")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pid", type=int)
    add_sampling_options(parser, duration=0.0, duration_help="seconds to watch (0: until Ctrl-C)")
    parser.add_argument("--no-attach", action="store_true",
                        help="never load the shim into it: without it the C heap is not measured (exit 2)")
    parser.add_argument("--detach-after", type=float, metavar="S",
                        help="when attached: detach after S seconds whatever else happens")
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
    from cgo_audit.audits.watch import WatchSettings, attach_refusal, live_table, watch_process
    from cgo_audit.measure.series import BoundedSeries

    end_on_sigterm()
    console = make_console()
    live_view = console.is_terminal and not args.quiet
    figures = LiveFigures([process_name(args.pid)], "second", pid=args.pid)
    refusal = attach_refusal(args.pid, args.no_attach)
    with serve_metrics(args.metrics_addr, figures) as url:
        if url:
            console.print(f"metrics: {url}")
        if refusal is None:  # not started under the shim: attach, count from now, detach at the end
            from cgo_audit.audits.attach import AttachSettings, audit_attached

            attach_settings = AttachSettings(pid=args.pid, duration_s=args.duration or None,
                                             detach_after_s=args.detach_after, interval_s=args.interval,
                                             pprof_url=args.pprof_url, max_samples=args.max_samples)
            seen: BoundedSeries[ProgramSample] = BoundedSeries(args.max_samples)   # bounded like the audit's

            def attached(sample: ProgramSample) -> None:
                figures.add(sample)
                seen.append(sample)
                if live is not None:
                    live.update(live_table(seen.items()))

            live = None
            if live_view:
                with Live(console=console, refresh_per_second=4, transient=True) as live:
                    result = audit_attached(attach_settings, attached)
            else:
                result = audit_attached(attach_settings, attached)
            return report_program(result, "watch", args, console)
        settings = WatchSettings(pid=args.pid, duration_s=args.duration or None, interval_s=args.interval,
                                 pprof_url=args.pprof_url, attach_refusal=refusal, max_samples=args.max_samples)

        def update(samples: list[ProgramSample], _missing: list[str]) -> None:
            figures.add(samples[-1])
            if live is not None:
                live.update(live_table(samples))

        live = None
        if live_view:
            with Live(console=console, refresh_per_second=4, transient=True) as live:
                result = watch_process(settings, update)  # type: ignore[arg-type]
        else:
            result = watch_process(settings, update)  # type: ignore[arg-type]
    # A C heap that was not measured is the verdict's business (c-heap-not-measured, exit 2);
    # one that cannot leak (a static binary without cgo) is not.
    return report_program(result, "watch", args, console)
