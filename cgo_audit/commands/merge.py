"""`cgo-audit merge`: join the JSON reports of `bench --shard I/N` into one
report and one exit status."""

from __future__ import annotations

import argparse
from pathlib import Path

from cgo_audit.commands.common import add_output_options, exit_status, make_console, write_bench_reports
from cgo_audit.errors import AuditError

HELP = "join the JSON reports of bench --shard into one verdict"
DESCRIPTION = ("Join the JSON reports of `cgo-audit bench --shard I/N --json` (one per CI machine) "
               "into one report and one exit status: 1 for a new leak, else 2 if anything could not "
               "be audited (including a missing shard), else 0.")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports of the shards")
    add_output_options(parser, quiet_help="only leaks, errors and the summary", junit=True)


def run(args: argparse.Namespace) -> int:
    from cgo_audit.audits.merge import merge_reports
    from cgo_audit.report.json_load import load_report
    from cgo_audit.report.terminal import render

    console = make_console()
    report = merge_reports([(path, load_report(path)[0]) for path in args.reports])
    if not report.results:
        raise AuditError("nothing was audited in any of the reports")
    status = exit_status(report.results)
    render(report, status, console, quiet=args.quiet)
    write_bench_reports(report, status, args)
    return status
