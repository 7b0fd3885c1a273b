"""What the commands share: exit statuses, argument types, option groups
(output files, sampling, leak policy), the console, and the report of a
run or watch."""

from __future__ import annotations

import argparse
import signal
import threading
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

from cgo_audit import units
from cgo_audit.errors import AuditError
from cgo_audit.measure.series import DEFAULT_CAPACITY

if TYPE_CHECKING:   # imported where used: `run` starts its target before it needs them
    from rich.console import Console

    from cgo_audit.model import AuditReport, ProgramResult

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
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def prefetch_report_modules() -> None:
    """Imports what the report of a run or watch needs, in a thread, while
    the target runs: after it ends, only the report's own work is left."""
    def load() -> None:
        import cgo_audit.report.json_report  # noqa: F401
        import cgo_audit.report.terminal  # noqa: F401

    threading.Thread(target=load, name="prefetch-report", daemon=True).start()


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


Number = TypeVar("Number", int, float)


def _number(kind: Callable[[str], Number], minimum: float, what: str) -> Callable[[str], Number]:
    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    parse.__name__ = what
    return parse


# Option types that refuse what cannot be meant, in one line (exit 2).
seconds = _number(float, 0.0, "a number of seconds >= 0")
positive_seconds = _number(float, 1e-3, "a number of seconds > 0")
count = _number(int, 0, "a whole number >= 0")
positive_count = _number(int, 1, "a whole number >= 1")


def byte_size(text: str) -> int:
    """'256MiB', '1G', '500000' -> bytes, binary units (cgo_audit.units)."""
    try:
        return units.parse_size(text)
    except units.SizeError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256MiB)") from None


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
    parser.add_argument("--duration", type=seconds, default=duration, help=duration_help)
    parser.add_argument("--interval", type=positive_seconds, default=1.0, help="seconds between samples")
    parser.add_argument("--pprof-url", type=pprof_url, metavar="URL",
                        help="the program's net/http/pprof address, e.g. http://127.0.0.1:6060")
    parser.add_argument("--max-samples", type=max_samples, default=DEFAULT_CAPACITY, metavar="N",
                        help=f"samples kept for the fit and the curves; older ones are thinned evenly past it, so "
                        f"a watch of days stays small (default {DEFAULT_CAPACITY})")


def max_samples(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number of samples") from None
    if value < 16:
        raise argparse.ArgumentTypeError("keep at least 16 samples: the fit's checkpoints need room")
    return value


# One meaning per flag: --pprof is always a file cgo-audit writes (bench),
# --pprof-url always an address it reads (run, watch). Each refuses the other's kind.
def pprof_url(text: str) -> str:
    """run/watch --pprof-url: an http(s) address, not a file."""
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http:// address (--pprof-url reads the program's net/http/pprof endpoint; "
            "bench --pprof FILE writes a profile)")
    return text.rstrip("/")


def pprof_file(text: str) -> Path:
    """bench --pprof: the profile file to write, not an address."""
    if "://" in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is an address, not a file (bench --pprof FILE writes a profile; "
            "run and watch read a program's endpoint with --pprof-url URL)")
    return Path(text)


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """The load cgo-audit puts on a server (figures then per request), and
    --requests, a state to stop at rather than a number of seconds."""
    parser.add_argument("--load", action="append", default=[], metavar="URL",
                        help="keep GET requests going against URL (repeatable); figures become per request")
    parser.add_argument("--concurrency", type=positive_count, default=2, help="--load connections (default 2)")
    parser.add_argument("--requests", type=positive_count, metavar="N",
                        help="stop once --load has had N answers (--duration is then only the upper bound)")


def check_load_options(args: argparse.Namespace) -> None:
    if args.requests is not None and not args.load:
        raise AuditError("--requests N needs --load URL: it counts the load's answers")


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


def write_bench_reports(report: AuditReport, status: int, args: argparse.Namespace) -> None:
    """The files --json, --junit and --html ask for, from one audit report
    (bench's, or shards' merged)."""
    if args.json:
        from cgo_audit.report.json_report import write_json

        write_json(report, status, args.json)
    if args.junit:
        from cgo_audit.report.junit import write_junit

        write_junit(report, args.junit)
    if args.html:
        from cgo_audit.report.html import render_bench_html, write_html

        write_html(render_bench_html(report, status), args.html)
