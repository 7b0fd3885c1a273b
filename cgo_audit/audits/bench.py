"""`cgo-audit bench`: builds each package's test binary (with the probe
overlay), runs every benchmark at several sizes under the shim, and fits
growth per operation."""

from __future__ import annotations

import os
import resource
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from cgo_audit.errors import AuditError
from cgo_audit.measure.limits import FDS as FDS_LIMITED
from cgo_audit.measure.limits import own_limits
from cgo_audit.measure.runner import ShimSession, failure_line, run_target
from cgo_audit.measure.shards import split
from cgo_audit.measure.targets import BENCHMARK, BenchSettings, BenchTarget, find_modules, prepare_package
from cgo_audit.model import (
    AuditReport,
    BenchResult,
    PackageOutcome,
    RunPoint,
    comparable,
    point_from_run,
    skipped_names,
)
from cgo_audit.shim.build import build_shim
from cgo_audit.toolchain.gotool import go_executable, list_packages
from cgo_audit.toolchain.probe import TEST_WRAPPER_PREFIX, WRAPPER_PREFIX
from cgo_audit.verdicts import analysis
from cgo_audit.verdicts.sites import RunStacks, measure_sites
from cgo_audit.verdicts.symbolize import Symbolizer


class AuditProgress(Protocol):
    """What the audit tells a progress display (see report/progress.py)."""

    def building(self, package: str) -> None: ...
    def planned(self, targets: int) -> None: ...
    def running(self, target: str, n: int) -> None: ...
    def finished(self, target: str) -> None: ...


class NoProgress:
    def building(self, package: str) -> None:
        pass

    def planned(self, targets: int) -> None:
        pass

    def running(self, target: str, n: int) -> None:
        pass

    def finished(self, target: str) -> None:
        pass


def run_benchmark_once(target: BenchTarget, n: int, settings: BenchSettings, verbose: bool = False) -> RunPoint:
    """One process under the shim: a benchmark at -test.benchtime=Nx, or a
    test at -test.count=N; verbose (-test.v) shows what skipped itself."""
    godebug = ",".join(part for part in (os.environ.get("GODEBUG", ""), "gctrace=1") if part)
    env = {"GODEBUG": godebug}
    if target.go_layout:
        env["CGO_AUDIT_GO_LAYOUT"] = target.go_layout
    if settings.stacks != "off":
        env.update(CGO_AUDIT_STACKS=settings.stacks, CGO_AUDIT_SAMPLE_BYTES=str(settings.sample_bytes))
    if target.kind == BENCHMARK:
        selection = ["-test.run=^$", f"-test.bench={target.pattern()}", f"-test.benchtime={n}x",
                     "-test.benchmem", "-test.count=1"]
    else:
        selection = [f"-test.run={target.pattern()}", f"-test.count={n}"]
    if verbose:
        selection.append("-test.v")
    argv = [str(target.binary), *selection, f"-test.timeout={int(settings.run_timeout_s) + 60}s"]
    platform = settings.platform
    with ShimSession(build_shim(target.shim_cc), keep=settings.keep_work, platform=platform) as session:
        record = run_target(argv, session, cwd=target.package.dir, env_extra=env,
                            timeout_s=settings.run_timeout_s, probe=target.probed,
                            sample_interval_s=settings.sample_interval_s)
    return point_from_run(record, n, target.name)  # the probe labels snapshots with the top-level name


CALIBRATION_OPS = {BENCHMARK: 64, "test": 4}
# A run planned from the ones before may take this share of --timeout: the
# estimate is a straight line, and the machine may be busier then.
TIMEOUT_SHARE = 0.5
# Below this much wall time added by the calibration's ops, the time per op
# is not estimated from wall time (process start-up varies by more).
MEASURABLE_EXTRA_S = 1.0
GOROUTINE_BYTES = 4096        # a blocked goroutine's stack and descriptor, roughly


