"""The `cgo-audit` command line.

Exit status: 0 no leak (or only leaks the baseline accepts), 1 a new leak,
2 the audit could not run (bad input, a build failure, a target that
crashed or hung). Errors are one line, never a traceback (--debug shows it)."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape

from cgo_audit import __version__, merge
from cgo_audit.errors import AuditError

EXIT_CLEAN, EXIT_LEAK, EXIT_ERROR = 0, 1, 2


def exit_status(results: Sequence[object]) -> int:
    """1 when a leak is neither accepted by the baseline nor under the
    threshold, else 2 when a benchmark could not be audited, else 0."""
    if any(r.is_new_leak for r in results):  # type: ignore[attr-defined]
        return EXIT_LEAK
    if any(r.error for r in results):  # type: ignore[attr-defined]
        return EXIT_ERROR
    return EXIT_CLEAN


def _sizes(text: str) -> list[int]:
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


def _add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="audit a package's benchmarks for leaks",
                           description="Build each package's test binary, run every benchmark at several "
                           "sizes under the shim, and report growth per operation.")
    bench.add_argument("patterns", nargs="*", help="package patterns (default: ./... of every module below --dir)")
    bench.add_argument("--dir", type=Path, default=Path("."), help="directory to run go in (a module)")
    bench.add_argument("--bench", default=".", help="only benchmarks whose name matches this regex")
    bench.add_argument("--sizes", type=_sizes, help="fixed -test.benchtime=Nx values, e.g. 1000,2000,4000")
    bench.add_argument("--run-seconds", type=float, default=0.4,
                       help="target length of the largest run (default 0.4)")
    bench.add_argument("--timeout", type=float, default=120.0, help="seconds before a run is killed")
    bench.add_argument("--tags", default="", help="build tags, comma-separated")
    bench.add_argument("--go-flags", default="", help="extra flags for go test -c, split like a shell would: \"-ldflags='-s -w'\"")
    bench.add_argument("--no-probe", action="store_true",
                       help="do not add the probe file; take figures at process exit")
    bench.add_argument("--stacks", choices=("all", "sampled", "off"), default="all",
                       help="allocation stacks for leak sites: every allocation (default), sampled, or off")
    bench.add_argument("--sample-bytes", type=int, default=512 * 1024,
                       help="with --stacks sampled: mean bytes between samples (default 512 KiB, like Go)")
    bench.add_argument("--baseline", type=Path, help="JSON file of accepted known leaks")
    bench.add_argument("--max-leak-bytes-per-op", type=float, metavar="BYTES",
                       help="tolerate byte leaks (C heap, Go heap, RSS) up to this per op (default: none)")
    bench.add_argument("--junit", type=Path, help="write a JUnit XML report here (a test case per benchmark)")
    bench.add_argument("--json", type=Path, help="write the JSON report here")
    bench.add_argument("--pprof", type=Path, help="write the C-heap leak as a gzipped pprof profile here")
    bench.add_argument("--html", type=Path, help="write a self-contained HTML report with charts here")
    bench.add_argument("--quiet", action="store_true", help="only leaks, errors and the summary")
    bench.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                       help="benchmarks run side by side (default: the number of CPUs)")
    bench.add_argument("--no-tests", action="store_true",
                       help="do not fall back to tests in packages without benchmarks")
    bench.add_argument("--shard", metavar="I/N",
                       help="audit only the I-th of N shares of the packages (CI machines; see cgo-audit merge)")
    bench.add_argument("--shard-durations", type=Path, metavar="REPORT",
                       help="a JSON report of an earlier run: balance the shards by its per-package durations")


def run_bench(args: argparse.Namespace, console: Console) -> int:
    from cgo_audit.baseline import apply_policy, load_baseline
    from cgo_audit.benchaudit import audit_benchmarks
    from cgo_audit.targets import BenchSettings
    from cgo_audit.report.json_report import write_json
    from cgo_audit.report.terminal import render

    from cgo_audit.shards import durations_from_report, parse_shard

    accepted = load_baseline(args.baseline) if args.baseline else []
    if args.shard_durations and not args.shard:
        raise AuditError("--shard-durations balances shards: give --shard I/N too")
    settings = BenchSettings(
        shard=parse_shard(args.shard) if args.shard else None,
        shard_durations=durations_from_report(args.shard_durations) if args.shard_durations else {},
        patterns=args.patterns or ["./..."], nested_modules=not args.patterns, jobs=max(1, args.jobs),
        tests_when_no_benchmarks=not args.no_tests,
        directory=args.dir.resolve(), bench_regex=args.bench, sizes=args.sizes,
        run_seconds=args.run_seconds, run_timeout_s=args.timeout,
        tags=[t for t in args.tags.split(",") if t], go_flags=shlex.split(args.go_flags),
        probe=not args.no_probe, stacks=args.stacks, sample_bytes=args.sample_bytes)
    if console.is_terminal and not args.quiet:
        from cgo_audit.report.progress import BarProgress

        with BarProgress(console) as bar:
            report = audit_benchmarks(settings, progress=bar)
    else:
        report = audit_benchmarks(settings)
    apply_policy(report.results, accepted, args.max_leak_bytes_per_op)
    status = exit_status(report.results)
    render(report, status, console, quiet=args.quiet)
    if args.json:
        write_json(report, status, args.json)
    if args.junit:
        from cgo_audit.report.junit import write_junit

        write_junit(report, args.junit)
    if args.html:
        from cgo_audit.report.html import render_bench_html, write_html

        write_html(render_bench_html(report, status), args.html)
    if args.pprof:
        from cgo_audit.report.pprof import write_pprof

        samples = write_pprof(report, args.pprof)
        if not args.quiet:
            console.print(f"pprof: {samples} leaking stack(s) in {args.pprof} (go tool pprof -top {args.pprof})")
    return status


SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000 ** 2,
              "mib": 1 << 20, "g": 1 << 30, "gb": 1000 ** 3, "gib": 1 << 30}


def byte_size(text: str) -> int:
    """'256MiB', '1G', '500000' -> bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if match is None or match.group(2).lower() not in SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256MiB)")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run any program under the shim and watch it for leaks",
                         description="Start CMD under the shim (a server while a load generator hits it), "
                         "sample its C heap, RSS, fds and threads, and its goroutines and Go heap through "
                         "net/http/pprof, then give verdicts from the trends.")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS")
    run.add_argument("--duration", type=float, default=30.0,
                     help="seconds to watch before stopping it with SIGINT (0: until it exits)")
    run.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    run.add_argument("--warmup", type=float, default=0.0, help="seconds left out of the trends at the start")
    run.add_argument("--pprof", dest="pprof_url", help="the program's pprof address, e.g. http://127.0.0.1:6060")
    run.add_argument("--load", action="append", default=[], metavar="URL",
                     help="keep GET requests going against URL (repeatable); figures become per request")
    run.add_argument("--concurrency", type=int, default=2, help="--load connections (default 2)")
    run.add_argument("--memory-limit", type=byte_size, help="kill it when RSS passes this, like the OOM killer")
    run.add_argument("--restarts", type=int, default=0,
                     help="start it again up to this many times when it dies (the OOM-kill sawtooth)")
    run.add_argument("--stacks", choices=("all", "sampled", "off"), default="sampled",
                     help="allocation stacks for leak sites (default sampled)")
    run.add_argument("--cwd", type=Path, default=Path("."), help="directory to start CMD in")
    run.add_argument("--json", type=Path, help="write the JSON report here")
    run.add_argument("--html", type=Path, help="write a self-contained HTML report with charts here")
    run.add_argument("--quiet", action="store_true", help="no live progress")
    add_metrics_argument(run)


