"""Growth per operation and the verdicts drawn from it.

Each metric is measured at several run sizes; a leak is growth that is still
proportional to the operation count at the largest sizes. Growth that stops
(a bounded cache filling up) is a plateau, not a leak; growth below a
metric's noise floor is flat. Nothing here reads a process: it only fits
numbers, so it can be tested on numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Mapping, Sequence

LINEAR, PLATEAU, FLAT, NOISY, GROWING, INSUFFICIENT = (
    "linear", "plateau", "flat", "noisy", "growing", "insufficient")
UNDECIDED = (NOISY, GROWING, INSUFFICIENT)


@dataclass(frozen=True)
class Metric:
    """A figure measured per run, and how much growth over a whole series of
    runs it takes before that growth means anything."""

    key: str          # field of a measured point
    label: str
    unit: str
    floor: float      # total growth over the series below which it is flat
    # How much of the overall slope the last step must keep to be a leak's:
    # a counted metric has no noise to excuse a slowing tail (a cache about
    # to fill); a measured one (a GC'd heap, RSS) does.
    tail_share: float = 0.5
    # A measured metric also steps by chance (a GC'd heap keeps goroutine
    # descriptors, the runtime never frees them): one step near the floor
    # is not yet a slope, so a leak must grow by twice the floor in all.
    counted: bool = False

    @property
    def leak_minimum(self) -> float:
        return self.floor if self.counted else 2 * self.floor


C_BYTES = Metric("c_bytes", "C heap", "B", 64, tail_share=0.8, counted=True)
C_ALLOCS = Metric("c_allocs", "C allocations", "allocs", 3, tail_share=0.8, counted=True)
GO_HEAP = Metric("go_heap_bytes", "Go heap", "B", 128 * 1024)
GOROUTINES = Metric("goroutines", "goroutines", "goroutines", 3, tail_share=0.8, counted=True)
FDS = Metric("fds", "file descriptors", "fds", 3, tail_share=0.8, counted=True)
RSS = Metric("rss_bytes", "RSS", "B", 4 * 1024 * 1024)
# What can explain RSS growth without a leak: memory used and given back
# late (C freed by finalizers after a GC) shows in the C heap's peak; a Go
# heap that grew and was collected shows in the memory Go has mapped.
C_PEAK = Metric("c_peak_bytes", "C heap peak", "B", 4 * 1024 * 1024)
GO_MAPPED = Metric("go_mapped_bytes", "memory mapped by Go", "B", 4 * 1024 * 1024)
METRICS = (C_BYTES, C_ALLOCS, GO_HEAP, GOROUTINES, FDS, RSS, C_PEAK, GO_MAPPED)


@dataclass(frozen=True)
class Growth:
    """How one metric moved across the runs."""

    metric: str
    shape: str                    # linear, plateau, flat, noisy, growing, insufficient
    per_op: float                 # growth per op: the tail's slope when linear, ~0 on a plateau, else the fit
    fitted_per_op: float          # least-squares slope over every run
    total: float                  # growth from the smallest run to the largest
    r2: float
    segment_per_op: tuple[float, ...]   # slope between consecutive run sizes

    @property
    def leaking(self) -> bool:
        return self.shape == LINEAR

    def as_dict(self) -> dict[str, object]:
        fields = asdict(self)
        fields["segment_per_op"] = list(self.segment_per_op)
        return fields


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """(slope, intercept, r2) of the least-squares line; r2 is 1 for a
    perfect fit, including a constant series. Computed in exact rationals:
    counts are integers, and 26 bytes per op must come out as 26.0."""
    fx = [Fraction(x) for x in xs]
    fy = [Fraction(y) for y in ys]
    n = len(fx)
    mean_x = sum(fx) / n
    mean_y = sum(fy) / n
    sxx = sum((x - mean_x) ** 2 for x in fx)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(fx, fy))
    slope = sxy / sxx if sxx else Fraction(0)
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for y in fy)
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(fx, fy))
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else Fraction(1)
    return float(slope), float(intercept), float(r2)


def classify(metric: Metric, xs: Sequence[float], ys: Sequence[float]) -> Growth:
    """The shape of ys (one value per run) against xs (operations per run)."""
    points = sorted(zip(xs, ys))
    if len(points) < 2 or points[0][0] == points[-1][0]:
        return Growth(metric.key, INSUFFICIENT, 0.0, 0.0, 0.0, 0.0, ())
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    slope, _, r2 = least_squares(xs, ys)
    segments = tuple(float(Fraction(ys[i + 1] - ys[i]) / Fraction(xs[i + 1] - xs[i]))
                     for i in range(len(xs) - 1))
    total = ys[-1] - ys[0]
    last_growth = ys[-1] - ys[-2]
    tail_slope = segments[-1]
    if len(xs) >= 3:
        tail_slope, _, _ = least_squares(xs[-3:], ys[-3:])
    if abs(total) < metric.floor and abs(slope * (xs[-1] - xs[0])) < metric.floor:
        return Growth(metric.key, FLAT, slope, slope, total, r2, segments)
    steps = [ys[i + 1] - ys[i] for i in range(len(ys) - 1)]
    risen = ys[-2] - ys[0]
    # Flat within half the floor, or within a tenth of the rise (a filled
    # cache's contents vary a little from run to run; a leak's last step,
    # with sizes doubling, is as large as everything before it).
    tolerance = max(metric.floor / 2, 0.1 * risen)
    if (abs(last_growth) < tolerance and risen >= metric.floor / 2
            and all(step > -tolerance for step in steps)):
        # Rose without falling back, then stopped: a bounded structure filling up.
        return Growth(metric.key, PLATEAU, segments[-1], slope, total, r2, segments)
    if len(xs) < 3:
        return Growth(metric.key, INSUFFICIENT, slope, slope, total, r2, segments)
    if (slope > 0 and r2 >= 0.9 and segments[-1] >= metric.tail_share * slope and all(s > 0 for s in segments[-2:])
            and total >= metric.leak_minimum):
        return Growth(metric.key, LINEAR, tail_slope if tail_slope > 0 else slope, slope, total, r2, segments)
    if r2 < 0.5 or slope <= 0:
        return Growth(metric.key, NOISY, slope, slope, total, r2, segments)
    # Undecided shapes report the plain fit: a tail slope could rest on one outlier.
    return Growth(metric.key, GROWING, slope, slope, total, r2, segments)


def rss_explained(growth: Mapping[str, Growth]) -> bool:
    """RSS growth that the C heap's peak or Go's mapped memory accounts for
    (at least half of it) is memory in use and given back late, not lost."""
    rss = growth[RSS.key].total
    accounted = sum(max(growth[key].total, 0.0) for key in (C_PEAK.key, GO_MAPPED.key)
                    if key in growth and growth[key].shape in (LINEAR, GROWING, PLATEAU))
    return rss > 0 and accounted >= 0.5 * rss


# Verdicts, in the order the main one is chosen: the most specific cause first.
CGO_LEAK = "cgo-leak"
FD_LEAK = "fd-leak"
GOROUTINE_LEAK = "goroutine-leak"
GO_HEAP_LEAK = "go-heap-leak"
RSS_UNEXPLAINED = "rss-growth-unexplained"
CLEAN = "clean"
VERDICT_ORDER = (CGO_LEAK, FD_LEAK, GOROUTINE_LEAK, GO_HEAP_LEAK, RSS_UNEXPLAINED)


@dataclass(frozen=True)
class Verdicts:
    main: str
    all: tuple[str, ...]
    undecided: tuple[str, ...]    # metrics whose shape more runs might settle


def decide(growth: Mapping[str, Growth]) -> Verdicts:
    """Verdicts from the growth of each metric (keyed by Metric.key)."""
    def leaking(key: str) -> bool:
        return key in growth and growth[key].leaking

    found = []
    if leaking(C_BYTES.key) or leaking(C_ALLOCS.key):
        found.append(CGO_LEAK)
    if leaking(FDS.key):
        found.append(FD_LEAK)
    if leaking(GOROUTINES.key):
        found.append(GOROUTINE_LEAK)
    if leaking(GO_HEAP.key):
        found.append(GO_HEAP_LEAK)
    if leaking(RSS.key) and not found and not rss_explained(growth):
        found.append(RSS_UNEXPLAINED)
    ordered = tuple(v for v in VERDICT_ORDER if v in found)
    undecided = tuple(key for key, g in growth.items()
                      if g.shape in UNDECIDED and key not in (RSS.key, C_PEAK.key, GO_MAPPED.key))
    return Verdicts(main=ordered[0] if ordered else CLEAN, all=ordered or (CLEAN,), undecided=undecided)
