"""`cgo-audit baseline`: write a baseline that accepts the leaks of a run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cgo_audit.commands.common import EXIT_CLEAN, make_console
from cgo_audit.errors import AuditError

HELP = "write a baseline that accepts the leaks of a run"
DESCRIPTION = ("Read the JSON report of a run (cgo-audit bench --json) and write a "
               "baseline accepting its leaks: verdicts, C bytes/op and sites.")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report", type=Path, help="a JSON report from cgo-audit bench --json")
    parser.add_argument("-o", "--output", type=Path, default=Path("cgo-audit-baseline.json"))
    parser.add_argument("--reason", default="known leak, accepted when the baseline was written")


def run(args: argparse.Namespace) -> int:
    from cgo_audit.verdicts.baseline import baseline_from_report

    try:
        report = json.loads(args.report.read_text())
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read the report {args.report}: {exc}") from None
    if not isinstance(report, dict) or "results" not in report:
        raise AuditError(f"{args.report} is not a cgo-audit bench report (no \"results\")")
    baseline = baseline_from_report(report, args.reason)
    args.output.write_text(json.dumps(baseline, indent=2) + "\n")
    make_console().print(f"wrote {args.output}: {len(baseline['accepted'])} accepted leak(s)")
    return EXIT_CLEAN