@dataclass(frozen=True)
class Budget:
    """How large the largest run may be, and what set the limit."""

    ops: int
    reason: str
    ceiling: int | None = None   # no run may pass it, not even to settle an undecided shape
    ceiling_reason: str = ""


def calibration_ops(first: RunPoint, kind: str, settings: BenchSettings) -> int:
    """The calibration run's size: the usual one, unless the run at 1 op
    (its set-up included, so an upper bound per op) says that many would
    take more than a quarter of --timeout (DuckDB's BenchmarkTypes: 5 s)."""
    usual = CALIBRATION_OPS[kind]
    if first.elapsed_s <= 0 or first.elapsed_s * usual <= settings.run_timeout_s / 4:
        return usual
    return max(2, min(usual, int(settings.run_timeout_s / 4 / first.elapsed_s)))


def timeout_ops(first: RunPoint, calibration: RunPoint, settings: BenchSettings) -> int | None:
    """The most ops a run can do within TIMEOUT_SHARE of --timeout, from the
    wall time the calibration run added per op over the run at 1 op."""
    extra_ops = calibration.ops - first.ops
    extra_s = calibration.elapsed_s - first.elapsed_s
    if extra_ops <= 0 or extra_s < MEASURABLE_EXTRA_S:
        return None   # a fast benchmark: start-up noise would swamp the estimate, and time is no limit
    per_op_s = extra_s / extra_ops
    return max(first.ops, int(first.ops + (settings.run_timeout_s * TIMEOUT_SHARE - first.elapsed_s) / per_op_s))


def growth_budget(calibration: RunPoint, ns_per_op: float, settings: BenchSettings,
                  max_ops_in_time: int | None = None) -> Budget:
    """The largest run that stays within the time, memory, fd and thread
    budgets, given what the calibration run grew per operation; and, when
    known, within the ops that fit in part of --timeout."""
    ops = max(calibration.ops, 1)
    limits = [Budget(int(settings.run_seconds * 1e9 / max(ns_per_op, 1.0)), f"{settings.run_seconds:g}s per run"),
              Budget(settings.max_n, "the size cap")]
    floor = 4 * ops   # enough spread to fit a line, even past the time per run
    if max_ops_in_time is not None:
        limits.append(Budget(max_ops_in_time, f"{TIMEOUT_SHARE:.0%} of --timeout ({settings.run_timeout_s:g}s)"))
        floor = min(floor, max_ops_in_time)
    memory_per_op = max(calibration.c_bytes or 0, calibration.go_heap_bytes or 0, calibration.rss_bytes or 0,
                        (calibration.goroutines or 0) * GOROUTINE_BYTES, 0) / ops
    if memory_per_op > 0:
        limits.append(Budget(int(settings.max_growth_bytes / memory_per_op),
                             f"{settings.max_growth_bytes >> 20} MiB of growth"))
    fds_per_op = (calibration.fds or 0) / ops
    if fds_per_op > 0:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        limits.append(Budget(int(soft * 0.5 / fds_per_op), f"half the fd limit ({soft})"))
    threads_per_op = (calibration.threads or 0) / ops
    if threads_per_op > 0:
        limits.append(Budget(int(2000 / threads_per_op), "2000 threads"))
    tightest = min(limits, key=lambda b: b.ops)
    return Budget(max(floor, tightest.ops), tightest.reason, max_ops_in_time,
                  f"{TIMEOUT_SHARE:.0%} of --timeout ({settings.run_timeout_s:g}s)")


def planned_sizes(budget: Budget) -> list[int]:
    """Four sizes, doubling up to the budget."""
    return sorted({max(2, budget.ops >> shift) for shift in (3, 2, 1, 0)})