def add_metrics_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-addr", metavar="HOST:PORT",
                        help="serve the figures, slopes and verdict for Prometheus at http://HOST:PORT/metrics")


def run_program(args: argparse.Namespace, console: Console) -> int:
    from cgo_audit.metrics import LiveFigures, serve_metrics
    from cgo_audit.runaudit import RunSettings, audit_program

    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise AuditError("run needs a command: cgo-audit run [options] -- CMD ARGS")
    settings = RunSettings(argv=command, cwd=args.cwd, duration_s=args.duration or None,
                           interval_s=args.interval, pprof_url=args.pprof_url, load_urls=args.load,
                           load_concurrency=args.concurrency, memory_limit_bytes=args.memory_limit,
                           restarts=args.restarts,
                           stacks=args.stacks, warmup_s=args.warmup)
    live = console.is_terminal and not args.quiet

    figures = LiveFigures(command, "request" if args.load else "second", args.memory_limit, args.warmup)

    def progress(sample: object) -> None:
        figures.add(sample)  # type: ignore[arg-type]
        if live:
            s = sample  # ProgramSample
            c = f"C {s.c_bytes} B" if s.c_bytes is not None else "C -"  # type: ignore[attr-defined]
            console.print(f"[dim]  {s.time_s:5.0f}s  {c}  RSS {s.rss_bytes >> 10} KiB  fds {s.fds}  "  # type: ignore[attr-defined]
                          f"threads {s.threads}[/]".ljust(79), end="\r")  # type: ignore[attr-defined]

    with serve_metrics(args.metrics_addr, figures) as url:
        if url:
            console.print(f"metrics: {url}")
        result = audit_program(settings, progress)
    if live:
        console.print(" " * 79, end="\r")
    return report_program(result, "run", args, console)


