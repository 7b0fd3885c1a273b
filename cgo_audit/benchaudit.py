"""`cgo-audit bench`: builds each package's test binary (with the probe
overlay), runs every benchmark at several sizes under the shim, and fits
growth per operation."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from cgo_audit import analysis
from cgo_audit.errors import AuditError
from cgo_audit.gotool import GoBuildError, GoPackage, build_test_binary, link_info, list_packages, list_tests
from cgo_audit.model import AuditReport, BenchResult, PackageOutcome, RunPoint, point_from_run
from cgo_audit.probe import WRAPPER_PREFIX, write_overlay, wrapper_name
from cgo_audit.runner import ShimSession, run_target
from cgo_audit.shimbuild import build_shim


@dataclass
class BenchSettings:
    patterns: Sequence[str] = ("./...",)
    directory: Path = Path(".")
    bench_regex: str = "."
    sizes: Sequence[int] | None = None      # fixed -test.benchtime=Nx values
    run_seconds: float = 0.4                # the largest run's target length
    max_n: int = 20_000_000
    max_extensions: int = 2                 # larger runs allowed when a shape is undecided
    run_timeout_s: float = 120.0
    tags: Sequence[str] = ()
    go_flags: Sequence[str] = ()
    probe: bool = True
    sample_interval_s: float = 0.05
    keep_work: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"patterns": list(self.patterns), "directory": str(self.directory),
                "bench": self.bench_regex, "sizes": list(self.sizes) if self.sizes else None,
                "run_seconds": self.run_seconds, "tags": list(self.tags), "probe": self.probe}


Progress = Callable[[str], None]


@dataclass
class BenchTarget:
    """One benchmark, ready to run."""

    package: GoPackage
    name: str
    binary: Path
    probed: bool
    notes: list[str] = field(default_factory=list)

    @property
    def listed_name(self) -> str:
        return wrapper_name(self.name) if self.probed else self.name


def run_benchmark_once(target: BenchTarget, n: int, settings: BenchSettings) -> RunPoint:
    """One process: -test.benchtime=Nx under the shim."""
    godebug = ",".join(part for part in (os.environ.get("GODEBUG", ""), "gctrace=1") if part)
    argv = [str(target.binary), "-test.run=^$", f"-test.bench=^{re.escape(target.listed_name)}$",
            f"-test.benchtime={n}x", "-test.benchmem", "-test.count=1",
            f"-test.timeout={int(settings.run_timeout_s) + 60}s"]
    with ShimSession(build_shim(), keep=settings.keep_work) as session:
        record = run_target(argv, session, cwd=target.package.dir, env_extra={"GODEBUG": godebug},
                            timeout_s=settings.run_timeout_s, probe=target.probed,
                            sample_interval_s=settings.sample_interval_s)
    return point_from_run(record, n, target.name)


def planned_sizes(ns_per_op: float, settings: BenchSettings) -> list[int]:
    """Four sizes, doubling up to one that runs about settings.run_seconds."""
    largest = int(settings.run_seconds * 1e9 / max(ns_per_op, 1.0))
    largest = max(16, min(settings.max_n, largest))
    return sorted({max(2, largest >> shift) for shift in (3, 2, 1, 0)})


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

    def run(n: int) -> RunPoint:
        progress(f"{target.package.import_path} {target.name} {n}x")
        point = run_benchmark_once(target, n, settings)
        points.append(point)
        return point

    def failed(point: RunPoint) -> BenchResult:
        growth, verdicts = analyse(points)
        detail = _failure_detail(point)
        return BenchResult(target.package.import_path, target.name, verdicts, growth, points,
                           notes=target.notes, error=f"the benchmark {point.status}{detail}")

    if settings.sizes:
        sizes = sorted(set(settings.sizes))
    else:
        first = run(1)
        if not first.ok:
            return failed(first)
        probe_n = max(2, min(settings.max_n, int(0.05e9 / max(first.ns_per_op or first.elapsed_s * 1e9, 1.0))))
        second = run(probe_n)
        if not second.ok:
            return failed(second)
        sizes = [n for n in planned_sizes(second.ns_per_op or 1e6, settings) if n != probe_n]
    for n in sizes:
        point = run(n)
        if not point.ok:
            return failed(point)
    growth, verdicts = analyse(points)
    extensions = 0
    while verdicts.undecided and extensions < settings.max_extensions and not settings.sizes:
        # Like psleak's retries: grow the runs until the shape is clear.
        largest = max(p.n for p in points)
        point = run(min(settings.max_n * 4, largest * 2))
        if not point.ok:
            return failed(point)
        growth, verdicts = analyse(points)
        extensions += 1
    notes = list(target.notes)
    if verdicts.undecided:
        notes.append("undecided after the largest runs: " + ", ".join(verdicts.undecided))
    return BenchResult(target.package.import_path, target.name, verdicts, growth, points, notes=notes)


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
    try:
        plain = build_test_binary(package, workdir / f"{safe}.test", tags=settings.tags,
                                  go_flags=settings.go_flags)
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
                                           tags=settings.tags, go_flags=settings.go_flags)
                probed = set(list_tests(binary, package.dir, "^" + WRAPPER_PREFIX))
            except GoBuildError as exc:
                notes.append(f"probe not built, figures taken at exit ({exc})")
    targets = [BenchTarget(package, name, binary, wrapper_name(name) in probed, list(notes)) for name in names]
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
