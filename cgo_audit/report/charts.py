"""Charts for the HTML report: each metric of a result drawn with
matplotlib as a small SVG, cleaned up to be inlined in one page."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from cgo_audit import units
from cgo_audit.model import BenchResult, ProgramResult, ProgramSample, comparable
from cgo_audit.verdicts import analysis


@dataclass(frozen=True)
class ChartedMetric:
    """A metric drawn in the report, with the decimals the terminal gives it."""

    metric: analysis.Metric
    decimals: int
    color: str

    @property
    def is_bytes(self) -> bool:
        return self.metric.unit == "B"


CHARTED = (
    ChartedMetric(analysis.C_BYTES, 2, "#c62828"),
    ChartedMetric(analysis.RSS, 0, "#6d4c41"),
    ChartedMetric(analysis.GO_HEAP, 0, "#1565c0"),
    ChartedMetric(analysis.GOROUTINES, 2, "#6a1b9a"),
    ChartedMetric(analysis.FDS, 2, "#2e7d32"),
)

Line = tuple[list[float], list[float]]


@dataclass
class Chart:
    """What one small chart shows, before it is drawn."""

    charted: ChartedMetric
    x_label: str                            # "operations" or "seconds"
    lines: list[Line]                       # one per program start (a restart breaks the line)
    fit: Line | None = None                 # the fitted slope, where the shape is linear
    restarts: list[float] = field(default_factory=list)
    killed_at: float | None = None          # where a memory limit ended the program
    x_limits: tuple[float, float] | None = None
    y_limits: tuple[float, float] | None = None   # shared when programs are compared
    y_scale: tuple[float, str] | None = None      # (divisor, unit), shared likewise
    size_in: tuple[float, float] = (3.1, 2.0)     # wider when two programs share a row

    @property
    def values(self) -> list[float]:
        return [y for _, ys in self.lines for y in ys]

    @property
    def times(self) -> list[float]:
        return [x for xs, _ in self.lines for x in xs]


# Text as <text> (the browser's font) keeps each chart a few KB; a fixed salt
# keeps the ids, and so the file, the same from run to run.
CHART_STYLE: dict[str, Any] = {
    "svg.fonttype": "none", "svg.hashsalt": "cgo-audit", "font.size": 8,
    "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "#e4e4e4", "grid.linewidth": 0.6, "axes.edgecolor": "#888888",
    "xtick.color": "#555555", "ytick.color": "#555555", "axes.labelcolor": "#444444",
}
COMPARED_CHART_SIZE_IN = (5.4, 1.9)
CHART_MARGINS = {"left": 0.2, "right": 0.97, "bottom": 0.2, "top": 0.96}
FIT_COLOR = "#212121"
RESTART_COLOR = "#ef6c00"


def _floor_limits(chart: Chart) -> tuple[float, float]:
    """The data's range, widened to at least the metric's noise floor: growth
    that small reads as flat, as the verdict does, instead of filling the chart."""
    values = chart.values + (chart.fit[1] if chart.fit else [])
    low, high = min(values), max(values)
    floor = chart.charted.metric.floor
    if high - low < floor:
        middle = (high + low) / 2
        low, high = middle - floor / 2, middle + floor / 2
    margin = (high - low) * 0.06
    return low - margin, high + margin


def draw_chart(chart: Chart) -> str:
    """The chart as an SVG document."""
    charted = chart.charted
    divisor, unit = chart.y_scale or (units.scale(chart.values) if charted.is_bytes else (1.0, charted.metric.unit))
    with matplotlib.rc_context(CHART_STYLE):  # type: ignore[arg-type]  # rcParams keys are Literals
        figure = Figure(figsize=chart.size_in)
        FigureCanvasAgg(figure)
        # Fixed margins, not a layout engine: every chart has the same frame,
        # and drawing once instead of twice halves the page's render time.
        figure.subplots_adjust(**CHART_MARGINS)
        axes = figure.add_subplot()
        axes.tick_params(bottom=False, left=False)   # the grid lines say where ticks are
        for xs, ys in chart.lines:
            axes.plot(xs, [y / divisor for y in ys], color=charted.color, marker="o", markersize=3, linewidth=1.4)
        if chart.fit is not None:
            xs, ys = chart.fit
            axes.plot(xs, [y / divisor for y in ys], color=FIT_COLOR, linestyle="--", linewidth=0.9)
        for x in chart.restarts:
            axes.axvline(x, color=RESTART_COLOR, linestyle=":", linewidth=1.2)
        if chart.killed_at is not None:
            axes.axvline(chart.killed_at, color="#b71c1c", linestyle="-", linewidth=1.0, alpha=0.6)
        if chart.x_limits:
            axes.set_xlim(*chart.x_limits)
        low, high = chart.y_limits or _floor_limits(chart)
        axes.set_ylim(low / divisor, high / divisor)
        if chart.x_label == "operations":
            axes.xaxis.set_major_formatter(EngFormatter(sep=""))   # 200k, 1.6M
        axes.xaxis.set_major_locator(MaxNLocator(5))
        axes.yaxis.set_major_locator(MaxNLocator(5, integer=not charted.is_bytes))
        axes.set_xlabel(chart.x_label)
        if charted.is_bytes:
            axes.set_ylabel(unit)   # counts need no label: the caption names them
        text = io.StringIO()
        figure.savefig(text, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return text.getvalue()


SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)
_HREF = f"{{{XLINK_NS}}}href"
_LONG_NUMBER = re.compile(r"(-?\d+\.\d{2})\d+")
_REFERENCE = re.compile(r"url\(#([^)]+)\)")
# Styles every chart repeats; the page's stylesheet sets them once.
_SHARED_STYLE = re.compile(r"font-family: [^;]+;\s*")
_NO_ROTATION = re.compile(r"^rotate\(-?0 [^)]*\)$")


class ChartInliner:
    """Makes matplotlib's SVG documents elements of one page: trimmed (no
    prolog, metadata or global <style>, size left to CSS, coordinates to
    1/100 pt, bare <g> wrappers unwrapped), ids unique per chart, and the
    styles every chart repeats turned into classes the page defines once."""

    def __init__(self) -> None:
        self.charts = 0
        self.style_classes: dict[str, str] = {}

    def inline(self, document: str) -> str:
        self.charts += 1
        root = ET.fromstring(document)
        for attribute in ("width", "height"):
            root.attrib.pop(attribute, None)
        referenced = {url or href for url, href in re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', document)}
        self._trim(root, f"c{self.charts}-", referenced)
        root.set("role", "img")
        return ET.tostring(root, encoding="unicode")

    def stylesheet(self) -> str:
        return "".join(f"figure.chart .{name} {{ {style} }}\n" for style, name in self.style_classes.items())

    def _trim(self, element: ET.Element, prefix: str, referenced: set[str]) -> None:
        children: list[ET.Element] = []
        for child in element:
            tag = child.tag.rsplit("}", 1)[-1]
            if tag in ("metadata", "style") or (tag == "defs" and all(c.tag.endswith("style") for c in child)):
                continue
            self._trim(child, prefix, referenced)
            if tag == "g" and not child.attrib:
                children.extend(child)   # a bare group draws nothing of its own
            else:
                children.append(child)
        element[:] = children
        for name, value in list(element.attrib.items()):
            if name == "id":
                if value in referenced:
                    element.set(name, prefix + value)
                else:
                    del element.attrib[name]
            elif name == _HREF and value.startswith("#"):
                element.set(name, "#" + prefix + value[1:])
            elif name == "transform" and _NO_ROTATION.match(value):
                del element.attrib[name]
            elif name == "clip-path":
                element.set(name, _REFERENCE.sub(lambda m: f"url(#{prefix}{m.group(1)})", value))
            elif name == "style":
                style = _LONG_NUMBER.sub(r"\1", " ".join(_SHARED_STYLE.sub("", value).split()))
                del element.attrib[name]
                element.set("class", self.style_classes.setdefault(style, f"s{len(self.style_classes)}"))
            else:
                element.set(name, _LONG_NUMBER.sub(r"\1", " ".join(value.split())))
        element.text = (element.text.strip() or None) if element.text else None
        element.tail = None


# --- Benchmarks -----------------------------------------------------------

def bench_chart(result: BenchResult, charted: ChartedMetric) -> Chart | None:
    """The metric against operations over the runs the fit used, or for an
    audit that failed, the runs it gathered (None: not measured)."""
    key = charted.metric.key
    points = [p for p in comparable(result.points) or result.points if getattr(p, key) is not None]
    if not points:
        return None
    points.sort(key=lambda p: p.ops)
    xs = [float(p.ops) for p in points]
    ys = [float(getattr(p, key)) for p in points]
    growth = result.growth.get(key)
    fit = None
    if growth is not None and growth.shape == analysis.LINEAR:
        # A linear shape's per_op is the least-squares slope of the last three
        # runs; that line passes through their mean.
        tail_x, tail_y = xs[-3:], ys[-3:]
        mean_x, mean_y = sum(tail_x) / len(tail_x), sum(tail_y) / len(tail_y)
        ends = [0.0, xs[-1]]
        fit = (ends, [mean_y + growth.per_op * (x - mean_x) for x in ends])
    # From zero ops, so a row of charts shares its x axis and the fit shows where it starts.
    return Chart(charted, "operations", [(xs, ys)], fit, x_limits=(0.0, max(xs[-1], 1.0) * 1.04))


# --- Programs -------------------------------------------------------------

def incarnations(samples: Sequence[ProgramSample]) -> list[list[ProgramSample]]:
    runs: list[list[ProgramSample]] = []
    for sample in samples:
        if not runs or runs[-1][-1].incarnation != sample.incarnation:
            runs.append([])
        runs[-1].append(sample)
    return runs


def program_chart(result: ProgramResult, charted: ChartedMetric) -> Chart | None:
    """The metric against time, one line per start of the program (None: not measured)."""
    key = charted.metric.key
    starts = incarnations(result.samples)
    runs = [[s for s in run if getattr(s, key) is not None] for run in starts]
    lines = [([s.time_s for s in run], [float(getattr(s, key)) for s in run]) for run in runs if run]
    if not lines:
        return None
    # audits/run.py takes the verdict (and result.record) from the start with the most samples.
    chosen = max(range(len(starts)), key=lambda i: len(starts[i]))
    record = result.record
    killed = record is not None and record.memory_limit_hit and chosen == len(starts) - 1
    return Chart(charted, "seconds", lines, _program_fit(result, charted, runs[chosen]),
                 restarts=[start[0].time_s for start in starts[1:]],
                 killed_at=starts[-1][-1].time_s if killed else None)


def _program_fit(result: ProgramResult, charted: ChartedMetric, start: list[ProgramSample]) -> Line | None:
    """The fitted slope over the start the verdict came from, anchored at its
    last sample: per request it follows the requests served, so it is drawn
    against time too."""
    growth = result.growth.get(charted.metric.key)
    if growth is None or growth.shape != analysis.LINEAR or len(start) < 2:
        return None

    def op_count(sample: ProgramSample) -> float:
        if charted.metric.key in ("goroutines", "go_heap_bytes") and sample.go_stamp is not None:
            return sample.go_stamp   # the Go side is read a little later than the rest
        return float(sample.ops or 0) if result.per == "request" else sample.time_s

    end = start[-1]
    end_y = float(getattr(end, charted.metric.key))
    return [s.time_s for s in start], [end_y + growth.per_op * (op_count(s) - op_count(end)) for s in start]


def share_axes(charts: Sequence[Chart | None]) -> list[Chart | None]:
    """The same scales for one metric across programs, so a leak and its fix
    compare at a glance."""
    drawn = [c for c in charts if c is not None]
    if len(drawn) < 2:
        return list(charts)
    values = [v for c in drawn for v in c.values + (c.fit[1] if c.fit else [])]
    low, high = min(values + [0.0]), max(values)
    margin = (high - low) * 0.05 or 1.0
    times = [t for c in drawn for t in c.times]
    scale = units.scale(values) if drawn[0].charted.is_bytes else (1.0, drawn[0].charted.metric.unit)
    shared: dict[str, Any] = {"y_limits": (low - margin, high + margin), "x_limits": (0.0, max(times + [1.0])),
                              "y_scale": scale, "size_in": COMPARED_CHART_SIZE_IN}
    return [replace(c, **shared) if c is not None else None for c in charts]
