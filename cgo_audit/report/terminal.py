"""The terminal report: one line per benchmark, in the columns `go test
-benchmem` users already read, then the evidence behind each verdict."""

from __future__ import annotations

import math
import textwrap
from typing import Iterable

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from cgo_audit.model import AuditReport, BenchResult, Findings, ProgramResult
from cgo_audit.units import format_bytes
from cgo_audit.verdicts import analysis
from cgo_audit.verdicts.analysis import C_ALLOCS, C_BYTES, FDS, GO_HEAP, GOROUTINES, RSS, Growth

VERDICT_STYLE = {analysis.CLEAN: "green", "error": "bold red", "skipped": "dim",
                 **{word: "bold yellow" for word in analysis.INCOMPLETE_VERDICTS}}
WIDTH = 80


def per_op_text(value: float, decimals: int = 2, significant: bool = False) -> str:
    """value at `decimals` places; with significant=True (a measured slope,
    not noise), a value too small for those places keeps two significant
    digits instead of reading as 0: 16 bytes every 1000 calls is 0.016, not 0.02."""
    text = f"{value:.{decimals}f}"
    if significant and value != 0 and abs(value) < 10 ** -decimals * 10:
        places = min(-math.floor(math.log10(abs(value))) + 1, 12)
        if places > decimals:
            return f"{value:.{places}f}".rstrip("0")
    return "0" if text.strip("-0.") == "" else text


def figure(result: Findings, key: str, decimals: int) -> str:
    """A per-op figure; '~' marks one that is not a steady slope (noise,
    a plateau's tail, too few runs): read it as roughly zero growth."""
    growth = result.growth.get(key)
    if growth is None:
        return "-"
    text = per_op_text(growth.per_op, decimals, significant=growth.shape == analysis.LINEAR)
    steady = growth.shape in (analysis.LINEAR, analysis.FLAT) or text == "0"
    return text if steady else "~" + text


def columns(result: Findings) -> list[str]:
    return [
        f"{figure(result, C_BYTES.key, 2)} C-B/op",
        f"{figure(result, C_ALLOCS.key, 2)} C-allocs/op",
        f"{figure(result, GO_HEAP.key, 0)} Go-B/op",
        f"{figure(result, RSS.key, 0)} RSS-B/op",
    ]


def verdict_text(result: Findings) -> str:
    verdict = result.verdict
    style = VERDICT_STYLE.get(verdict, "bold red" if result.is_new_leak else "yellow")
    text = ",".join(result.verdicts.all) if verdict not in ("error", "skipped") else verdict
    if result.accepted_by_baseline:
        text += " (baseline)"
    elif result.within_threshold:
        text += " (under threshold)"
    return f"[{style}]{escape(text)}[/]"


def limit_words(growth: Growth | None, per: str = "op") -> str:
    """" until it hit the open-file limit (256) after 12 s", or ""."""
    if growth is None or growth.limit_name is None:
        return ""
    if growth.limit_reached_s is not None:
        when = f" after {growth.limit_reached_s:.0f} s"
    elif growth.limit_reached_at is not None:
        when = f" at {growth.limit_reached_at:.0f} {per}s"
    else:
        when = ""
    return f" until it hit {growth.limit_name}{when}"