def analyse(points: Sequence[RunPoint], preloadable: bool = True
            ) -> tuple[dict[str, analysis.Growth], analysis.Verdicts]:
    """Growth of each metric over the runs, and the verdicts. A dynamically
    linked binary (preloadable) whose runs carry no C heap had it go
    unmeasured (the shim did not load): that is said, not called clean."""
    usable = sorted(comparable(points), key=lambda p: p.ops)
    growth = {}
    for metric in analysis.METRICS:
        values = [getattr(p, metric.key) for p in usable]
        if usable and all(v is not None for v in values):
            growth[metric.key] = analysis.classify(metric, [p.ops for p in usable], values)
    if analysis.FDS.key in growth and all(p.fds_peak is not None for p in usable):
        growth[analysis.FDS.key] = _fds_at_limit(growth[analysis.FDS.key], usable)
    c_measured = not preloadable or analysis.C_BYTES.key in growth
    return growth, analysis.decide(growth, c_heap_measured=c_measured)


def _fds_at_limit(growth: analysis.Growth, usable: Sequence[RunPoint]) -> analysis.Growth:
    """Runs whose fds stop at the open-file limit (inherited from this
    process) have exhausted it: every run starts from the same few fds, so
    the origin (no ops, no growth) is a point of the series too."""
    limits = own_limits().get(FDS_LIMITED, [])
    peaks = [float(p.fds_peak or 0) for p in usable]
    start = min(peak - (p.fds or 0) for peak, p in zip(peaks, usable))
    return analysis.reached_limit(analysis.FDS, growth, [0.0, *(float(p.ops) for p in usable)],
                                  [0.0, *(float(p.fds or 0) for p in usable)], [([start, *peaks], limits)])


def measure(target: BenchTarget, settings: BenchSettings, progress: AuditProgress) -> list[BenchResult]:
    """A benchmark's result, or one per sub-benchmark when it has them (a
    parent that only calls b.Run has no loop of its own to measure)."""
    first = None
    if not target.sub:
        progress.running(f"{target.package.import_path} {target.full_name}", 1)
        first = run_benchmark_once(target, 1, settings, verbose=True)
        output = first.record.stdout if first.record else ""
        skipped = skipped_names(output)
        if first.ok and target.output_name in skipped:
            return [skipped_result(target, first, skipped[target.output_name], progress)]
        subs = target.sub_benchmarks(output, settings.bench_regex)
        if subs:
            results = []
            for sub in subs:
                if sub.output_name in skipped:
                    results.append(skipped_result(sub, None, skipped[sub.output_name], progress))
                else:
                    results.extend(measure(sub, settings, progress))
            return results
    return [measure_one(target, settings, progress, first)]


def skipped_result(target: BenchTarget, run: RunPoint | None, reason: str, progress: AuditProgress
                   ) -> BenchResult:
    """A benchmark or test that called Skip: nothing of it ran to measure
    (run: its own run, not its parent's, that showed it)."""
    progress.finished(target.full_name)
    return BenchResult(package=target.package.import_path, name=target.full_name,
                       verdicts=analysis.decide({}), growth={}, points=[run] if run else [],
                       notes=list(target.notes), skipped=reason)


