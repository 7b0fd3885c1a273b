"""`cgo-audit bench`: audit a package's benchmarks for leaks."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from cgo_audit.commands.common import (
    add_output_options,
    add_policy_options,
    exit_status,
    make_console,
    positive_count,
    positive_seconds,
    pprof_file,
    size_list,
    write_bench_reports,
)
from cgo_audit.errors import AuditError

HELP = "audit a package's benchmarks for leaks"
DESCRIPTION = ("Build each package's test binary, run every benchmark at several "
               "sizes under the shim, and report growth per operation.")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("patterns", nargs="*", help="package patterns (default: ./... of every module below --dir)")
    parser.add_argument("--dir", type=Path, default=Path("."), help="directory to run go in (a module)")
    parser.add_argument("--bench", default=".", help="only benchmarks whose name matches this regex")
    parser.add_argument("--sizes", type=size_list, help="fixed -test.benchtime=Nx values, e.g. 1000,2000,4000")
    parser.add_argument("--run-seconds", type=positive_seconds, default=0.4,
                        help="target length of the largest run (default 0.4)")
    parser.add_argument("--timeout", type=positive_seconds, default=120.0, help="seconds before a run is killed")
    parser.add_argument("--tags", default="", help="build tags, comma-separated")
    parser.add_argument("--go-flags", default="",
                        help="extra flags for go test -c, split like a shell would: \"-ldflags='-s -w'\"")
    parser.add_argument("--no-probe", action="store_true",
                        help="do not add the probe file; take figures at process exit")
    parser.add_argument("--stacks", choices=("all", "sampled", "off"), default="all",
                        help="allocation stacks for leak sites: every allocation (default), sampled, or off")
    parser.add_argument("--sample-bytes", type=positive_count, default=512 * 1024,
                        help="with --stacks sampled: mean bytes between samples (default 512 KiB, like Go)")
    parser.add_argument("--goarch", help="build for this GOARCH (arm64) with its C cross-compiler, and run "
                        "under qemu-user when the host is not one (see docs/platforms.md)")
    add_policy_options(parser)
    add_output_options(parser, quiet_help="only leaks, errors and the summary", junit=True)
    parser.add_argument("--pprof", type=pprof_file, metavar="FILE",
                        help="write the C-heap leak as a gzipped pprof profile here")
    parser.add_argument("-j", "--jobs", type=positive_count, default=os.cpu_count() or 1,
                        help="benchmarks run side by side (default: the number of CPUs)")
    parser.add_argument("--no-tests", action="store_true",
                        help="do not fall back to tests in packages without benchmarks")
    parser.add_argument("--shard", metavar="I/N",
                        help="audit only the I-th of N shares of the packages (CI machines; see cgo-audit merge)")
    parser.add_argument("--shard-durations", type=Path, metavar="REPORT",
                        help="a JSON report of an earlier run: balance the shards by its per-package durations")


def run(args: argparse.Namespace) -> int:
    from cgo_audit.audits.bench import audit_benchmarks
    from cgo_audit.measure.shards import durations_from_report, parse_shard
    from cgo_audit.measure.targets import BenchSettings
    from cgo_audit.report.terminal import render
    from cgo_audit.verdicts.baseline import apply_policy, load_baseline

    console = make_console()
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
        probe=not args.no_probe, stacks=args.stacks, sample_bytes=args.sample_bytes, goarch=args.goarch)
    if console.is_terminal and not args.quiet:
        from cgo_audit.report.progress import BarProgress

        with BarProgress(console) as bar:
            report = audit_benchmarks(settings, progress=bar)
    else:
        report = audit_benchmarks(settings)
    apply_policy(report.results, accepted, args.max_leak_bytes_per_op)
    status = exit_status(report.results)
    render(report, status, console, quiet=args.quiet)
    write_bench_reports(report, status, args)
    if args.pprof:
        from cgo_audit.report.pprof import write_pprof

        samples = write_pprof(report, args.pprof)
        if not args.quiet:
            console.print(f"pprof: {samples} leaking stack(s) in {args.pprof} (go tool pprof -top {args.pprof})")
    return status
