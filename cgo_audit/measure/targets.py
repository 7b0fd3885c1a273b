"""What `bench` will run: the Go modules under a directory, each package's
test binary (built once, with the probe overlay), and its benchmarks, or
its tests when it has no benchmarks."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from cgo_audit.errors import AuditError
from cgo_audit.measure.shards import Shard
from cgo_audit.model import BENCH_LINE, SKIP_LINE, PackageOutcome
from cgo_audit.shim.build import build_static_shim, static_link_flags
from cgo_audit.toolchain.gotool import (
    GoBuildError,
    GoPackage,
    build_test_binary,
    cgo_compiler,
    has_cgo,
    link_info,
    list_tests,
)
from cgo_audit.toolchain.layout import LayoutUnavailable, read_layout
from cgo_audit.toolchain.modcache import in_module_cache, writable_copy
from cgo_audit.toolchain.platform import Platform, for_goarch, is_musl, shim_compiler_for
from cgo_audit.toolchain.probe import is_wrapper, locate_benchmarks, wrapper_name, write_overlay

BENCHMARK, TEST = "benchmark", "test"
SKIPPED_DIRS = {"vendor", "testdata", "node_modules"}


@dataclass
class BenchSettings:
    patterns: Sequence[str] = ("./...",)
    directory: Path = Path(".")
    nested_modules: bool = False            # also every module below directory
    bench_regex: str = "."
    sizes: Sequence[int] | None = None      # fixed -test.benchtime=Nx (or -test.count=N) values
    run_seconds: float = 0.4                # the largest run's target length
    max_n: int = 20_000_000
    max_growth_bytes: int = 256 << 20       # the largest run may grow memory this much
    max_extensions: int = 2                 # larger runs allowed when a shape is undecided
    run_timeout_s: float = 120.0
    tags: Sequence[str] = ()
    go_flags: Sequence[str] = ()
    probe: bool = True
    tests_when_no_benchmarks: bool = True
    only: str | None = None                 # "benchmark" or "test": audit only that kind
    stacks: str = "all"                     # allocation stacks: all, sampled or off
    sample_bytes: int = 512 * 1024          # sampled mode: mean bytes between samples
    sample_interval_s: float = 0.05
    jobs: int = os.cpu_count() or 1
    keep_work: bool = False
    goarch: str | None = None               # build for and run on this GOARCH (None: the host's)
    static_shim: Path | None = None         # link this shim archive in (a statically linked test binary)

    @property
    def platform(self) -> Platform:
        return for_goarch(self.goarch)
    shard: Shard | None = None              # audit only this shard's share of the packages
    shard_durations: dict[str, float] = field(default_factory=dict)   # seconds per package, to balance shards

    def as_dict(self) -> dict[str, object]:
        return {"patterns": list(self.patterns), "directory": str(self.directory),
                "bench": self.bench_regex, "sizes": list(self.sizes) if self.sizes else None,
                "run_seconds": self.run_seconds, "tags": list(self.tags), "probe": self.probe,
                "stacks": self.stacks, "jobs": self.jobs, "goarch": self.platform.goarch,
                **({"shard": str(self.shard)} if self.shard else {})}

    def build_env(self) -> dict[str, str]:
        """C and C++ compiled with frame pointers, so the stack walk can name
        their frames too."""
        env = self.platform.build_env()
        if self.static_shim is not None:
            env["CGO_LDFLAGS"] = f"{os.environ.get('CGO_LDFLAGS', '')} {static_link_flags(self.static_shim)}".strip()
        if self.stacks != "off":
            env.update({name: f"{os.environ.get(name, '-O2 -g')} -fno-omit-frame-pointer"
                        for name in ("CGO_CFLAGS", "CGO_CXXFLAGS")})
        return env


@dataclass
class BenchTarget:
    """One benchmark (or test), ready to run."""

    package: GoPackage
    name: str                         # BenchmarkX or TestX
    binary: Path
    probed: bool
    kind: str = BENCHMARK
    notes: list[str] = field(default_factory=list)
    go_layout: str | None = None      # CGO_AUDIT_GO_LAYOUT for the stack walk
    preloadable: bool = True          # dynamically linked: the shim can count its C heap
    sub: tuple[str, ...] = ()         # a sub-benchmark's path below the top-level one
    shim_cc: str | None = None        # the compiler of the shim it needs (musl-gcc for musl; None: default)

    @property
    def listed_name(self) -> str:
        return wrapper_name(self.name) if self.probed else self.name

    @property
    def full_name(self) -> str:
        return "/".join((self.name, *self.sub))

    @property
    def output_name(self) -> str:
        """The name the test binary prints for it (the probe renames it)."""
        return "/".join((self.listed_name, *self.sub))

    def pattern(self) -> str:
        """-test.bench (or -test.run) for exactly this target, one regex per level."""
        return "/".join(f"^{re.escape(part)}$" for part in (self.listed_name, *self.sub))

    def sub_benchmarks(self, output: str, pattern: str = ".") -> list["BenchTarget"]:
        """The sub-benchmarks a run's output shows below this one, if any,
        that the levels of pattern below the top one select."""
        if self.kind != BENCHMARK:
            return []
        prefix = self.output_name + "/"
        below = [re.compile(level) for level in split_levels(pattern)[1:]]
        found: list[tuple[str, ...]] = []
        # Sub-benchmarks that ran print a result line; those that skipped
        # themselves only a SKIP line (in a -test.v run).
        matches = sorted([*BENCH_LINE.finditer(output), *SKIP_LINE.finditer(output)], key=lambda m: m.start())
        for match in matches:
            if match.group(1).startswith(prefix):
                path = tuple(match.group(1)[len(prefix):].split("/"))
                if path not in found and all(level.search(part) for level, part in zip(below, path)):
                    found.append(path)
        return [replace(self, sub=(*self.sub, *path)) for path in found]


def split_levels(pattern: str) -> list[str]:
    """A -test.bench pattern split into one regex per level, as go test does:
    on each / outside brackets and parentheses ("A/B" is A, then B below it)."""
    levels, depth, current, escaped = [], 0, "", False
    for char in pattern:
        if escaped:
            current, escaped = current + char, False
            continue
        if char == "\\":
            escaped = True
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth = max(0, depth - 1)
        elif char == "/" and depth == 0:
            levels.append(current)
            current = ""
            continue
        current += char
    return [*levels, current]


def find_modules(directory: Path) -> list[Path]:
    """Every Go module at or below directory (vendor and testdata left out)."""
    modules = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith((".", "_")))
        if "go.mod" in files:
            modules.append(Path(root))
    return modules


def _safe(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", path)


def _build(package: GoPackage, settings: BenchSettings, output: Path, overlay: Path | None = None) -> Path:
    return build_test_binary(package, output, overlay=overlay, tags=settings.tags, go_flags=settings.go_flags,
                             env=settings.build_env())


def _listed(binary: Path, package: GoPackage, kind: str, settings: BenchSettings) -> list[str]:
    prefix = "Benchmark" if kind == BENCHMARK else "Test"
    return [name for name in list_tests(binary, package.dir, f"^{prefix}", launcher=settings.platform.launcher())
            if not is_wrapper(name)]


def _chosen(names: Sequence[str], settings: BenchSettings) -> tuple[str, list[str]]:
    """Benchmarks matching --bench (its top level); with none, the tests (when allowed)."""
    pattern = re.compile(split_levels(settings.bench_regex)[0])
    benchmarks = [n for n in names if n.startswith("Benchmark") and pattern.search(n)]
    if settings.only == BENCHMARK or (settings.only is None and (benchmarks or not settings.tests_when_no_benchmarks)):
        return BENCHMARK, benchmarks
    return TEST, [n for n in names if n.startswith("Test") and pattern.search(n)]


def _probed_build(package: GoPackage, settings: BenchSettings, workdir: Path, names: Sequence[str]
                  ) -> tuple[Path, set[str]] | str:
    """A binary with the probe wrapping names, or why there is none (Go's
    first error when the probed build fails)."""
    safe = _safe(package.import_path)
    overlay = write_overlay(package, names, workdir / f"{safe}.probe")
    if overlay is None:
        return "no benchmark or test could be located in the package's _test.go files"
    try:
        binary = _build(package, settings, workdir / f"{safe}.test", overlay)
    except GoBuildError as exc:
        return str(exc)
    listed = set(list_tests(binary, package.dir, "^(Benchmark|Test)_cgoaudit_",
                            launcher=settings.platform.launcher()))
    return binary, {n for n in names if wrapper_name(n) in listed}


def build_package(package: GoPackage, settings: BenchSettings, workdir: Path
                  ) -> tuple[Path, str, list[str], set[str], list[str]]:
    """The package's test binary, built once with the probe wrapping every
    benchmark and test its sources show (all of them, whatever --bench
    selects: then a new selection compiles nothing again, however much C the
    package has). If that does not build (a benchmark behind a build tag,
    say), the plain binary says which exist, and the probe is tried once more
    with just those. Returns the binary, the kind of target, their names,
    the ones the probe wraps, and notes."""
    if settings.probe:
        located = list(locate_benchmarks(package))
        built = _probed_build(package, settings, workdir, located) if located else None
        if isinstance(built, tuple):
            binary, wrapped = built
            listed = _listed(binary, package, BENCHMARK, settings) + _listed(binary, package, TEST, settings)
            kind, names = _chosen(listed, settings)
            return binary, kind, names, wrapped, []
    plain = _build(package, settings, workdir / f"{_safe(package.import_path)}.plain.test")
    existing = _listed(plain, package, BENCHMARK, settings) + _listed(plain, package, TEST, settings)
    kind, names = _chosen(existing, settings)
    if settings.probe and names:
        built = _probed_build(package, settings, workdir, existing)
        if isinstance(built, tuple):
            return built[0], kind, names, built[1], []
        return plain, kind, names, set(), [f"the probe did not build ({built}), so figures are taken at exit"]
    return plain, kind, names, set(), []


def prepare_package(package: GoPackage, settings: BenchSettings, workdir: Path
                    ) -> tuple[list[BenchTarget], PackageOutcome]:
    """A package's targets, and what became of it."""
    path = package.import_path
    if package.error:
        return [], PackageOutcome(path, "build-failed", package.error)
    if not package.has_tests:
        return [], PackageOutcome(path, "no-tests", "no _test.go files")
    copied = ""
    if settings.probe and in_module_cache(package):
        try:
            package = writable_copy(package)
            copied = f", built from a writable copy of the module cache's source at {package.module_dir}"
        except OSError as exc:
            copied = f", built from the module cache, where the probe cannot be added ({exc})"
    try:
        binary, kind, names, wrapped, notes = build_package(package, settings, workdir)
        link = link_info(binary)
        static_cgo = link.is_elf and not link.dynamic and has_cgo(binary)
        if static_cgo:
            # LD_PRELOAD cannot reach a static executable: build it again
            # with the shim linked in, as the C heap's allocator.
            archive = build_static_shim(cgo_compiler(package.dir, settings.build_env()))
            binary, kind, names, wrapped, notes = build_package(package, replace(settings, static_shim=archive),
                                                                workdir)
            notes.append("statically linked with cgo: cgo-audit linked its shim into the test binary "
                         "(ld --wrap for each allocator entry point), since LD_PRELOAD cannot reach it")
    except GoBuildError as exc:
        return [], PackageOutcome(path, "build-failed", str(exc))
    except AuditError as exc:
        return [], PackageOutcome(path, "build-failed", str(exc))
    if not names:
        return [], PackageOutcome(path, "no-benchmarks", f"nothing matches {settings.bench_regex!r}")
    layout = None
    if not link.dynamic and not static_cgo:
        notes.append("no cgo: the test binary is statically linked, so LD_PRELOAD cannot reach it, and has no "
                     "C code: its C heap is not measured, as it cannot leak from Go code; the other causes are "
                     "still checked")
    else:
        try:
            read = read_layout(binary)
            layout = read.environment_value()
            if not read.dwarf and settings.stacks != "off":
                notes.append(f"the test binary has no DWARF: the runtime's offsets for the stack walk are "
                             f"{read.source}'s, from cgo-audit's table")
        except LayoutUnavailable as exc:
            if settings.stacks != "off":
                notes.append(f"Go frames cannot be named: the test binary {exc}; leak sites show C frames only")
    platform_note = settings.platform.note()
    if platform_note:
        notes.append(platform_note)
    if kind == TEST and settings.only != TEST:
        notes.append("no benchmarks: audited by running this test at several -test.count values")
    try:
        shim_cc = shim_compiler_for(settings.platform, link.interpreter)
    except AuditError as exc:
        return [], PackageOutcome(path, "build-failed", str(exc))
    if is_musl(link.interpreter):
        notes.append(f"linked against musl ({link.interpreter}): the shim is built with {shim_cc}")
    targets = [BenchTarget(package, name, binary, name in wrapped, kind, list(notes), layout,
                           link.dynamic or static_cgo, shim_cc=shim_cc) for name in names]
    for target in targets:
        if settings.probe and not target.probed and not any("probe" in n for n in notes):
            target.notes.append("the probe could not wrap this one: figures are taken at exit")
    linkage = "" if link.dynamic else ", static, shim linked in" if static_cgo else ", no cgo"
    detail = f"{len(targets)} {kind}(s)" + linkage + copied
    return targets, PackageOutcome(path, "audited", detail)
