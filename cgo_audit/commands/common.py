"""What the commands share: exit statuses, argument types, option groups
(output files, sampling, leak policy), the console, and the report of a
run or watch."""

from __future__ import annotations

import argparse
import re
import signal
from pathlib import Path
from typing import Sequence

from rich.console import Console

from cgo_audit.model import ProgramResult

EXIT_CLEAN, EXIT_LEAK, EXIT_ERROR = 0, 1, 2


def exit_status(results: Sequence[object]) -> int:
    """1 when a leak is neither accepted by the baseline nor under the
    threshold, else 2 when a benchmark could not be audited or its audit is
    incomplete (inconclusive, undecided, C heap not measured), else 0."""
    if any(r.is_new_leak for r in results):  # type: ignore[attr-defined]
        return EXIT_LEAK
    if any(r.error or r.is_incomplete for r in results):  # type: ignore[attr-defined]
        return EXIT_ERROR
    return EXIT_CLEAN


def make_console() -> Console:
    """The console every command prints to."""
    return Console(highlight=False, soft_wrap=True)


def size_list(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("sizes are whole numbers separated by commas") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be at least 1")
    if len(set(sizes)) < 3:
        raise argparse.ArgumentTypeError("give at least three different sizes: two points always fit a line, "
                                         "so they cannot tell a leak from a plateau")
    return sizes


SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000 ** 2,
              "mib": 1 << 20, "g": 1 << 30, "gb": 1000 ** 3, "gib": 1 << 30}


def byte_size(text: str) -> int:
    """'256MiB', '1G', '500000' -> bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if match is None or match.group(2).lower() not in SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256MiB)")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])


def add_output_options(parser: argparse.ArgumentParser, *, quiet_help: str, junit: bool = False) -> None:
    """The report files (--json, --html, and --junit where there are test
    cases to report) and --quiet."""
    if junit:
        parser.add_argument("--junit", type=Path, help="write a JUnit XML report here (a test case per benchmark)")
    parser.add_argument("--json", type=Path, help="write the JSON report here")
    parser.add_argument("--html", type=Path, help="write a self-contained HTML report with charts here")
    parser.add_argument("--quiet", action="store_true", help=quiet_help)


def add_sampling_options(parser: argparse.ArgumentParser, *, duration: float, duration_help: str) -> None:
    """How long and how often a running program is sampled, and its pprof
    endpoint (goroutines and Go heap)."""
    parser.add_argument("--duration", type=float, default=duration, help=duration_help)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--pprof", dest="pprof_url", help="the program's pprof address, e.g. http://127.0.0.1:6060")
    parser.add_argument("--max-samples", type=max_samples, default=DEFAULT_SAMPLES, metavar="N",
                        help=f"samples kept for the fit and the curves; older ones are thinned evenly past it, so "
                        f"a watch of days stays small (default {DEFAULT_SAMPLES})")


DEFAULT_SAMPLES = 4096   # cgo_audit.measure.series.DEFAULT_CAPACITY


def max_samples(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number of samples") from None
    if value < 16:
        raise argparse.ArgumentTypeError("keep at least 16 samples: the fit's checkpoints need room")
    return value


def add_policy_options(parser: argparse.ArgumentParser) -> None:
    """Which leaks fail the audit: a baseline of accepted ones, and a tolerance."""
    parser.add_argument("--baseline", type=Path, help="JSON file of accepted known leaks")
    parser.add_argument("--max-leak-bytes-per-op", type=float, metavar="BYTES",
                        help="tolerate byte leaks (C heap, Go heap, RSS) up to this per op (default: none)")


def add_metrics_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-addr", metavar="HOST:PORT",
                        help="serve the figures, slopes and verdict for Prometheus at http://HOST:PORT/metrics")


def end_on_sigterm() -> None:
    """A container being stopped (SIGTERM) ends the audit like Ctrl-C, so the
    target is stopped too, never left running without its auditor."""
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def report_program(result: ProgramResult, command: str, args: argparse.Namespace, console: Console) -> int:
    """The terminal report of a run or watch, and the files asked for; the exit status."""
    from cgo_audit.report.json_report import write_program_json
    from cgo_audit.report.terminal import render_program

    status = exit_status([result])
    render_program(result, status, console, command=command)
    if args.json:
        write_program_json(result, status, args.json)
    if args.html:
        from cgo_audit.report.html import render_programs_html, write_html

        page = render_programs_html([result], f"cgo-audit {command}: {result.name}", exit_status=status)
        write_html(page, args.html)
    return status
