"""The audit's data model: what one run measured, and what one benchmark (or
program) came to. Every reporter reads these and nothing else."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from cgo_audit.measure.runner import RunRecord, Snapshot
from cgo_audit.measure.sampler import ExecutableMapping
from cgo_audit.shim.region import StackRecord
from cgo_audit.toolchain.gctrace import parse_gctrace
from cgo_audit.verdicts.analysis import C_ALLOCS, C_BYTES, C_HEAP_NOT_MEASURED, Growth, Verdicts
from cgo_audit.verdicts.sites import Site, stack_deltas
from cgo_audit.verdicts.symbolize import Symbolizer

GO_HEAP_LIVE = "/gc/heap/live:bytes"
GO_GOROUTINES = "/sched/goroutines:goroutines"
GO_CGO_CALLS = "/cgo/go-to-c-calls:calls"
GO_FINALIZERS_RUN = "/gc/finalizers/executed:finalizers"
GO_MAPPED = "/memory/classes/total:bytes"

BENCH_LINE = re.compile(r"^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+([\d.]+) ns/op", re.M)
# What `-test.v` prints when a test or benchmark calls Skip: its log lines
# (indented "file.go:N: message"), then this line.
SKIP_LINE = re.compile(r"^\s*--- SKIP: (\S+)", re.M)


def skipped_names(output: str) -> dict[str, str]:
    """Test and benchmark names that skipped themselves in a -test.v run,
    each with the last message it logged before skipping ("" if none)."""
    found: dict[str, str] = {}
    lines = output.splitlines()
    for index, line in enumerate(lines):
        match = SKIP_LINE.match(line)
        if not match:
            continue
        reason = ""
        if index > 0 and re.match(r"^\s+\S+\.go:\d+: ", lines[index - 1]):
            reason = lines[index - 1].strip().split(": ", 1)[1]
        found.setdefault(match.group(1), reason)
    return found


@dataclass
class RunPoint:
    """One run of a benchmark at one size: growth inside the run when the
    probe saw it (before the first round to after the last), else the
    process's figures at exit."""

    n: int                          # -test.benchtime=Nx
    ops: int                        # operations between the two snapshots
    source: str                     # "probe" or "exit"
    c_bytes: int | None             # None: the shim could not reach it (no cgo)
    c_allocs: int | None
    go_heap_bytes: int | None
    goroutines: int | None
    fds: int | None
    sockets: int | None
    threads: int | None
    rss_bytes: int | None
    c_peak_bytes: int | None
    go_mapped_bytes: int | None
    cgo_calls: int | None
    finalizers_run: int | None
    elapsed_s: float
    ns_per_op: float | None
    status: str                     # how the process ended
    ok: bool
    record: RunRecord | None = field(default=None, repr=False, compare=False)
    # Growth per allocation stack over the same window (empty with stacks off).
    stacks: dict[tuple[int, ...], tuple[StackRecord, int, int]] = field(default_factory=dict, repr=False)
    live_stacks: list[StackRecord] = field(default_factory=list, repr=False)   # all live at the end
    maps: list[ExecutableMapping] = field(default_factory=list, repr=False)
    # The most fds the process held at once, absolute: what RLIMIT_NOFILE caps.
    fds_peak: int | None = None

    def as_sample(self) -> dict[str, Any]:
        return {
            "n": self.n, "ops": self.ops, "source": self.source,
            "c_live_bytes": self.c_bytes, "c_live_allocs": self.c_allocs,
            "go_heap_live_bytes": self.go_heap_bytes, "goroutines": self.goroutines,
            "fds": self.fds, "sockets": self.sockets, "threads": self.threads,
            "rss_bytes": self.rss_bytes, "c_peak_bytes": self.c_peak_bytes,
            "go_mapped_bytes": self.go_mapped_bytes, "cgo_calls": self.cgo_calls,
            "finalizers_run": self.finalizers_run, "elapsed_s": round(self.elapsed_s, 4),
            "ns_per_op": self.ns_per_op, "status": self.status, "ok": self.ok, "fds_peak": self.fds_peak,
        }


def _delta(first: Snapshot, last: Snapshot, key: str) -> int | None:
    if key in first.go and key in last.go:
        return last.go[key] - first.go[key]
    return None