def measure_one(target: BenchTarget, settings: BenchSettings, progress: AuditProgress,
                first_run: RunPoint | None = None) -> BenchResult:
    """One benchmark's result; first_run, when given, is its run at n=1."""
    points: list[RunPoint] = []
    notes = list(target.notes)

    def run(n: int) -> RunPoint:
        progress.running(f"{target.package.import_path} {target.full_name}", n)
        point = run_benchmark_once(target, n, settings)
        points.append(point)
        return point

    def failed(point: RunPoint) -> BenchResult:
        growth, verdicts = analyse(points, target.preloadable)
        return BenchResult(package=target.package.import_path, name=target.full_name, verdicts=verdicts,
                           growth=growth, points=points, notes=notes,
                           error=f"the benchmark {point.status}{_failure_detail(point)}")

    budget = Budget(settings.max_n * 4, "the size cap")
    if settings.sizes:
        sizes = sorted(set(settings.sizes))
        if first_run is not None and first_run.ok and first_run.n in sizes:
            # go test -exec's sizes start at 1: that run is already done.
            points.append(first_run)
            sizes.remove(first_run.n)
    else:
        if first_run is not None:
            points.append(first_run)
        first = first_run or run(1)
        if not first.ok:
            return failed(first)
        calibration_n = calibration_ops(first, target.kind, settings)
        calibration = run(calibration_n)
        if not calibration.ok:
            return failed(calibration)
        ns_per_op = calibration.ns_per_op or calibration.elapsed_s * 1e9 / calibration_n
        budget = growth_budget(calibration, ns_per_op, settings, timeout_ops(first, calibration, settings))
        sizes = [n for n in planned_sizes(budget) if n > calibration_n]
    failure = _run_sizes(run, sizes)
    if failure is not None:
        # Out of fds or memory part-way: decide from the runs that finished,
        # adding sizes below the one that failed until there are enough.
        largest_ok = max((p.n for p in points if p.ok), default=1)
        for _ in range(3):
            if len(comparable(points)) >= 3:
                break
            between = (largest_ok + failure.n) // 2
            if between <= largest_ok or not run(between).ok:
                break
            largest_ok = between
        if len(comparable(points)) < 3:
            return failed(failure)
        notes.append(f"the run at {failure.n} ops {failure.status}{_failure_detail(failure)}: "
                     "verdict from the runs that finished")
    growth, verdicts = analyse(points, target.preloadable)
    extensions = 0
    while (verdicts.undecided and failure is None and not settings.sizes
           and extensions < settings.max_extensions):
        # Like psleak's retries: grow the runs until the shape is clear.
        largest = max(p.n for p in points)
        if largest * 2 > budget.ops * 4:
            notes.append(f"larger runs would exceed {budget.reason}")
            break
        if budget.ceiling is not None and largest * 2 > budget.ceiling:
            notes.append(f"larger runs would exceed {budget.ceiling_reason}")
            break
        point = run(largest * 2)
        if not point.ok:
            notes.append(f"the run at {point.n} ops {point.status}: verdict from the runs before it")
            break
        growth, verdicts = analyse(points, target.preloadable)
        extensions += 1
    if verdicts.undecided:
        notes.append("undecided after the largest runs: " + ", ".join(verdicts.undecided))
    notes.extend(verdicts.why_incomplete)
    if settings.platform.emulated:
        # Sizes were planned from them, but an emulator's timings are not
        # the hardware's: they are never reported.
        for point in points:
            point.ns_per_op = None
    result = BenchResult(package=target.package.import_path, name=target.full_name, verdicts=verdicts,
                         growth=growth, points=points, notes=notes)
    if settings.stacks != "off" and analysis.CGO_LEAK in verdicts.all:
        attribute(result, settings, str(target.package.module_dir or target.package.dir))
    progress.finished(target.full_name)
    return result


def _run_sizes(run: Callable[[int], RunPoint], sizes: Sequence[int]) -> RunPoint | None:
    """Runs each size in turn; the first run that fails, if any."""
    for n in sizes:
        point = run(n)
        if not point.ok:
            return point
    return None


def attribute(result: BenchResult, settings: BenchSettings, home: str | None = None) -> None:
    """Names the leak sites: stacks symbolized, grouped, fitted per op;
    anchored in home (the audited module) where a stack reaches it."""
    usable = [p for p in comparable(result.points) if p.maps]
    if not usable:
        result.notes.append("no process mappings were read: leak sites cannot be named")
        return
    symbolizer = Symbolizer([])
    period = settings.sample_bytes if settings.stacks == "sampled" else 0
    result.sites, result.runtime_c_bytes_per_op = measure_sites(
        [RunStacks(p.ops, p.stacks, p.maps) for p in usable], symbolizer, period, home)
    result.sample_period_bytes = period
    result.symbolizer = symbolizer
    result.notes.extend(symbolizer.notes)


