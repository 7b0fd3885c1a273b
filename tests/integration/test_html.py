"""The HTML report: rendered from a real bench audit and real runs of the
fixture server, then opened in a real headless Chromium."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Sequence

import pytest

from cgo_audit.audits.bench import BenchSettings, audit_benchmarks
from cgo_audit.audits.run import RunSettings, audit_program
from cgo_audit.commands.common import exit_status
from cgo_audit.model import ProgramResult
from cgo_audit.report import terminal
from cgo_audit.report.html import CHARTED, render_bench_html, render_programs_html, write_html

from browser import PageOutline, network_requests, requests_of_page, run_chromium
from helpers import FIXTURES, SERVER_CWD, free_port

# Audits three fixture packages and two live services for the pages.
pytestmark = pytest.mark.slow

METRICS = [charted.metric.key for charted in CHARTED]
def assert_every_result_charted(outline: PageOutline, results: Sequence[Any]) -> None:
    """Each result has one chart per metric (an SVG where it was measured, a
    note where not) and carries its verdict."""
    for result in results:
        charts = outline.charts_of(result.name)
        assert sorted(charts) == sorted(METRICS), (result.name, sorted(charts))
        for metric, chart in charts.items():
            measured = chart["attrs"].get("data-measured") != "no"
            assert chart["svgs"] == (1 if measured else 0), (result.name, metric, chart["svgs"])
            if not measured:
                assert "not measured" in " ".join(chart["text"])
        assert outline.verdicts_of(result.name) == [result.verdict], result.name


EXTERNAL = re.compile(r"""(?:\b(?:src|href|srcset|poster|action|data)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//"""
                      r"""|url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//|@import)""", re.I)


def assert_self_contained(outline: PageOutline, text: str) -> None:
    """Nothing the page could fetch: no scripts, every reference is in-page."""
    assert not EXTERNAL.search(text), EXTERNAL.search(text)
    assert not [tag for tag, _ in outline.elements if tag in ("script", "link", "img", "iframe", "object")]
    for tag, attrs in outline.elements:
        for name in ("src", "href", "xlink:href"):
            if name in attrs:
                assert attrs[name].startswith("#"), (tag, name, attrs[name])


# --- The pages, from real audits ------------------------------------------------

@pytest.fixture(scope="module")
def bench_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, int, Path, str]:
    """`cgo-audit bench --sizes 100,200,400,800 --bench 'GetValue|BlockedGoroutines|BoundedCCache'
    ./cstring ./causes ./lookalikes`, rendered as --html would."""
    settings = BenchSettings(patterns=["./cstring", "./causes", "./lookalikes"], directory=FIXTURES.resolve(),
                             bench_regex="GetValue|BlockedGoroutines|BoundedCCache", sizes=[100, 200, 400, 800])
    report = audit_benchmarks(settings)
    status = exit_status(report.results)
    path = tmp_path_factory.mktemp("html") / "bench.html"
    write_html(render_bench_html(report, status), path)
    return report, status, path, path.read_text(encoding="utf-8")


def run_fixture_server(leakyserver: Path, mode: str, requests: int = 2000) -> ProgramResult:
    """The fixture server under load until `requests` answers (a state, not
    seconds: 300 s is only the bound)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    return audit_program(RunSettings(
        argv=[str(leakyserver), "-addr", f"127.0.0.1:{port}", "-mode", mode], cwd=SERVER_CWD,
        duration_s=300, interval_s=0.25, pprof_url=base, load_urls=[f"{base}/value?key=timeout"],
        stop_after_ops=requests))


@pytest.fixture(scope="module")
def programs(leakyserver: Path) -> list[ProgramResult]:
    """The field guide's service and its fix, each run for a few seconds under load."""
    return [run_fixture_server(leakyserver, "leaky"), run_fixture_server(leakyserver, "fixed")]