def report_program(result: Any, command: str, args: argparse.Namespace, console: Console) -> int:
    """The terminal report of a run or watch, and the files asked for; the exit status."""
    from cgo_audit.report.json_report import write_program_json
    from cgo_audit.report.terminal import render_program

    status = EXIT_LEAK if result.is_leak else EXIT_CLEAN
    render_program(result, status, console, command=command)
    if args.json:
        write_program_json(result, status, args.json)
    if args.html:
        from cgo_audit.report.html import render_programs_html, write_html

        page = render_programs_html([result], f"cgo-audit {command}: {result.name}", exit_status=status)
        write_html(page, args.html)
    return status


def _add_demo(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="the field guide's leak, end to end, as an HTML report",
                          description="Run the bundled leaky get_value service under a memory limit until it "
                          "is killed and restarted again and again, then the fixed one under the same load, "
                          "and write both side by side in one HTML report.")
    demo.add_argument("--html", type=Path, default=Path("cgo-audit-demo.html"), help="where to write the report")
    demo.add_argument("--seconds", type=float, default=20.0, help="how long each service runs (default 20)")
    demo.add_argument("--memory-limit", type=byte_size, default=128 << 20,
                      help="the leaky service is killed past this RSS (default 128MiB)")


def run_demo_command(args: argparse.Namespace, console: Console) -> int:
    from cgo_audit.demo import FIX, demo_intro, run_demo, terminal_lines
    from cgo_audit.report.html import render_programs_html, write_html

    console.print(f"running the leaky service for {args.seconds:g}s, then the fixed one ...")
    demo = run_demo(args.seconds, args.memory_limit)
    fix_text = "\n".join(f"leaks: {site.label()}" for site in demo.leaky.sites[:2]) + "\n\nthe fix:\n" + FIX
    page = render_programs_html(
        [demo.leaky, demo.fixed], "The field guide's leak, end to end", demo_intro(demo, args.memory_limit),
        sections=[("What go tool pprof -top says about the leaky service's heap", demo.pprof_top or "(no answer)"),
                  ("The line that leaks, and the fix", fix_text)])
    write_html(page, args.html)
    for line in terminal_lines(demo):
        console.print(escape(line))
    console.print(f"report: {args.html}")
    return EXIT_CLEAN


def _add_watch(sub: argparse._SubParsersAction) -> None:
    watch = sub.add_parser("watch", help="watch a running process for leaks",
                           description="Sample a running process (RSS, fds, threads; its C heap if it was "
                           "started under the shim; goroutines and Go heap through --pprof) with a live view, "
                           "then give verdicts from the trends. Ctrl-C ends it.")
    watch.add_argument("pid", type=int)
    watch.add_argument("--pprof", dest="pprof_url", help="its pprof address, e.g. http://127.0.0.1:6060")
    watch.add_argument("--duration", type=float, default=0.0, help="seconds to watch (0: until Ctrl-C)")
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    watch.add_argument("--json", type=Path, help="write the JSON report here")
    watch.add_argument("--html", type=Path, help="write a self-contained HTML report with charts here")
    watch.add_argument("--quiet", action="store_true", help="no live view")
    add_metrics_argument(watch)


def process_name(pid: int) -> str:
    import psutil

    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return str(pid)  # watch_process says what is wrong with it


def watch_program(args: argparse.Namespace, console: Console) -> int:
    from rich.live import Live

    from cgo_audit.metrics import LiveFigures, serve_metrics
    from cgo_audit.watch import WatchSettings, live_table, watch_process

    settings = WatchSettings(pid=args.pid, duration_s=args.duration or None, interval_s=args.interval,
                             pprof_url=args.pprof_url)
    figures = LiveFigures([process_name(args.pid)], "second")

    def update(samples: Sequence[Any], _missing: Sequence[str]) -> None:
        figures.add(samples[-1])
        if live is not None:
            live.update(live_table(samples))

    live = None
    with serve_metrics(args.metrics_addr, figures) as url:
        if url:
            console.print(f"metrics: {url}")
        if console.is_terminal and not args.quiet:
            with Live(console=console, refresh_per_second=4, transient=True) as live:
                result = watch_process(settings, update)
        else:
            result = watch_process(settings, update)
    return report_program(result, "watch", args, console)