def _listed(names: list[str]) -> str:
    """"a, b and c"."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names) or "nothing else"


def _shape_words(growth: Growth, points: str = "runs") -> str:
    count = len(growth.segment_per_op) + 1
    return f"{growth.shape} over {count} {points}, r\u00b2 {growth.r2:.3f}"


def evidence(result: Findings) -> list[str]:
    """Sentences that say why the verdict is what it is."""
    lines: list[str] = []
    growth = result.growth
    go_heap = growth.get(GO_HEAP.key)
    go_flat = go_heap is not None and go_heap.shape in (analysis.FLAT, analysis.PLATEAU)
    verdicts = result.verdicts.all
    if analysis.CGO_LEAK in verdicts:
        c = growth.get(C_BYTES.key)
        allocs = result.per_op(C_ALLOCS.key)
        points = "checkpoints" if hasattr(result, "samples") else "runs"
        line = (f"C heap grows {per_op_text(result.per_op(C_BYTES.key), significant=True)} B/op in "
                f"{per_op_text(allocs, significant=True)} allocs/op ({_shape_words(c, points)})"
                if c else "C heap grows")
        line += limit_words(c if c and c.leaking else growth.get(C_ALLOCS.key))
        if go_flat and go_heap is not None:
            line += (f"; the Go heap stays flat ({per_op_text(go_heap.per_op, 0)} B/op): "
                     "go tool pprof cannot see this leak")
        lines.append(line + ".")
    if analysis.FD_LEAK in verdicts:
        fds = growth.get(FDS.key)
        if fds is not None and fds.shape == analysis.AT_LIMIT:
            lines.append(f"open file descriptors grew {fds.per_op:.1f} fd/op{limit_words(fds)}: exhausted, "
                         "not bounded; a file, connection or response body is never closed.")
        else:
            lines.append(f"open file descriptors grow {per_op_text(result.per_op(FDS.key))}/op: a file, "
                         "connection or response body is never closed.")
    if analysis.THREAD_LEAK in verdicts:
        threads = growth.get(analysis.THREADS.key)
        verb = "grew" if threads is not None and threads.shape == analysis.AT_LIMIT else "grow"
        lines.append(f"threads {verb} {per_op_text(result.per_op(analysis.THREADS.key))}/op{limit_words(threads)}: "
                     "threads blocked in C calls, or locked to goroutines that never end.")
    if analysis.GOROUTINE_LEAK in verdicts:
        lines.append(f"goroutines grow {per_op_text(result.per_op(GOROUTINES.key))}/op: goroutines "
                     "block forever instead of ending (see /debug/pprof/goroutine?debug=1).")
    if analysis.GO_HEAP_LEAK in verdicts:
        lines.append(f"the Go heap grows {format_bytes(result.per_op(GO_HEAP.key))}/op after a forced GC"
                     f"{limit_words(growth.get(GO_HEAP.key))}: "
                     "something keeps references (go tool pprof -inuse_space shows where).")
    if analysis.RSS_UNEXPLAINED in verdicts:
        # Only what was measured can be called flat (a static binary's C heap may not be).
        others = ((C_BYTES.key, "the C heap"), (GO_HEAP.key, "Go heap"), (GOROUTINES.key, "goroutines"),
                  (FDS.key, "fds"))
        flat = [name for key, name in others if key in growth]
        unmeasured = [name for key, name in others if key not in growth]
        line = (f"RSS grows {format_bytes(result.per_op(RSS.key))}/op{limit_words(growth.get(RSS.key))} "
                f"while {_listed(flat)} stay flat")
        if unmeasured:
            line += f" ({_listed(unmeasured)} {'was' if len(unmeasured) == 1 else 'were'} not measured)"
        lines.append(line + ": likely allocator fragmentation, mmap'd memory or thread stacks.")
    c_peak = growth.get(analysis.C_PEAK.key)
    c_live = growth.get(C_BYTES.key)
    if (c_peak is not None and c_peak.leaking and c_live is not None and not c_live.leaking):
        lines.append(f"the C heap's peak grows {format_bytes(c_peak.per_op)}/op while nothing stays live: "
                     "memory freed late (by finalizers after a GC, or at the end), not leaked.")
    for key, metric_growth in growth.items():
        if metric_growth.shape == analysis.PLATEAU and key not in (RSS.key, analysis.C_PEAK.key,
                                                                   analysis.GO_MAPPED.key):
            label = next(m.label for m in analysis.METRICS if m.key == key)
            total = format_bytes(metric_growth.total) if key.endswith("bytes") else f"{metric_growth.total:.0f}"
            lines.append(f"{label} grew to a plateau ({total} in all), then stayed flat: bounded, not a leak.")
    if result.skipped is not None:
        said = f' ("{result.skipped}")' if result.skipped else ""
        lines.append(f"skipped itself{said}: nothing of it ran, so nothing was measured.")
    if result.error:
        lines.append(f"error: {result.error}")
        run_points = getattr(result, "points", None)
        last = run_points[-1] if run_points else None
        if last is not None and last.record is not None and last.record.final_c_heap is not None:
            cheap = last.record.final_c_heap
            lines.append(f"counters gathered before it ended: C heap {format_bytes(cheap.user_live_bytes)} "
                         f"live in {cheap.user_live_allocs} allocs.")
    lines.extend(result.notes)
    return lines


TOP_SITES = 5


def site_lines(result: Findings) -> list[str]:
    """The top leak sites: Go line, C call, and what each leaves per op."""
    if not result.sites:
        return []
    estimate = "~" if result.sample_period_bytes else ""
    lines = ["leak sites (C heap left behind per op" +
             (", estimated from samples, ± a 95% interval" if estimate else "") + "):"]
    for site in result.sites[:TOP_SITES]:
        site_bytes = per_op_text(site.bytes_per_op, significant=True)
        site_allocs = per_op_text(site.allocs_per_op, significant=True)
        error = f" ±{per_op_text(site.error_bytes_per_op, significant=True)}" \
            if site.error_bytes_per_op is not None else ""
        figures = f"  {estimate}{site_bytes:>8}{error} B/op {site_allocs:>6} allocs/op"
        label = site.label()
        if len(figures) + len(label) + 6 <= WIDTH:
            lines.append(f"{figures}  {label}")
        else:  # the site under its figures, to stay within 80 columns
            lines.append(figures)
            lines.append(f"      {label}")
        if site.created_by:
            lines.append(f"      in a goroutine started at {site.created_by}")
    if len(result.sites) > TOP_SITES:
        lines.append(f"  ... and {len(result.sites) - TOP_SITES} more (see --json)")
    return lines


def print_wrapped(console: Console, line: str) -> None:
    wrapped = textwrap.wrap(line, width=WIDTH, initial_indent="    ", subsequent_indent="      ",
                            break_on_hyphens=False)
    console.print(escape("\n".join(wrapped)))


def render_program(result: ProgramResult, exit_status: int, console: Console | None = None,
                   command: str = "run") -> None:
    """The report of `cgo-audit run`: one line of figures per op (a request
    with --load, else a second), the evidence, and what was not measured."""
    console = console or Console(highlight=False)
    per = getattr(result, "per", "op")
    unit = {"request": "/req", "second": "/s"}.get(per, "/op")
    cells = "  ".join(col.replace("/op", unit) for col in columns(result))
    samples = getattr(result, "samples", [])
    seen = getattr(result, "samples_seen", 0) or len(samples)
    span = f"{seen} samples over {samples[-1].time_s:.0f}s" if samples else "no samples"
    if samples and samples[-1].ops:
        span += f", {samples[-1].ops} requests"
    console.print(f"{command}: {escape(getattr(result, 'name', ''))}  ({span})")
    console.print(f"{escape(cells)}  {verdict_text(result)}")
    for line in site_lines(result):
        console.print(escape("    " + line.replace("/op", unit)))
    for line in evidence(result):
        print_wrapped(console, line.replace("/op", unit))
    for line in getattr(result, "missing", []):
        print_wrapped(console, "not measured: " + line)
    status = {0: "[green]ok[/]", 1: "[bold red]FAIL[/]", 2: "[bold red]ERROR[/]"}.get(exit_status, "?")
    if exit_status == 2 and result.is_incomplete:
        status = "[bold yellow]INCOMPLETE[/]"
    console.print(f"{status}  cgo-audit {command}: {result.verdict} (exit {exit_status})")


def render(report: AuditReport, exit_status: int, console: Console | None = None,
           quiet: bool = False) -> None:
    console = console or Console(highlight=False)
    by_package: dict[str, list[BenchResult]] = {}
    for result in report.results:
        by_package.setdefault(result.package, []).append(result)
    for package, results in by_package.items():
        if not quiet:
            console.print(f"pkg: {escape(package)}")
        rows = [(r, columns(r)) for r in results]
        name_width = max(len(r.name) for r in results)
        widths = [max(len(cols[i]) for _, cols in rows) for i in range(4)]
        for result, cols in rows:
            if quiet and not result.is_new_leak and result.error is None:
                continue
            cells = "  ".join(col.rjust(width) for col, width in zip(cols, widths))
            verdict = verdict_text(result)
            plain_verdict = Text.from_markup(verdict).plain
            if name_width + len(cells) + len(plain_verdict) + 4 <= WIDTH:
                console.print(f"{escape(result.name.ljust(name_width))}  {escape(cells)}  {verdict}")
            else:
                # Too wide for 80 columns: the name on its own line, the figures under it.
                console.print(escape(result.name))
                console.print(f"  {escape(cells)}  {verdict}")
            if result.is_new_leak or result.error or not quiet:
                for line in site_lines(result):
                    console.print(escape("    " + line))
                for line in evidence(result):
                    print_wrapped(console, line)
    if not quiet:
        for line in skipped_packages(report):
            console.print(escape("\n".join(textwrap.wrap(line, width=WIDTH, subsequent_indent="    ",
                                                              break_on_hyphens=False))))
    print_summary(console, summary(report.results, exit_status))


def print_summary(console: Console, line: str) -> None:
    """The summary line, wrapped at its commas to fit 80 columns."""
    status, _, rest = line.partition("  ")
    width = WIDTH - len(Text.from_markup(status).plain) - 2
    wrapped = textwrap.wrap(rest, width=width, break_on_hyphens=False, break_long_words=False)
    console.print(status + "  " + escape(("\n" + " " * (WIDTH - width)).join(wrapped)))


SKIP_REASONS = {"no-tests": "without tests", "no-benchmarks": "without benchmarks",
                "no-cgo": "without cgo (statically linked: LD_PRELOAD cannot reach them)",
                "build-failed": "that do not build"}


def skipped_packages(report: AuditReport) -> list[str]:
    """One line per reason a package was not audited."""
    by_status: dict[str, list[str]] = {}
    for outcome in report.packages:
        if outcome.status != "audited":
            by_status.setdefault(outcome.status, []).append(outcome.import_path)
    lines = []
    for status, paths in by_status.items():
        names = ", ".join(paths[:4]) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")
        lines.append(f"not audited: {len(paths)} package(s) {SKIP_REASONS.get(status, status)}: {names}")
        if status == "build-failed":
            lines.extend(f"    {o.import_path}: {o.detail}" for o in report.packages if o.status == status)
    return lines


def summary(results: Iterable[Findings], exit_status: int, noun: str = "benchmark") -> str:
    results = list(results)
    new = [r for r in results if r.is_new_leak]
    accepted = [r for r in results if r.is_leak and r.accepted_by_baseline]
    tolerated = [r for r in results if r.is_leak and not r.accepted_by_baseline and r.within_threshold]
    errors = [r for r in results if r.error]
    incomplete = [r for r in results if r.is_incomplete]
    skipped = [r for r in results if r.skipped is not None and not r.error]
    status = {0: "[green]ok[/]", 1: "[bold red]FAIL[/]", 2: "[bold red]ERROR[/]"}.get(exit_status, "?")
    parts = [f"{len(results)} {noun}(s)", f"{len(new)} new leak(s)"]
    if accepted:
        parts.append(f"{len(accepted)} accepted by the baseline")
    if tolerated:
        parts.append(f"{len(tolerated)} under the threshold")
    if errors:
        parts.append(f"{len(errors)} could not be audited")
    if incomplete:
        parts.append(f"{len(incomplete)} incomplete (inconclusive, undecided or not measured)")
    if skipped:
        parts.append(f"{len(skipped)} skipped themselves")
    return f"{status}  cgo-audit: " + ", ".join(parts) + f" (exit {exit_status})"
