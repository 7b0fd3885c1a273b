"""bench's progress bar: while packages build nobody knows how many
benchmarks will run, and the bar says so (a pulse and a spinner, never a
full bar beside 0/?); once counted it reads M/N."""

from __future__ import annotations

import io

from rich.console import Console

from cgo_audit.report.progress import BarProgress


def drawn(progress: BarProgress, console: Console) -> str:
    console.file = io.StringIO()
    console.print(progress._bar.get_renderable())
    return console.file.getvalue()


def test_the_bar_is_indeterminate_until_the_benchmarks_are_counted():
    console = Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None)
    progress = BarProgress(console)
    progress.building("example.com/m/cstring")
    building = drawn(progress, console)
    assert "building cstring" in building
    assert "/?" not in building and "0/" not in building
    assert "━" * 24 not in building          # no full bar for nothing done
    progress.planned(4)
    progress.running("example.com/m/cstring BenchmarkX", 100)
    progress.finished("BenchmarkX")
    counted = drawn(progress, console)
    assert "1/4" in counted
