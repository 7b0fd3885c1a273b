"""The `cgo-audit attach PID` command: its options, and the report it shares
with `run` and `watch`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pid", type=int)
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds to count before detaching (0: until Ctrl-C or the process ends)")
    parser.add_argument("--detach-after", type=float, metavar="S",
                        help="detach after S seconds whatever else happens (a bound for production)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds left out of the trends at the start")
    parser.add_argument("--pprof", dest="pprof_url", help="its pprof address, e.g. http://127.0.0.1:6060")
    parser.add_argument("--load", action="append", default=[], metavar="URL",
                        help="keep GET requests going against URL (repeatable); figures become per request")
    parser.add_argument("--concurrency", type=int, default=2, help="--load connections (default 2)")
    parser.add_argument("--stacks", choices=("all", "sampled", "off"), default="sampled",
                        help="allocation stacks for leak sites (default sampled)")
    parser.add_argument("--json", type=Path, help="write the JSON report here")
    parser.add_argument("--html", type=Path, help="write a self-contained HTML report with charts here")
    parser.add_argument("--quiet", action="store_true", help="no live progress")


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    from cgo_audit.attachaudit import AttachSettings, audit_attached
    from cgo_audit.cli import report_program

    console = console or Console(highlight=False, soft_wrap=True)
    settings = AttachSettings(pid=args.pid, duration_s=args.duration or None, detach_after_s=args.detach_after,
                              interval_s=args.interval, pprof_url=args.pprof_url, load_urls=args.load,
                              load_concurrency=args.concurrency, stacks=args.stacks, warmup_s=args.warmup)
    live = console.is_terminal and not args.quiet

    def progress(sample: object) -> None:
        if live:
            s = sample  # ProgramSample
            console.print(f"[dim]  {s.time_s:5.0f}s  C {s.c_bytes} B  RSS {s.rss_bytes >> 10} KiB  "  # type: ignore[attr-defined]
                          f"fds {s.fds}  threads {s.threads}[/]".ljust(79), end="\r")  # type: ignore[attr-defined]

    result = audit_attached(settings, progress)
    if live:
        console.print(" " * 79, end="\r")
    return report_program(result, "attach", args, console)
