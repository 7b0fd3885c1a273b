"""`cgo-audit bench`: builds each package's test binary (with the probe
overlay), runs every benchmark at several sizes under the shim, and fits
growth per operation."""

from __future__ import annotations

import os
import re
import resource
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from cgo_audit import analysis
from cgo_audit.errors import AuditError
from cgo_audit.golayout import LayoutUnavailable, read_layout
from cgo_audit.gotool import GoBuildError, GoPackage, build_test_binary, link_info, list_packages, list_tests
from cgo_audit.model import AuditReport, BenchResult, PackageOutcome, RunPoint, point_from_run
from cgo_audit.probe import WRAPPER_PREFIX, write_overlay, wrapper_name
from cgo_audit.runner import ShimSession, run_target
from cgo_audit.shimbuild import build_shim
from cgo_audit.sites import RunStacks, measure_sites
from cgo_audit.symbolize import Symbolizer

STACK_MODES = ("all", "sampled", "off")


@dataclass
class BenchSettings:
    patterns: Sequence[str] = ("./...",)
    directory: Path = Path(".")
    bench_regex: str = "."
    sizes: Sequence[int] | None = None      # fixed -test.benchtime=Nx values
    run_seconds: float = 0.4                # the largest run's target length
    max_n: int = 20_000_000
    max_growth_bytes: int = 256 << 20       # the largest run may grow memory this much
    max_extensions: int = 2                 # larger runs allowed when a shape is undecided
    run_timeout_s: float = 120.0
    tags: Sequence[str] = ()
    go_flags: Sequence[str] = ()
    probe: bool = True
    stacks: str = "all"                     # allocation stacks: all, sampled or off
    sample_bytes: int = 512 * 1024          # sampled mode: mean bytes between samples
    sample_interval_s: float = 0.05
    keep_work: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"patterns": list(self.patterns), "directory": str(self.directory),
                "bench": self.bench_regex, "sizes": list(self.sizes) if self.sizes else None,
                "run_seconds": self.run_seconds, "tags": list(self.tags), "probe": self.probe,
                "stacks": self.stacks}

    def build_env(self) -> dict[str, str]:
        """C compiled with frame pointers, so the stack walk can name C frames too."""
        if self.stacks == "off":
            return {}
        flags = os.environ.get("CGO_CFLAGS", "-O2 -g")
        return {"CGO_CFLAGS": f"{flags} -fno-omit-frame-pointer"}


Progress = Callable[[str], None]


@dataclass
class BenchTarget:
    """One benchmark, ready to run."""

    package: GoPackage
    name: str
    binary: Path
    probed: bool
    notes: list[str] = field(default_factory=list)
    go_layout: str | None = None      # CGO_AUDIT_GO_LAYOUT for the stack walk

    @property
    def listed_name(self) -> str:
        return wrapper_name(self.name) if self.probed else self.name


def run_benchmark_once(target: BenchTarget, n: int, settings: BenchSettings) -> RunPoint:
    """One process: -test.benchtime=Nx under the shim."""
    godebug = ",".join(part for part in (os.environ.get("GODEBUG", ""), "gctrace=1") if part)
    env = {"GODEBUG": godebug}
    if settings.stacks != "off":
        env.update(CGO_AUDIT_STACKS=settings.stacks, CGO_AUDIT_SAMPLE_BYTES=str(settings.sample_bytes))
        if target.go_layout:
            env["CGO_AUDIT_GO_LAYOUT"] = target.go_layout
    argv = [str(target.binary), "-test.run=^$", f"-test.bench=^{re.escape(target.listed_name)}$",
            f"-test.benchtime={n}x", "-test.benchmem", "-test.count=1",
            f"-test.timeout={int(settings.run_timeout_s) + 60}s"]
    with ShimSession(build_shim(), keep=settings.keep_work) as session:
        record = run_target(argv, session, cwd=target.package.dir, env_extra=env,
                            timeout_s=settings.run_timeout_s, probe=target.probed,
                            sample_interval_s=settings.sample_interval_s)
    return point_from_run(record, n, target.name)


CALIBRATION_OPS = 64
GOROUTINE_BYTES = 4096        # a blocked goroutine's stack and descriptor, roughly


@dataclass(frozen=True)
class Budget:
    """How large the largest run may be, and what set the limit."""

    ops: int
    reason: str