@pytest.fixture(scope="module")
def programs_page(programs: list[ProgramResult], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    status = 1 if any(r.is_new_leak for r in programs) else 0
    path = tmp_path_factory.mktemp("html") / "programs.html"
    write_html(render_programs_html(programs, "leaky service and its fix",
                                    "The same server before and after freeing its C strings.", status), path)
    return path, path.read_text(encoding="utf-8")


# --- The page's structure (no browser needed) ------------------------------------

def test_bench_page_charts_every_benchmark_with_its_verdict_evidence_and_sites(bench_page):
    report, status, _, text = bench_page
    outline = PageOutline(text)
    names = {r.name for r in report.results}
    assert {"BenchmarkGetValueLeaky", "BenchmarkGetValueFixed", "BenchmarkBlockedGoroutines",
            "BenchmarkBoundedCCache"} <= names
    assert_every_result_charted(outline, report.results)
    plain_summary = re.sub(r"\[/?[a-z ]*\]", "", terminal.summary(report.results, status))
    assert " ".join(plain_summary.split()) in outline.text   # the terminal's summary, without its markup
    leaky = next(r for r in report.results if r.name == "BenchmarkGetValueLeaky")
    for line in terminal.evidence(leaky):
        assert " ".join(line.split()) in outline.text   # the terminal's sentences, word for word
    assert leaky.sites
    for site in leaky.sites:
        assert " ".join(site.label().split()) in outline.text
    c_heap = outline.charts_of("BenchmarkGetValueLeaky")["c_bytes"]
    assert "26.00 B/op" in " ".join(c_heap["text"]) and "linear" in " ".join(c_heap["text"])
    # The overview table: one row per result, linking to its section.
    rows = [attrs["data-result"] for tag, attrs in outline.elements if tag == "tr" and "data-result" in attrs]
    assert rows == [r.name for r in report.results]


def test_bench_page_is_self_contained_small_and_its_ids_unique(bench_page):
    report, _, path, text = bench_page
    outline = PageOutline(text)
    assert_self_contained(outline, text)
    ids = [attrs["id"] for _, attrs in outline.elements if "id" in attrs]
    assert len(ids) == len(set(ids))
    # The bundled fixtures' 18 benchmarks come to about 300 KB: well under 1 MB.
    assert path.stat().st_size < 45_000 * len(report.results), path.stat().st_size


def test_programs_page_puts_the_leak_and_its_fix_on_the_same_scales(programs, programs_page):
    _, text = programs_page
    outline = PageOutline(text)
    assert_every_result_charted(outline, programs)
    assert_self_contained(outline, text)
    leaky, fixed = (outline.charts_of(r.name) for r in programs)
    for metric in METRICS:
        # Same tick labels on both sides: one scale, so the two compare at a glance.
        assert leaky[metric]["svg_text"] == fixed[metric]["svg_text"], metric
    for result in programs:
        for line in terminal.evidence(result):
            assert " ".join(line.replace("/op", "/req").split()) in outline.text


def test_restarts_and_metrics_not_measured_are_marked(programs, tmp_path):
    leaky = programs[0]
    half = len(leaky.samples) // 2
    # The same samples as if a memory limit had restarted the program half-way,
    # and its pprof endpoint had never answered.
    restarted = dataclasses.replace(leaky, samples=[
        dataclasses.replace(sample, incarnation=int(index >= half), goroutines=None, go_heap_bytes=None)
        for index, sample in enumerate(leaky.samples)])
    outline = PageOutline(render_programs_html([restarted], "restarted"))
    charts = outline.charts_of(leaky.name)
    assert charts["c_bytes"]["attrs"].get("data-restarts") == "1"
    for metric in ("goroutines", "go_heap_bytes"):
        assert charts[metric]["attrs"].get("data-measured") == "no"
        assert "not measured" in " ".join(charts[metric]["text"])
    assert "1 restart(s)" in outline.text


def test_text_from_the_command_line_is_escaped(programs):
    title = "<script>alert('x')</script> & <marquee>moving</marquee>"
    text = render_programs_html(programs[:1], title, intro="<img src=//example.invalid/x.png>")
    outline = PageOutline(text)
    assert not [tag for tag, _ in outline.elements if tag in ("script", "marquee", "img")]
    assert title in outline.text and "<img src=//example.invalid/x.png>" in outline.text


@pytest.mark.browser
def test_chromium_renders_every_result_with_its_charts_and_verdict(bench_page, programs, programs_page):
    report, _, bench_path, _ = bench_page
    for path, results in ((bench_path, report.results), (programs_page[0], programs)):
        proc = run_chromium("--dump-dom", path.as_uri())
        assert proc.returncode == 0 and "</html>" in proc.stdout, proc.stderr[-2000:]
        assert_every_result_charted(PageOutline(proc.stdout), results)


@pytest.mark.browser
def test_chromium_loads_the_pages_without_a_single_network_request(bench_page, programs_page, tmp_path):
    # The check can see a request: a page that makes two shows both.
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><img src="http://example.invalid/x.png">'
                       '<link rel="stylesheet" href="https://example.invalid/font.css">')
    assert sorted(network_requests(requests_of_page(control.as_uri()))) == [
        "http://example.invalid/x.png", "https://example.invalid/font.css"]
    for path in (bench_page[2], programs_page[0]):
        urls = requests_of_page(path.as_uri())
        assert urls and urls[0] == path.as_uri()   # it did load the page
        assert network_requests(urls) == []


@pytest.mark.browser
def test_screenshots_are_full_pages_of_charts(bench_page, programs_page):
    for path in (bench_page[2], programs_page[0]):
        shot = path.with_suffix(".png")
        proc = run_chromium("--hide-scrollbars", "--window-size=1280,4000", f"--screenshot={shot}", path.as_uri())
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 20_000, shot.stat().st_size
