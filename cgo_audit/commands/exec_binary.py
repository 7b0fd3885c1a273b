"""`cgo-audit exec`: for go test -exec, run a test binary under the shim and audit it."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from cgo_audit.commands.common import add_policy_options, exit_status, make_console, size_list

HELP = "for go test -exec: run a test binary under the shim and audit it"
DESCRIPTION = ("go test -exec 'cgo-audit exec' ./... runs each package's test binary "
               "as asked (output and status pass through), then audits it: every benchmark when "
               "-bench is given, else every test at several -test.count values. A new leak fails "
               "the package.")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("binary", type=Path)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    parser.add_argument("--sizes", type=size_list, help="fixed sizes (default: adaptive for benchmarks, "
                        "1,2,4,8 runs for tests)")
    add_policy_options(parser)


def run(args: argparse.Namespace) -> int:
    from cgo_audit.audits.bench import NoProgress
    from cgo_audit.audits.exec import audit_exec
    from cgo_audit.measure.targets import BenchSettings
    from cgo_audit.report.terminal import render
    from cgo_audit.verdicts.baseline import apply_policy, load_baseline

    accepted = load_baseline(args.baseline) if args.baseline else []
    settings = BenchSettings(sizes=args.sizes, jobs=os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="cgo-audit-exec-") as work:
        test_status, report = audit_exec(args.binary.resolve(), args.args, settings, NoProgress(), Path(work))
    if report is None:
        return test_status
    apply_policy(report.results, accepted, args.max_leak_bytes_per_op)
    status = exit_status(report.results)
    render(report, status, make_console())
    return test_status or status