def _add_baseline(sub: argparse._SubParsersAction) -> None:
    baseline = sub.add_parser("baseline", help="write a baseline that accepts the leaks of a run",
                              description="Read the JSON report of a run (cgo-audit bench --json) and write a "
                              "baseline accepting its leaks: verdicts, C bytes/op and sites.")
    baseline.add_argument("report", type=Path, help="a JSON report from cgo-audit bench --json")
    baseline.add_argument("-o", "--output", type=Path, default=Path("cgo-audit-baseline.json"))
    baseline.add_argument("--reason", default="known leak, accepted when the baseline was written")


def write_baseline(args: argparse.Namespace, console: Console) -> int:
    import json

    from cgo_audit.baseline import baseline_from_report

    try:
        report = json.loads(args.report.read_text())
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read the report {args.report}: {exc}") from None
    if not isinstance(report, dict) or "results" not in report:
        raise AuditError(f"{args.report} is not a cgo-audit bench report (no \"results\")")
    baseline = baseline_from_report(report, args.reason)
    args.output.write_text(json.dumps(baseline, indent=2) + "\n")
    console.print(f"wrote {args.output}: {len(baseline['accepted'])} accepted leak(s)")
    return EXIT_CLEAN


def _add_exec(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("exec", help="for go test -exec: run a test binary under the shim and audit it",
                         description="go test -exec 'cgo-audit exec' ./... runs each package's test binary "
                         "as asked (output and status pass through), then audits it: every benchmark when "
                         "-bench is given, else every test at several -test.count values. A new leak fails "
                         "the package.")
    run.add_argument("binary", type=Path)
    run.add_argument("args", nargs=argparse.REMAINDER)
    run.add_argument("--sizes", type=_sizes, help="fixed sizes (default: adaptive for benchmarks, "
                     "1,2,4,8 runs for tests)")
    run.add_argument("--baseline", type=Path, help="JSON file of accepted known leaks")
    run.add_argument("--max-leak-bytes-per-op", type=float, metavar="BYTES")


def exec_binary(args: argparse.Namespace, console: Console) -> int:
    from cgo_audit.baseline import apply_policy, load_baseline
    from cgo_audit.benchaudit import NoProgress
    from cgo_audit.execaudit import audit_exec
    from cgo_audit.report.terminal import render
    from cgo_audit.targets import BenchSettings

    accepted = load_baseline(args.baseline) if args.baseline else []
    settings = BenchSettings(sizes=args.sizes, jobs=os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="cgo-audit-exec-") as work:
        test_status, report = audit_exec(args.binary.resolve(), args.args, settings, NoProgress(), Path(work))
    if report is None:
        return test_status
    apply_policy(report.results, accepted, args.max_leak_bytes_per_op)
    status = exit_status(report.results)
    render(report, status, console)
    return test_status or status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cgo-audit", description="Find C-heap leaks in Go programs "
                                     "that use cgo, where go tool pprof cannot look.")
    parser.add_argument("--version", action="version", version=f"cgo-audit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_bench(sub)
    _add_run(sub)
    _add_watch(sub)
    _add_baseline(sub)
    _add_exec(sub)
    _add_demo(sub)
    merge.prepare_parser(sub.add_parser("merge", help="join the JSON reports of bench --shard into one verdict"))
    shim = sub.add_parser("build-shim", help="build the LD_PRELOAD shim and print its path")
    shim.add_argument("--output", type=Path, help="also copy the library here")
    return parser


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    if args.command in ("run", "watch"):
        # A container being stopped (SIGTERM) ends an audit like Ctrl-C: the
        # target is stopped too, never left running without its auditor.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "bench":
            return run_bench(args, console)
        if args.command == "run":
            return run_program(args, console)
        if args.command == "watch":
            return watch_program(args, console)
        if args.command == "baseline":
            return write_baseline(args, console)
        if args.command == "exec":
            return exec_binary(args, console)
        if args.command == "demo":
            return run_demo_command(args, console)
        if args.command == "merge":
            return merge.run(args)
        if args.command == "build-shim":
            from cgo_audit.shimbuild import build_shim
            path = build_shim()
            if args.output:
                args.output.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, args.output)
                path = args.output
            print(path)
            return EXIT_CLEAN
        parser.error(f"unknown command {args.command}")
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
    return EXIT_ERROR
