"""`cgo-audit watch`: watch a running process for leaks. A process that was
not started under the shim gets it attached (audits/attach.py), unless
--no-attach: then its C heap is not measured and the audit is incomplete."""

from __future__ import annotations

import argparse

from cgo_audit.commands.common import (
    EXIT_CLEAN,
    EXIT_ERROR,
    add_output_options,
    add_sampling_options,
    make_console,
    report_program,
)

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


def run(args: argparse.Namespace) -> int:
    from rich.live import Live

    from cgo_audit.audits.watch import WatchSettings, attach_refusal, live_table, watch_process

    console = make_console()
    live_view = console.is_terminal and not args.quiet
    refusal = attach_refusal(args.pid, args.no_attach)
    if refusal is None:  # not started under the shim: attach, count from now, detach at the end
        from cgo_audit.audits.attach import AttachSettings, audit_attached

        attach_settings = AttachSettings(pid=args.pid, duration_s=args.duration or None,
                                         detach_after_s=args.detach_after, interval_s=args.interval,
                                         pprof_url=args.pprof_url)
        seen: list[object] = []
        if live_view:
            with Live(console=console, refresh_per_second=4, transient=True) as live:
                def show(sample: object) -> None:
                    seen.append(sample)
                    live.update(live_table(seen))  # type: ignore[arg-type]

                result = audit_attached(attach_settings, show)
        else:
            result = audit_attached(attach_settings)
        return report_program(result, "watch", args, console)
    settings = WatchSettings(pid=args.pid, duration_s=args.duration or None, interval_s=args.interval,
                             pprof_url=args.pprof_url, attach_refusal=refusal)
    if live_view:
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            result = watch_process(settings, lambda samples, _missing: live.update(live_table(samples)))
    else:
        result = watch_process(settings)
    status = report_program(result, "watch", args, console)
    if status == EXIT_CLEAN and any(line.startswith("C heap") for line in result.missing):
        console.print("cgo-audit watch: the C heap was not measured, so the audit is incomplete (exit 2)")
        return EXIT_ERROR
    return status
