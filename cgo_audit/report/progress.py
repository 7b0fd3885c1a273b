"""The live progress of a `bench` audit on a terminal: packages built, then
benchmarks done, with what is running now."""

from __future__ import annotations

import threading

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


class _Bar(ProgressColumn):
    """No bar while the total is unknown (packages still building): rich
    would draw a full one (its pulse, without colour) beside 0/?."""

    def __init__(self, bar_width: int) -> None:
        super().__init__()
        self._bar = BarColumn(bar_width=bar_width)
        self._width = bar_width

    def render(self, task: Task) -> RenderableType:
        return Text(" " * self._width) if task.total is None else self._bar.render(task)


class _Count(ProgressColumn):
    """M/N once the benchmarks are counted; a spinner until then."""

    def __init__(self) -> None:
        super().__init__()
        self._spinner = SpinnerColumn()
        self._count = MofNCompleteColumn()

    def render(self, task: Task) -> RenderableType:
        return self._spinner.render(task) if task.total is None else self._count.render(task)


class BarProgress:
    """A rich progress bar; use as a context manager."""

    def __init__(self, console: Console) -> None:
        self._bar = Progress(TextColumn("{task.description}"), _Bar(bar_width=24), _Count(),
                             TimeElapsedColumn(), console=console, transient=True)
        self._task = self._bar.add_task("building", total=None)
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> "BarProgress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)

    def _describe(self) -> str:
        now = ", ".join(f"{name.rsplit(' ', 1)[-1]} {n}x" for name, n in list(self._running.items())[:2])
        return (now or "starting")[:48]

    def building(self, package: str) -> None:
        self._bar.update(self._task, description=f"building {package.rsplit('/', 1)[-1]}"[:48])

    def planned(self, targets: int) -> None:
        self._bar.update(self._task, total=targets, completed=0, description="running")

    def running(self, target: str, n: int) -> None:
        with self._lock:
            self._running[target] = n
            self._bar.update(self._task, description=self._describe())

    def finished(self, target: str) -> None:
        with self._lock:
            self._running = {k: v for k, v in self._running.items() if not k.endswith(" " + target)}
            self._bar.update(self._task, advance=1, description=self._describe())