def _fds_peak(record: RunRecord) -> int | None:
    seen = [s.num_fds for s in record.samples] + [s.process.num_fds for s in record.snapshots if s.process]
    return max(seen) if seen else None


def point_from_run(record: RunRecord, n: int, bench: str) -> RunPoint:
    """The figures of one benchmark run, from its probe snapshots if complete."""
    point = _point_from_run(record, n, bench)
    point.fds_peak = _fds_peak(record)
    return point


def _point_from_run(record: RunRecord, n: int, bench: str) -> RunPoint:
    mine = [s for s in record.snapshots if s.bench == bench]
    befores = [s for s in mine if s.label == "before"]
    afters = [s for s in mine if s.label == "after"]
    ns_per_op = None
    for match in BENCH_LINE.finditer(record.stdout):
        ns_per_op = float(match.group(3))
    failed = "--- FAIL" in record.stdout or record.returncode not in (0, None) or record.timed_out
    status = record.exit_description()
    # A complete run pairs every "before" with an "after"; a run that died
    # mid-round reports what it held when it died (the exit figures).
    if not failed and befores and len(afters) == len(befores):
        first, last = befores[0], afters[-1]
        ops = max(sum(int(s.n or 0) for s in afters), n)
        c_heap = first.c_heap is not None and last.c_heap is not None
        return RunPoint(
            n=n, ops=ops, source="probe",
            c_bytes=last.c_heap.user_live_bytes - first.c_heap.user_live_bytes if c_heap else None,  # type: ignore[union-attr]
            c_allocs=last.c_heap.user_live_allocs - first.c_heap.user_live_allocs if c_heap else None,  # type: ignore[union-attr]
            go_heap_bytes=_delta(first, last, GO_HEAP_LIVE),
            goroutines=_delta(first, last, GO_GOROUTINES),
            fds=_process_delta(first, last, "num_fds"), sockets=_process_delta(first, last, "num_sockets"),
            threads=_process_delta(first, last, "num_threads"),
            rss_bytes=(last.process.target_rss_bytes - first.process.target_rss_bytes
                       if first.process and last.process else None),
            c_peak_bytes=last.c_heap.peak_live_bytes - first.c_heap.peak_live_bytes if c_heap else None,  # type: ignore[union-attr]
            go_mapped_bytes=_delta(first, last, GO_MAPPED),
            cgo_calls=_delta(first, last, GO_CGO_CALLS), finalizers_run=_delta(first, last, GO_FINALIZERS_RUN),
            elapsed_s=record.elapsed_s, ns_per_op=ns_per_op, status=status, ok=True, record=record,
            stacks=stack_deltas(first.stacks or [], last.stacks or []), live_stacks=last.stacks or [],
            maps=record.maps)
    cheap = record.final_c_heap
    cycles = parse_gctrace(record.stderr)
    last_sample = record.samples[-1] if record.samples else None
    return RunPoint(
        n=n, ops=n, source="exit",
        c_bytes=cheap.user_live_bytes if cheap else None, c_allocs=cheap.user_live_allocs if cheap else None,
        go_heap_bytes=cycles[-1].heap_live_bytes if cycles else None, goroutines=None,
        fds=last_sample.num_fds if last_sample else None,
        sockets=last_sample.num_sockets if last_sample else None,
        threads=last_sample.num_threads if last_sample else None,
        rss_bytes=record.maxrss_bytes or None, c_peak_bytes=cheap.peak_live_bytes if cheap else None,
        go_mapped_bytes=None, cgo_calls=None, finalizers_run=None,
        elapsed_s=record.elapsed_s, ns_per_op=ns_per_op, status=status, ok=not failed, record=record,
        stacks=stack_deltas([], record.final_stacks), live_stacks=record.final_stacks, maps=record.maps)


def comparable(points: Sequence[RunPoint]) -> list[RunPoint]:
    """Runs that finished, all measured the same way (probe deltas and exit
    figures cannot share one fit)."""
    done = [p for p in points if p.ok]
    probed = [p for p in done if p.source == "probe"]
    return probed if len(probed) >= max(2, len(done) - 1) else [p for p in done if p.source == "exit"]


def _process_delta(first: Snapshot, last: Snapshot, name: str) -> int | None:
    if first.process is None or last.process is None:
        return None
    return int(getattr(last.process, name)) - int(getattr(first.process, name))