def growth_budget(calibration: RunPoint, ns_per_op: float, settings: BenchSettings) -> Budget:
    """The largest run that stays within the time, memory, fd and thread
    budgets, given what the calibration run grew per operation."""
    ops = max(calibration.ops, 1)
    limits = [Budget(int(settings.run_seconds * 1e9 / max(ns_per_op, 1.0)), f"{settings.run_seconds:g}s per run"),
              Budget(settings.max_n, "the size cap")]
    memory_per_op = max(calibration.c_bytes, calibration.go_heap_bytes or 0, calibration.rss_bytes or 0,
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
    return Budget(max(16, tightest.ops), tightest.reason)


def planned_sizes(budget: Budget) -> list[int]:
    """Four sizes, doubling up to the budget."""
    return sorted({max(2, budget.ops >> shift) for shift in (3, 2, 1, 0)})


def comparable(points: Sequence[RunPoint]) -> list[RunPoint]:
    """Runs that finished, all measured the same way (probe deltas and exit
    figures cannot share one fit)."""
    done = [p for p in points if p.ok]
    probed = [p for p in done if p.source == "probe"]
    return probed if len(probed) >= max(2, len(done) - 1) else [p for p in done if p.source == "exit"]


def analyse(points: Sequence[RunPoint]) -> tuple[dict[str, analysis.Growth], analysis.Verdicts]:
    usable = comparable(points)
    growth = {}
    for metric in analysis.METRICS:
        values = [getattr(p, metric.key) for p in usable]
        if usable and all(v is not None for v in values):
            growth[metric.key] = analysis.classify(metric, [p.ops for p in usable], values)
    return growth, analysis.decide(growth)


def measure(target: BenchTarget, settings: BenchSettings, progress: Progress) -> BenchResult:
    points: list[RunPoint] = []
    notes = list(target.notes)

    def run(n: int) -> RunPoint:
        progress(f"{target.package.import_path} {target.name} {n}x")
        point = run_benchmark_once(target, n, settings)
        points.append(point)
        return point

    def failed(point: RunPoint) -> BenchResult:
        growth, verdicts = analyse(points)
        return BenchResult(package=target.package.import_path, name=target.name, verdicts=verdicts,
                           growth=growth, points=points, notes=notes,
                           error=f"the benchmark {point.status}{_failure_detail(point)}")

    budget = Budget(settings.max_n * 4, "the size cap")
    if settings.sizes:
        sizes = sorted(set(settings.sizes))
    else:
        first = run(1)
        if not first.ok:
            return failed(first)
        calibration = run(CALIBRATION_OPS)
        if not calibration.ok:
            return failed(calibration)
        budget = growth_budget(calibration, calibration.ns_per_op or first.ns_per_op or 1e6, settings)
        sizes = [n for n in planned_sizes(budget) if n > CALIBRATION_OPS]
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
    growth, verdicts = analyse(points)
    extensions = 0
    while (verdicts.undecided and failure is None and not settings.sizes
           and extensions < settings.max_extensions):
        # Like psleak's retries: grow the runs until the shape is clear.
        largest = max(p.n for p in points)
        if largest * 2 > budget.ops * 4:
            notes.append(f"larger runs would exceed {budget.reason}")
            break
        point = run(largest * 2)
        if not point.ok:
            notes.append(f"the run at {point.n} ops {point.status}: verdict from the runs before it")
            break
        growth, verdicts = analyse(points)
        extensions += 1
    if verdicts.undecided:
        notes.append("undecided after the largest runs: " + ", ".join(verdicts.undecided))
    result = BenchResult(package=target.package.import_path, name=target.name, verdicts=verdicts,
                         growth=growth, points=points, notes=notes)
    if settings.stacks != "off" and analysis.CGO_LEAK in verdicts.all:
        attribute(result, settings)
    return result


def _run_sizes(run: Callable[[int], RunPoint], sizes: Sequence[int]) -> RunPoint | None:
    """Runs each size in turn; the first run that fails, if any."""
    for n in sizes:
        point = run(n)
        if not point.ok:
            return point
    return None


def attribute(result: BenchResult, settings: BenchSettings) -> None:
    """Names the leak sites: stacks symbolized, grouped, fitted per op."""
    usable = [p for p in comparable(result.points) if p.maps]
    if not usable:
        result.notes.append("no process mappings were read: leak sites cannot be named")
        return
    symbolizer = Symbolizer([])
    period = settings.sample_bytes if settings.stacks == "sampled" else 0
    result.sites, result.runtime_c_bytes_per_op = measure_sites(
        [RunStacks(p.ops, p.stacks, p.maps) for p in usable], symbolizer, period)
    result.sample_period_bytes = period
    result.symbolizer = symbolizer
    result.notes.extend(symbolizer.notes)


FAILURE_LINE = re.compile(r"^(--- FAIL|panic:|fatal error:|SIG[A-Z]+: )")


def _failure_detail(point: RunPoint) -> str:
    """The first line of the target's output that says how it failed."""
    record = point.record
    if record is None:
        return ""
    for line in (record.stdout + "\n" + record.stderr).splitlines():
        if FAILURE_LINE.match(line.strip()):
            return f": {line.strip()}"
    return ""


def prepare_package(package: GoPackage, settings: BenchSettings, workdir: Path
                    ) -> tuple[list[BenchTarget], PackageOutcome]:
    """Builds a package's test binaries and lists its benchmarks."""
    path = package.import_path
    if package.error:
        return [], PackageOutcome(path, "build-failed", package.error)
    if not package.has_tests:
        return [], PackageOutcome(path, "no-tests", "no _test.go files")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", path)
    build_env = settings.build_env()
    try:
        plain = build_test_binary(package, workdir / f"{safe}.test", tags=settings.tags,
                                  go_flags=settings.go_flags, env=build_env)
    except GoBuildError as exc:
        return [], PackageOutcome(path, "build-failed", str(exc))
    link = link_info(plain)
    if not link.dynamic:
        return [], PackageOutcome(path, "no-cgo", "its test binary is statically linked, so LD_PRELOAD "
                                  "cannot reach it; without cgo its C heap cannot leak from Go code")
    pattern = re.compile(settings.bench_regex)
    names = [name for name in list_tests(plain, package.dir)
             if pattern.search(name) and not name.startswith(WRAPPER_PREFIX)]
    if not names:
        return [], PackageOutcome(path, "no-benchmarks", f"no benchmark matches {settings.bench_regex!r}")
    binary, probed, notes = plain, set(), []
    if settings.probe:
        overlay = write_overlay(package, names, workdir / f"{safe}.probe")
        if overlay is not None:
            try:
                binary = build_test_binary(package, workdir / f"{safe}.probe.test", overlay=overlay,
                                           tags=settings.tags, go_flags=settings.go_flags, env=build_env)
                probed = set(list_tests(binary, package.dir, "^" + WRAPPER_PREFIX))
            except GoBuildError as exc:
                notes.append(f"probe not built, figures taken at exit ({exc})")
    layout = None
    if settings.stacks != "off":
        try:
            layout = read_layout(binary).environment_value()
        except LayoutUnavailable as exc:
            notes.append(f"Go frames cannot be named: the test binary {exc}; leak sites show C frames only")
    targets = [BenchTarget(package, name, binary, wrapper_name(name) in probed, list(notes), layout)
               for name in names]
    for target in targets:
        if not target.probed and not notes:
            target.notes.append("probe could not wrap this benchmark: figures taken at exit")
    return targets, PackageOutcome(path, "audited", f"{len(targets)} benchmark(s)")


def audit_benchmarks(settings: BenchSettings, progress: Progress = lambda _: None) -> AuditReport:
    build_shim()  # fail early, with its own message, if the shim cannot be built
    packages = list_packages(settings.patterns, settings.directory, settings.tags, settings.go_flags)
    if not packages:
        raise AuditError(f"no Go packages match {' '.join(settings.patterns)} in {settings.directory}")
    results: list[BenchResult] = []
    outcomes: list[PackageOutcome] = []
    with tempfile.TemporaryDirectory(prefix="cgo-audit-build-") as work:
        for package in packages:
            progress(f"building {package.import_path}")
            targets, outcome = prepare_package(package, settings, Path(work))
            outcomes.append(outcome)
            for target in targets:
                results.append(measure(target, settings, progress))
    if not results:
        reasons = "; ".join(f"{o.import_path}: {o.status} ({o.detail})" for o in outcomes)
        raise AuditError(f"nothing to audit: {reasons}")
    return AuditReport(results=results, packages=outcomes, settings=settings.as_dict())