def _failure_detail(point: RunPoint) -> str:
    """How the target said it failed, as ': <line>' (or nothing)."""
    if point.record is None:
        return ""
    line = failure_line(point.record.stdout + "\n" + point.record.stderr)
    if not line:
        return ""
    # Go names the probe's wrapper; the user knows their benchmark's own name.
    return ": " + line.replace(WRAPPER_PREFIX, "Benchmark").replace(TEST_WRAPPER_PREFIX, "Test")


def measure_all(targets: Sequence[BenchTarget], settings: BenchSettings, progress: AuditProgress
                ) -> list[BenchResult]:
    """Each target's results, in order. A benchmark's runs are sequential
    (each size is planned from the last); different ones run side by side."""
    with ThreadPoolExecutor(max_workers=max(1, settings.jobs)) as pool:
        return [r for batch in pool.map(lambda t: measure(t, settings, progress), targets) for r in batch]


def packages_to_audit(settings: BenchSettings) -> list[tuple[Path, list]]:
    """(module directory, packages) for the directory, and every module below
    it when asked (a tree of several modules: `make audit PKG=...`)."""
    directory = Path(settings.directory)
    if not directory.is_dir():
        raise AuditError(f"no such directory: {directory}")
    go_executable()
    roots = find_modules(directory) if settings.nested_modules else []
    found = []
    if not roots or roots[0] != directory:
        try:
            found.append((directory, list_packages(settings.patterns, directory, settings.tags, settings.go_flags)))
        except AuditError:
            if not roots:
                raise
    for root in roots:
        found.append((root, list_packages(settings.patterns, root, settings.tags, settings.go_flags)))
    return found


def audit_benchmarks(settings: BenchSettings, progress: AuditProgress | None = None) -> AuditReport:
    progress = progress or NoProgress()
    build_shim(settings.platform.shim_cc)  # fail early, with its own message, if the shim cannot be built
    modules = packages_to_audit(settings)
    if not any(packages for _, packages in modules):
        raise AuditError(f"no Go packages match {' '.join(settings.patterns)} in {settings.directory}")
    shard_info: dict[str, object] = {}
    if settings.shard is not None:
        modules, shard_info = shard_of(modules, settings)
    outcomes: list[PackageOutcome] = []
    targets: list[BenchTarget] = []
    with tempfile.TemporaryDirectory(prefix="cgo-audit-build-") as work:
        for _, packages in modules:
            for package in packages:
                progress.building(package.import_path)
                started = time.monotonic()
                found, outcome = prepare_package(package, settings, Path(work))
                outcome.duration_s = time.monotonic() - started
                outcomes.append(outcome)
                targets.extend(found)
        progress.planned(len(targets))
        results = measure_all(targets, settings, progress)
    for outcome in outcomes:
        outcome.duration_s += sum(r.duration_s for r in results if r.package == outcome.import_path)
    if not results and settings.shard is None:
        reasons = "; ".join(f"{o.import_path}: {o.status} ({o.detail})" for o in outcomes)
        raise AuditError(f"nothing to audit: {reasons}")
    # A shard with nothing to run is not an error: the other shards have the packages.
    return AuditReport(results=results, packages=outcomes, settings={**settings.as_dict(), **shard_info})


def shard_of(modules: list[tuple[Path, list]], settings: BenchSettings) -> tuple[list[tuple[Path, list]], dict]:
    """This shard's packages, and what the merge needs to check that the
    shards cover every package once: the shard and how many packages in all."""
    assert settings.shard is not None
    names = sorted({package.import_path for _, packages in modules for package in packages})
    mine = set(split(names, settings.shard.count, settings.shard_durations)[settings.shard.index - 1])
    chosen = [(root, [p for p in packages if p.import_path in mine]) for root, packages in modules]
    info = {"shard": str(settings.shard), "shard_packages": sorted(mine), "packages_in_all_shards": len(names),
            "shard_balanced_by": "durations" if settings.shard_durations else "count"}
    return [(root, packages) for root, packages in chosen if packages], info
