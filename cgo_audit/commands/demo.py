"""`cgo-audit demo`: the field guide's leak, end to end, as an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

from cgo_audit.commands.common import EXIT_CLEAN, byte_size, make_console, positive_count, positive_seconds

HELP = "the field guide's leak, end to end, as an HTML report"
DESCRIPTION = ("Run the bundled leaky get_value service under a memory limit until it "
               "is killed and restarted again and again, then the fixed one under the same load, "
               "and write both side by side in one HTML report.")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--html", type=Path, default=Path("cgo-audit-demo.html"), help="where to write the report")
    parser.add_argument("--kills", type=positive_count, default=3,
                        help="run the leaky service until the memory limit has killed it this many times (default 3); "
                             "the fixed one then takes as many requests")
    parser.add_argument("--max-seconds", type=positive_seconds, default=300.0,
                        help="give up on a service after this long (default 300)")
    parser.add_argument("--memory-limit", type=byte_size, default=128 << 20,
                        help="the leaky service is killed past this RSS (default 128MiB)")


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from cgo_audit.audits.demo import FIX, demo_intro, run_demo, terminal_lines
    from cgo_audit.report.html import render_programs_html, write_html

    console = make_console()
    console.print(f"running the leaky service until it has been killed {args.kills} time(s), "
                  "then the fixed one under as many requests ...")
    demo = run_demo(args.kills, args.memory_limit, args.max_seconds)
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