@dataclass(kw_only=True)
class Findings:
    """What an audit concluded about one benchmark or program: every
    reporter reads this part."""

    verdicts: Verdicts
    growth: dict[str, Growth]
    notes: list[str] = field(default_factory=list)
    accepted_by_baseline: bool = False
    within_threshold: bool = False  # a byte leak under --max-leak-bytes-per-op
    error: str | None = None        # the audit could not finish
    skipped: str | None = None      # the benchmark or test skipped itself (its reason)
    sites: list[Site] = field(default_factory=list)
    runtime_c_bytes_per_op: float = 0.0   # the runtime's own C allocations, left out of sites
    sample_period_bytes: int = 0          # > 0: sites are estimates from sampled stacks
    # Metrics that apply to this target but were not measured (their keys):
    # reported as not measured, never as flat.
    unmeasured: tuple[str, ...] = ()
    symbolizer: Symbolizer | None = field(default=None, repr=False)  # frames of every stack measured

    @property
    def verdict(self) -> str:
        if self.error:
            return "error"
        return "skipped" if self.skipped is not None else self.verdicts.main

    def per_op(self, key: str) -> float:
        """Growth per op of a metric (0 when it did not apply or was not fitted)."""
        growth = self.growth.get(key)
        return growth.per_op if growth else 0.0

    def measured_per_op(self, key: str) -> float | None:
        """Growth per op of a metric, None when it applies but was not measured."""
        c_heap_missing = C_HEAP_NOT_MEASURED in self.verdicts.all and key in (C_BYTES.key, C_ALLOCS.key)
        if key not in self.growth and (key in self.unmeasured or c_heap_missing):
            return None
        return self.per_op(key)

    @property
    def is_leak(self) -> bool:
        return self.error is None and self.skipped is None and self.verdicts.is_leak

    @property
    def is_incomplete(self) -> bool:
        """No leak found, but not enough evidence to say clean (exit 2)."""
        return self.error is None and self.skipped is None and self.verdicts.is_incomplete

    @property
    def is_new_leak(self) -> bool:
        """A leak that should fail CI: neither accepted nor under the threshold."""
        return self.is_leak and not self.accepted_by_baseline and not self.within_threshold


@dataclass(kw_only=True)
class BenchResult(Findings):
    """What one benchmark came to."""

    package: str
    name: str
    points: list[RunPoint]

    @property
    def duration_s(self) -> float:
        """Seconds its runs took (what a later --shard split weighs)."""
        return sum(point.elapsed_s for point in self.points)


@dataclass
class PackageOutcome:
    """Why a package produced the results it did (or none)."""

    import_path: str
    status: str                     # "audited", "no-benchmarks", "no-cgo", "build-failed", ...
    detail: str = ""
    duration_s: float = 0.0         # building it and running its benchmarks, one after another


@dataclass
class AuditReport:
    results: list[BenchResult]
    packages: list[PackageOutcome]
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProgramSample:
    """One reading of the running program."""

    time_s: float
    ops: int | None                # requests completed by --load, when there is one
    c_bytes: int | None
    c_allocs: int | None
    c_peak_bytes: int | None
    rss_bytes: int
    fds: int
    sockets: int
    threads: int
    goroutines: int | None
    go_heap_bytes: int | None
    go_stamp: float | None = None  # requests or seconds when the Go side was read (it lags)
    incarnation: int = 0           # which start of the program (restarts after an OOM kill)
    vms_bytes: int | None = None   # virtual size (RLIMIT_AS limits it)
    c_untracked: int | None = None # allocations the shim's full side table could not count
    pid: int | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(kw_only=True)
class ProgramResult(Findings):
    argv: list[str]
    per: str                       # what an "op" is: "request" (with --load) or "second"
    samples: list[ProgramSample]
    record: RunRecord | None = field(default=None, repr=False)   # the start the verdict comes from
    missing: list[str] = field(default_factory=list)   # figures not measured, and why
    ends: list[str] = field(default_factory=list)       # how each start of the program ended
    samples_seen: int = 0          # samples taken in all (samples keeps a bounded, evenly thinned part)

    @property
    def name(self) -> str:
        return " ".join(self.argv)
