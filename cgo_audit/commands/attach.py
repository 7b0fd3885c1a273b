"""`cgo-audit attach PID`: load the shim into a running process, count its C
heap exactly from that moment, detach; reported as `run` reports."""

from __future__ import annotations

import argparse

from cgo_audit.commands.common import (
    add_load_options,
    add_metrics_option,
    add_output_options,
    add_sampling_options,
    check_load_options,
    make_console,
    report_program,
)

HELP = "attach to a running process and audit it, without a restart"
DESCRIPTION = ("Load the shim into a running, dynamically linked process (ptrace), count its C heap exactly "
               "from that moment, then detach and leave it running: the same figures and verdicts as run. "
               "See docs/attach.md.")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pid", type=int)
    add_sampling_options(parser, duration=30.0,
                         duration_help="seconds to count before detaching (0: until Ctrl-C or the process ends)")
    parser.add_argument("--detach-after", type=float, metavar="S",
                        help="detach after S seconds whatever else happens (a bound for production)")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds left out of the trends at the start")
    add_load_options(parser)
    parser.add_argument("--stacks", choices=("all", "sampled", "off"), default="sampled",
                        help="allocation stacks for leak sites (default sampled)")
    add_output_options(parser, quiet_help="no live progress")
    add_metrics_option(parser)


def run(args: argparse.Namespace) -> int:
    from cgo_audit.audits.attach import AttachSettings, audit_attached
    from cgo_audit.audits.metrics import LiveFigures, serve_metrics
    from cgo_audit.commands.watch import process_name

    check_load_options(args)
    console = make_console()
    settings = AttachSettings(pid=args.pid, duration_s=args.duration or None, detach_after_s=args.detach_after,
                              interval_s=args.interval, pprof_url=args.pprof_url, load_urls=args.load,
                              load_concurrency=args.concurrency, stacks=args.stacks, warmup_s=args.warmup,
                              max_samples=args.max_samples, stop_after_ops=args.requests)
    live = console.is_terminal and not args.quiet
    figures = LiveFigures([process_name(args.pid)], "request" if args.load else "second", warmup_s=args.warmup,
                          pid=args.pid)

    def progress(sample: object) -> None:
        figures.add(sample)  # type: ignore[arg-type]
        if live:
            s = sample  # ProgramSample
            console.print(f"[dim]  {s.time_s:5.0f}s  C {s.c_bytes} B  RSS {s.rss_bytes >> 10} KiB  "  # type: ignore[attr-defined]
                          f"fds {s.fds}  threads {s.threads}[/]".ljust(79), end="\r")  # type: ignore[attr-defined]

    with serve_metrics(args.metrics_addr, figures) as url:
        if url:
            console.print(f"metrics: {url}")
        result = audit_attached(settings, progress)
    if live:
        console.print(" " * 79, end="\r")
    return report_program(result, "attach", args, console)
