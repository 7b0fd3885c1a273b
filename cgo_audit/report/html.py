"""The HTML report: one self-contained page of bench or run/watch results, charts inline as SVG."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

from rich.text import Text

from cgo_audit import __version__
from cgo_audit.model import AuditReport, Findings, ProgramResult, comparable
from cgo_audit.report import terminal
from cgo_audit.report.charts import (
    CHARTED,
    Chart,
    ChartedMetric,
    ChartInliner,
    bench_chart,
    draw_chart,
    incarnations,
    program_chart,
    share_axes,
)
from cgo_audit.verdicts import analysis
from cgo_audit.verdicts.sites import Site

# --- Page -----------------------------------------------------------------

def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def plain(markup: str) -> str:
    """Terminal text without its rich markup."""
    return Text.from_markup(markup).plain


def verdict_badges(result: Findings, short: bool = False) -> str:
    """A badge per verdict: clean green, a new leak red, one the baseline
    accepts (or under --max-leak-bytes-per-op) amber, an error dark red,
    one that skipped itself grey."""
    if result.error:
        return '<span class="badge error">error</span>'
    if result.skipped is not None:
        return '<span class="badge skipped">skipped</span>'
    if result.is_incomplete:
        return "".join(f'<span class="badge incomplete">{_text(v)}</span>' for v in result.verdicts.all)
    if not result.is_leak:
        return '<span class="badge clean">clean</span>'
    kind = "leak" if result.is_new_leak else "accepted"
    badges = "".join(f'<span class="badge {kind}">{_text(v)}</span>' for v in result.verdicts.all)
    if result.accepted_by_baseline:
        badges += f'<span class="tolerated">{"(baseline)" if short else "accepted by the baseline"}</span>'
    elif result.within_threshold:
        badges += f'<span class="tolerated">{"(under threshold)" if short else "under the leak threshold"}</span>'
    return badges


# The terminal's columns, in its order and with its decimals.
TABLE_COLUMNS = ((analysis.C_BYTES, 2), (analysis.C_ALLOCS, 2), (analysis.GO_HEAP, 0), (analysis.RSS, 0))


def _figure_cells(result: Findings, unit: str) -> list[str]:
    return [_text(column.replace("/op", unit)) for column in terminal.columns(result)]


class Page:
    """Builds one report page; numbers charts so their SVG ids stay unique."""

    def __init__(self) -> None:
        self.inliner = ChartInliner()

    def chart(self, chart: Chart | None, charted: ChartedMetric, result: Findings, result_name: str,
              unit: str) -> str:
        growth = result.growth.get(charted.metric.key)
        per = f"{' B' if charted.is_bytes else ''}{unit}"   # "26.00 B/op", "1.00/op"
        slope = f"{terminal.figure(result, charted.metric.key, charted.decimals)}{per}" if growth else ""
        shape = f'<span class="shape shape-{_text(growth.shape)}">{_text(growth.shape)}</span>' if growth else ""
        caption = (f'<figcaption><b>{_text(charted.metric.label)}</b> '
                   f'<span class="slope">{_text(slope)}</span> {shape}</figcaption>')
        attributes = f'class="chart" data-result="{_text(result_name)}" data-metric="{charted.metric.key}"'
        if chart is None:
            return f'<figure {attributes} data-measured="no">{caption}<p class="not-measured">not measured</p></figure>'
        marks = f' data-restarts="{len(chart.restarts)}"' if chart.restarts else ""
        marks += ' data-killed="memory-limit"' if chart.killed_at is not None else ""
        return f"<figure {attributes}{marks}>{caption}{self.inliner.inline(draw_chart(chart))}</figure>"


def _evidence_list(result: Findings, unit: str) -> str:
    lines = [line.replace("/op", unit) for line in terminal.evidence(result)]
    if not lines:
        return ""
    return '<ul class="evidence">' + "".join(f"<li>{_text(line)}</li>" for line in lines) + "</ul>"


def _error(site: Site) -> str:
    if site.error_bytes_per_op is None:
        return ""
    return f" ±{_text(terminal.per_op_text(site.error_bytes_per_op))}"


def _sites_table(result: Findings, unit: str) -> str:
    if not result.sites:
        return ""
    estimate = "~" if result.sample_period_bytes else ""
    heading = "Leak sites: C heap left behind per " + ("op" if unit == "/op" else unit[1:])
    if estimate:
        heading += ", estimated from sampled stacks (± a 95% interval)"
    rows = []
    for site in result.sites[:terminal.TOP_SITES]:
        origin = f'<div class="origin">in a goroutine started at {_text(site.created_by)}</div>' \
            if site.created_by else ""
        stack = "".join(f"<li>{_text(frame)}</li>" for frame in site.stack)
        rows.append(
            f'<tr><td class="num">{estimate}{_text(terminal.per_op_text(site.bytes_per_op))}{_error(site)}</td>'
            f'<td class="num">{estimate}{_text(terminal.per_op_text(site.allocs_per_op))}</td>'
            f'<td><code>{_text(site.label())}</code>{origin}'
            f'<details><summary>stack ({len(site.stack)} frames, innermost first)</summary>'
            f"<ol class=\"stack\">{stack}</ol></details></td></tr>")
    more = len(result.sites) - terminal.TOP_SITES
    tail = f'<p class="more">... and {more} more (see --json)</p>' if more > 0 else ""
    return (f'<div class="sites"><h4>{_text(heading)}</h4><table><thead><tr><th class="num">B{_text(unit)}</th>'
            f'<th class="num">allocs{_text(unit)}</th><th>site</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f"{tail}</div>")


def _summary_table(rows: Sequence[tuple[str, str, Findings, str]]) -> str:
    """(anchor, name, result, per-op unit) rows: the results at a glance,
    figures as the terminal prints them ('~': not a steady slope)."""
    units = {unit for *_, unit in rows}
    common = units.pop() if len(units) == 1 else ""
    body = []
    for anchor, name, result, unit in rows:
        cells = "".join(f'<td class="num">{_text(terminal.figure(result, metric.key, decimals))}'
                        f"{'' if common else _text(unit)}</td>" for metric, decimals in TABLE_COLUMNS)
        body.append(f'<tr data-result="{_text(name)}"><td><a href="#{anchor}">{_text(name)}</a></td>'
                    f"<td>{verdict_badges(result, short=True)}</td>{cells}</tr>")
    heads = "".join(f'<th class="num">{_text(head + common)}</th>' for head in ("C-B", "C-allocs", "Go-B", "RSS-B"))
    return (f'<table class="overview"><thead><tr><th>result</th><th>verdict</th>{heads}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _counts(results: Sequence[Findings]) -> str:
    """Tiles of how many results came to what, counted as terminal.summary counts them."""
    tiles = [("results", len(results), ""),
             ("new leaks", sum(1 for r in results if r.is_new_leak), "leak"),
             ("accepted by the baseline", sum(1 for r in results if r.is_leak and r.accepted_by_baseline),
              "accepted"),
             ("under the threshold", sum(1 for r in results if r.is_leak and not r.accepted_by_baseline
                                         and r.within_threshold), "accepted"),
             ("errors", sum(1 for r in results if r.error), "error"),
             ("incomplete", sum(1 for r in results if r.is_incomplete), "incomplete"),
             ("skipped", sum(1 for r in results if r.skipped is not None and not r.error), ""),
             ("clean", sum(1 for r in results if not r.is_leak and not r.is_incomplete and not r.error
                           and r.skipped is None), "clean")]
    return '<div class="tiles">' + "".join(
        f'<div class="tile {kind if count else ""}"><span class="count">{count}</span>{label}</div>'
        for label, count, kind in tiles
        if count or label not in ("under the threshold", "skipped", "incomplete")) + "</div>"


def _status_line(text: str, exit_status: int | None) -> str:
    kind = {0: "clean", 1: "leak", 2: "error"}.get(exit_status, "") if exit_status is not None else ""
    return f'<p class="status {kind}">{_text(text)}</p>'


def render_bench_html(report: AuditReport, exit_status: int) -> str:
    """The page of a `cgo-audit bench` audit: summary, overview table, then
    each benchmark's charts against operations, evidence and leak sites."""
    page = Page()
    sections = []
    rows = []
    for index, result in enumerate(report.results):
        anchor = f"result-{index}"
        rows.append((anchor, result.name, result, "/op"))
        charts = "".join(page.chart(bench_chart(result, charted), charted, result, result.name, "/op")
                         for charted in CHARTED)
        runs = sorted(p.ops for p in comparable(result.points))
        span = f"{len(result.points)} runs, up to {runs[-1]:,} ops" if runs else f"{len(result.points)} runs"
        cells = " · ".join(_figure_cells(result, "/op"))
        sections.append(
            f'<section class="result" id="{anchor}" data-result="{_text(result.name)}" '
            f'data-verdict="{_text(result.verdict)}"><header><h3>{_text(result.name)}</h3>{verdict_badges(result)}'
            f'<div class="package">{_text(result.package)}</div></header>'
            f'<p class="figures">{cells} <span class="span">({_text(span)})</span></p>'
            f'<div class="charts bench">{charts}</div>{_evidence_list(result, "/op")}'
            f'{_sites_table(result, "/op")}</section>')
    skipped = terminal.skipped_packages(report)
    notes = ('<ul class="skipped">' + "".join(f"<li>{_text(line)}</li>" for line in skipped) + "</ul>"
             if skipped else "")
    settings = ", ".join(f"{k}={' '.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in report.settings.items() if v not in (None, [], ""))
    header = (_status_line(plain(terminal.summary(report.results, exit_status)), exit_status)
              + _counts(report.results) + notes
              + (f'<p class="settings">settings: {_text(settings)}</p>' if settings else "")
              + _summary_table(rows))
    intro = ("Growth per operation of each benchmark, measured at several run sizes. Dots are runs; "
             "a dashed line is the fitted slope where the growth is linear (a leak).")
    return _document("cgo-audit bench", intro, header, "".join(sections), page.inliner.stylesheet())


def _program_span(result: ProgramResult) -> str:
    samples = result.samples
    seen = getattr(result, "samples_seen", 0) or len(samples)
    span = f"{seen} samples over {samples[-1].time_s:.0f}s" if samples else "no samples"
    if samples and samples[-1].ops:
        span += f", {samples[-1].ops:,} requests"
    restarts = len(incarnations(samples)) - 1
    if restarts:
        span += f", {restarts} restart(s)"   # how each start ended is in the evidence
    elif result.record is not None:
        span += f"; it {result.record.exit_description()}"
    return span


def _program_card(result: ProgramResult, unit: str) -> str:
    missing = "".join(f'<li class="missing">not measured: {_text(line)}</li>' for line in result.missing)
    return (f'<header><h3><code>{_text(result.name)}</code></h3>{verdict_badges(result)}</header>'
            f'<p class="figures">{" · ".join(_figure_cells(result, unit))}</p>'
            f'<p class="span">{_text(_program_span(result))}; figures per {_text(result.per)}</p>'
            + (f'<ul class="missing">{missing}</ul>' if missing else ""))


def render_programs_html(results: Sequence[ProgramResult], title: str, intro: str = "",
                         exit_status: int | None = None,
                         sections: Sequence[tuple[str, str]] = ()) -> str:
    """The page of one or several `cgo-audit run`/`watch` results; several are
    laid side by side, each metric on the same scales, to compare a leaky
    service with its fix. sections: (heading, preformatted text) shown after
    them, such as what go tool pprof said, or the fix."""
    page = Page()
    units = [{"request": "/req", "second": "/s"}.get(r.per, "/op") for r in results]
    anchors = [f"result-{i}" for i in range(len(results))]
    charts_by_metric = [share_axes([program_chart(r, charted) for r in results]) for charted in CHARTED]
    columns = len(results)
    cells: list[str] = []

    def row(kind: str, contents: Sequence[str]) -> None:
        for index, content in enumerate(contents):
            result = results[index]
            cells.append(f'<div class="cell {kind}" data-result="{_text(result.name)}"'
                         + (f' id="{anchors[index]}" data-verdict="{_text(result.verdict)}"' if kind == "card" else "")
                         + f">{content}</div>")

    row("card", [_program_card(r, u) for r, u in zip(results, units)])
    if columns == 1:
        row("charts-cell", ['<div class="charts program">' + "".join(
            page.chart(charts[0], charted, results[0], results[0].name, units[0])
            for charted, charts in zip(CHARTED, charts_by_metric)) + "</div>"])
    else:
        for charted, charts in zip(CHARTED, charts_by_metric):
            row("chart-cell", [page.chart(chart, charted, r, r.name, u)
                               for chart, r, u in zip(charts, results, units)])
    row("evidence-cell", [_evidence_list(r, u) for r, u in zip(results, units)])
    row("sites-cell", [_sites_table(r, u) for r, u in zip(results, units)])
    summary = plain(terminal.summary(results, exit_status, noun="program")) \
        if exit_status is not None else f"{len(results)} program(s)"
    header = _status_line(summary, exit_status) + _counts(results) + _summary_table(
        [(a, r.name, r, u) for a, r, u in zip(anchors, results, units)])
    legend = ("Each chart is the metric against time while the program ran. A dashed line is the fitted "
              "slope where the growth is linear; dotted orange lines mark restarts; a red line, a kill "
              "by the memory limit.")
    grid = f"grid-template-columns: repeat({columns}, minmax(0, 1fr))"   # one column per program
    body = f'<div class="compare" style="{grid}">{"".join(cells)}</div>' + "".join(
        f'<section class="extra"><h2>{_text(heading)}</h2><pre>{_text(text)}</pre></section>'
        for heading, text in sections)
    return _document(title, " ".join(part for part in (intro, legend) if part), header, body,
                     page.inliner.stylesheet())


STYLESHEET = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #212121; background: #fafafa; margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h3 { font-size: 16px; margin: 0; display: inline; }
h4 { font-size: 13px; margin: 10px 0 4px; color: #444; }
code, .stack, .figures { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
.intro { color: #555; margin: 0 0 10px; }
.status { font-weight: 600; padding: 8px 12px; border-radius: 6px; background: #eee; }
.status.clean { background: #e8f5e9; color: #1b5e20; } .status.leak { background: #ffebee; color: #b71c1c; }
.status.error { background: #fbe9e7; color: #7f0000; }
.tiles { display: flex; gap: 10px; margin: 10px 0; flex-wrap: wrap; }
.tile { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 6px 14px; color: #555; }
.tile .count { font-size: 20px; font-weight: 700; margin-right: 6px; color: #212121; }
.tile.leak .count { color: #c62828; } .tile.accepted .count { color: #b26a00; }
.tile.error .count { color: #7f0000; } .tile.clean .count { color: #2e7d32; }
table { border-collapse: collapse; background: #fff; }
.overview { width: 100%; margin: 10px 0 18px; font-size: 13px; }
.overview th, .overview td, .sites th, .sites td { border-bottom: 1px solid #eee; padding: 3px 8px; text-align: left; }
.overview th { background: #f0f0f0; } th.num { text-align: right; }
td.num { text-align: right; font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: nowrap; }
.badge { display: inline-block; border-radius: 10px; padding: 1px 9px; margin: 0 4px 0 8px; font-size: 12px;
  font-weight: 600; color: #fff; vertical-align: 2px; }
.badge.clean { background: #2e7d32; } .badge.leak { background: #d32f2f; }
.badge.incomplete { background: #6d4c41; } .tile.incomplete .count { color: #6d4c41; }
.badge.accepted { background: #f9a825; color: #3e2700; } .badge.error { background: #7f0000; }
.badge.skipped { background: #9e9e9e; }
.overview .badge { margin-left: 0; }
.tolerated { font-size: 12px; color: #8d6e00; margin-left: 2px; }
.result, .cell.card { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 12px 14px; }
.result { margin: 0 0 16px; }
.package { color: #777; font-size: 12px; } .span { color: #666; font-size: 12.5px; margin: 2px 0; }
.figures { margin: 6px 0; }
.charts { display: grid; gap: 8px; }
.charts.bench { grid-template-columns: repeat(5, minmax(0, 1fr)); }
.charts.program { grid-template-columns: repeat(3, minmax(0, 1fr)); }
figure.chart { margin: 0; border: 1px solid #eee; border-radius: 6px; padding: 4px; background: #fff; }
figure.chart svg { width: 100%; height: auto; display: block; }
/* matplotlib's defaults, at no specificity so each element's own class wins */
:where(figure.chart svg *) { stroke-linejoin: round; stroke-linecap: butt; }
figure.chart svg text { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; }
figcaption { font-size: 12px; padding: 0 2px 2px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.slope { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.shape { font-size: 11px; color: #666; border: 1px solid #ddd; border-radius: 8px; padding: 0 5px; }
.shape-linear { color: #b71c1c; border-color: #ef9a9a; } .shape-plateau { color: #1565c0; border-color: #90caf9; }
.not-measured { color: #999; font-style: italic; text-align: center; margin: 40px 0; }
.evidence { margin: 8px 0 0; padding-left: 20px; } .evidence li { margin: 2px 0; }
.sites table { width: 100%; font-size: 12.5px; } .sites th { background: #f7f7f7; }
.sites td { vertical-align: top; } .sites th.num, .sites td.num { width: 7em; text-align: right; }
.origin { color: #666; font-size: 12px; }
details summary { color: #666; font-size: 12px; cursor: pointer; }
.stack { margin: 2px 0 4px; padding-left: 24px; color: #444; }
.missing { color: #8d6e00; } ul.missing { padding-left: 20px; margin: 4px 0; }
.compare { display: grid; gap: 10px 14px; align-items: start; }
.skipped, .settings, .more { color: #666; font-size: 12.5px; }
footer { color: #999; font-size: 12px; margin-top: 24px; }
"""


def _document(title: str, intro: str, header: str, body: str, chart_styles: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_text(title)}</title><style>{STYLESHEET}{chart_styles}</style></head>\n<body><main>"
            f"<h1>{_text(title)}</h1>" + (f'<p class="intro">{_text(intro)}</p>' if intro else "")
            + f"{header}\n{body}\n<footer>cgo-audit {_text(__version__)}: a self-contained report; "
            "nothing on this page is fetched from a network.</footer></main></body></html>\n")


def write_html(text: str, path: Path) -> None:
    """Writes a rendered page as UTF-8."""
    Path(path).write_text(text, encoding="utf-8")
