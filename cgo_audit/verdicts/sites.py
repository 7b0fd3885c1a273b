"""Allocation sites: symbolized stacks made readable (cgo trampolines folded
into one `C.<name>` frame), told apart from the runtime's own allocations,
and measured per operation."""

from __future__ import annotations

import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

from cgo_audit.errors import AuditError
from cgo_audit.measure.sampler import ExecutableMapping
from cgo_audit.shim.region import StackRecord
from cgo_audit.toolchain.gotool import go_executable
from cgo_audit.verdicts import analysis
from cgo_audit.verdicts.symbolize import Frame, Symbolizer

# Frames that only carry a cgo call across the boundary.
_GO_TRAMPOLINE = re.compile(
    r"^(runtime\.(cgocall|asmcgocall|asmcgocall_landingpad|systemstack|systemstack_switch|cgocallbackg1?|"
    r"cgocallback|cgoCheck\w*|unlockOSThread|lockOSThread)(\.abi0)?|.*\._cgo_cmalloc(\.abi0)?|"
    r".*\._Cfunc_.*|.*\._cgoexp_.*|.*\._Cgo_.*)$")
_C_WRAPPER = re.compile(r"^_cgo_[0-9a-f]+_C(?:2)?func_(\w+)$")
_GO_CFUNC = re.compile(r"\._Cfunc_(\w+?)(?:\.abi0)?$")
_CGO_NAMES = {"_CMalloc": "malloc", "_Cmalloc": "malloc"}
# Packages whose frames are never the user's.
_RUNTIME_GO = re.compile(r"^(runtime|internal|testing|sync|syscall|os/signal)([./]|$)")
_RUNTIME_C_FILES = re.compile(r"(/runtime/cgo/|gcc_\w+\.c$|_cgo_export\.c$|_cgo_main\.c$)")
_LIB = re.compile(r"/(libc|libpthread|ld-linux[\w-]*|libstdc\+\+|libgcc_s)[.\w-]*\.so")
# The probe's own wrapper: never a user frame.
_PROBE = re.compile(r"Benchmark_cgoaudit_|cgoAudit")


def cgo_name(function: str) -> tuple[str, bool] | None:
    """(C.<name>, from the Go side) for a cgo trampoline that names the C
    function it calls. The Go side (_Cfunc_X) is what the user wrote."""
    for pattern, go_side in ((_GO_CFUNC, True), (_C_WRAPPER, False)):
        match = pattern.search(function)
        if match:
            name = match.group(1)
            return "C." + _CGO_NAMES.get(name, name), go_side
    return None


def short_function(function: str) -> str:
    """pkg.Func for github.com/x/y/pkg.Func."""
    return function.rsplit("/", 1)[-1]


def _is_trampoline(frame: Frame) -> bool:
    return bool(_GO_TRAMPOLINE.match(frame.function) or _C_WRAPPER.match(frame.function))


def _is_program_go(frame: Frame) -> bool:
    """Go code of the program or the standard library, not the runtime's."""
    return frame.is_go and not _RUNTIME_GO.match(frame.function) and not _PROBE.search(frame.function)


def _is_user_go(frame: Frame) -> bool:
    """The program's own Go code (not the standard library)."""
    return _is_program_go(frame) and not _in_goroot(frame.file)


@lru_cache(maxsize=1)
def _goroot_src() -> tuple[str, ...]:
    roots = ["$GOROOT/src/", "/_/GOROOT/src/"]
    try:
        goroot = subprocess.run([go_executable(), "env", "GOROOT"], capture_output=True, text=True,
                                timeout=30).stdout.strip()
        if goroot:
            roots.append(os.path.join(goroot, "src") + os.sep)
    except (AuditError, OSError, subprocess.SubprocessError):
        pass
    return tuple(roots)


def _in_goroot(path: str) -> bool:
    return path.startswith(_goroot_src())


def _is_user_c(frame: Frame) -> bool:
    return (not frame.is_go and frame.function != "??" and not _LIB.search(frame.module)
            and not _RUNTIME_C_FILES.search(frame.file) and not frame.function.startswith(("x_cgo_", "_cgo_")))


@dataclass(frozen=True)
class SiteKey:
    """What makes two stacks the same site for a reader."""

    function: str        # the Go function that called into C (or the C function, for C-only stacks)
    file: str
    line: int
    c_function: str      # the C function called: C.CString, C.helper, or a C frame
    c_stack: tuple[str, ...]  # C frames below it, innermost first (e.g. strdup)
    call_pc: int         # the call's address in its module: two calls on one line differ here
    via: str = ""        # the dependency's function that made the cgo call, when it is not the user's
    inlined_into: str = ""  # the function the compiler inlined `function` into, as go tool pprof shows it

    def label(self) -> str:
        below = f" -> {' -> '.join(reversed(self.c_stack))}" if self.c_stack else ""
        via = f" (via {short_function(self.via)})" if self.via else ""
        inlined = f" (inlined into {short_function(self.inlined_into)})" if self.inlined_into else ""
        return f"{short_function(self.function)} {self.where}{inlined}  {self.c_function}{below}{via}"

    @property
    def where(self) -> str:
        return f"{self.file.rsplit('/', 1)[-1]}:{self.line}" if self.file else "?"


@dataclass(frozen=True)
class ShownFrame:
    """A frame as a reader sees it: a real frame, or a folded cgo call."""

    function: str
    file: str
    line: int
    inlined: bool
    address: int
    module: str

    def __str__(self) -> str:
        if not self.file:
            return short_function(self.function)
        tag = " (inlined)" if self.inlined else ""
        return f"{short_function(self.function)} {self.file.rsplit('/', 1)[-1]}:{self.line}{tag}"


@dataclass
class ReadableStack:
    key: SiteKey | None        # None: the runtime's own allocation
    frames: list[ShownFrame]   # innermost first
    created_by: str | None = None


def readable(record: StackRecord, symbolizer: Symbolizer, home: str | None = None) -> ReadableStack:
    """Folds a stack's trampolines and finds its user frame: the innermost in
    home (the audited module's directory) when given, so that a leak inside
    a dependency (a driver's cgo call) is named at the user's line that
    reached it, and the dependency's frame is kept as the route."""
    expanded: list[Frame] = []
    raw = list(record.frames)
    gopc = raw.pop() if record.ends_with_go_statement else None
    for pc in raw:
        expanded.extend(symbolizer.frames(pc))
    shown: list[ShownFrame] = []
    c_call: str | None = None
    c_below: list[str] = []
    user: Frame | None = None
    home_frame: Frame | None = None   # the first frame in the audited module
    library: Frame | None = None  # the first standard-library frame, if no user frame comes
    user_c: Frame | None = None
    folding = False
    c_done = False                # past the cgo call: frames above it are Go
    for frame in expanded:
        if _PROBE.search(frame.function):
            continue  # the probe's wrapper around the user's benchmark
        if _is_trampoline(frame):
            named = cgo_name(frame.function)
            if named and (c_call is None or named[1]):
                c_call = named[0]  # the outermost Go-side name wins
            call = ShownFrame(c_call or "C.<call>", "", 0, False, frame.address, frame.module)
            if folding:
                shown[-1] = call
            else:
                shown.append(call)
                folding = True
            continue
        if folding and c_call is not None:
            c_done = True
        folding = False
        shown.append(ShownFrame(frame.function, frame.file, frame.line, frame.inlined, frame.address, frame.module))
        if not c_done and not frame.is_go:
            if _is_user_c(frame) and user_c is None:
                user_c = frame
            elif user_c is None and frame.function != "??":
                c_below.append(frame.function)
        if user is None and _is_user_go(frame):
            user = frame
        if home_frame is None and home and _is_user_go(frame) and frame.file.startswith(home):
            home_frame = frame
        if library is None and _is_program_go(frame):
            library = frame
    created_by = None
    if gopc is not None:
        # Only a user's go statement says something: benchmarks always run in
        # goroutines the testing package starts.
        origin = next((f for f in symbolizer.frames(gopc) if _is_user_go(f)), None)
        if origin is not None:
            created_by = f"{short_function(origin.function)} {origin.where}"
    if user is None and user_c is None and library is None:
        return ReadableStack(None, shown, created_by)
    via = ""
    if home_frame is not None and user is not None and home_frame is not user:
        via, user = user.function, home_frame
    anchor = user or user_c or library
    assert anchor is not None
    c_function = c_call or (user_c.function if user_c else "C.<call>")
    if user_c is not None and c_call is not None and user_c.function != c_call[2:]:
        c_below.insert(0, user_c.function)
    function, inlined_into = source_function(expanded, anchor)
    key = SiteKey(function, anchor.file, anchor.line, c_function, tuple(c_below), anchor.file_address, via,
                  inlined_into)
    return ReadableStack(key, shown, created_by)


# The last component of a closure's name: Go names closures Outer.func1, and
# those of an inlined function Caller.Inlined.Caller.Inlined.1.2 (Go 1.22).
_CLOSURE = re.compile(r"\.(func\d+|\d+)$")


def source_function(expanded: Sequence[Frame], anchor: Frame) -> tuple[str, str]:
    """The function a reader wrote, as go tool pprof names it, and what the
    compiler inlined it into ("" if nothing). A closure inlined into the
    function it was written in (cgo wraps each C call in one; so do users)
    is named after that function: its generated name is no name a reader
    wrote. The line stays the closure's own."""
    if anchor not in expanded:
        return anchor.function, ""
    index = expanded.index(anchor)
    frame = anchor
    while frame.inlined and _CLOSURE.search(frame.function) and index + 1 < len(expanded):
        outer = expanded[index + 1]
        outer_short = short_function(outer.function).split(".", 1)[-1]
        if f".{outer_short}." not in f".{short_function(frame.function).split('.', 1)[-1]}.":
            break
        index, frame = index + 1, outer
    inlined_into = expanded[index + 1].function if frame.inlined and index + 1 < len(expanded) else ""
    return frame.function, inlined_into


@dataclass
class Site:
    """One leak site and its growth per operation."""

    key: SiteKey
    bytes_per_op: float
    allocs_per_op: float
    shape: str
    stack: list[ShownFrame] = field(default_factory=list)
    created_by: str | None = None
    call: int = 0        # n-th such call on its line (by address), when there are several
    # With sampled stacks: half the width of an approximate 95% interval of
    # bytes_per_op (sampling_error); None when every allocation was counted.
    error_bytes_per_op: float | None = None

    def label(self) -> str:
        label = self.key.label()
        if self.call:
            function, rest = label.split(" ", 1)
            where, _, tail = rest.partition("  ")
            label = f"{function} {where} (call {self.call})  {tail}"
        return label

    def as_dict(self) -> dict[str, object]:
        return {"function": self.key.function, "file": self.key.file, "line": self.key.line,
                "call": self.call, "call_pc": f"0x{self.key.call_pc:x}", "via": self.key.via or None,
                "c_function": self.key.c_function, "c_stack": list(self.key.c_stack),
                "bytes_per_op": self.bytes_per_op, "allocs_per_op": self.allocs_per_op, "shape": self.shape,
                "created_by": self.created_by, "stack": [str(frame) for frame in self.stack],
                "error_bytes_per_op": self.error_bytes_per_op}


def unsample(bytes_: int, allocs: int, period: int) -> tuple[float, float]:
    """Estimated true figures from sampled ones (Go's heap profile scaling)."""
    if period <= 0 or allocs <= 0 or bytes_ <= 0:
        return float(bytes_), float(allocs)
    scale = 1.0 / (1.0 - math.exp(-(bytes_ / allocs) / period))
    return bytes_ * scale, allocs * scale


def sampling_error(per_op: float, sampled_blocks: int, mean_block_bytes: float, period: int) -> float:
    """Half the width of an approximate 95% interval of a figure estimated
    from sampled_blocks blocks, each sampled with probability
    p = 1 - exp(-size/period) (Go's heap profile sampling): the count of
    sampled blocks is binomial, so the estimate's relative standard error is
    sqrt((1 - p) / k). With no sampled block behind it, the figure is all
    error."""
    if sampled_blocks <= 0 or mean_block_bytes <= 0 or period <= 0:
        return abs(per_op)
    p = 1.0 - math.exp(-mean_block_bytes / period)
    return 1.96 * abs(per_op) * math.sqrt((1.0 - p) / sampled_blocks)


def stack_deltas(before: Sequence[StackRecord], after: Sequence[StackRecord]
                 ) -> dict[tuple[int, ...], tuple[StackRecord, int, int]]:
    """Per stack: growth of live bytes and allocations from before to after."""
    start = {(r.frames, r.ends_with_go_statement): r for r in before}
    deltas = {}
    for record in after:
        old = start.get((record.frames, record.ends_with_go_statement))
        grown = record.live_bytes - (old.live_bytes if old else 0)
        allocs = record.live_allocs - (old.live_allocs if old else 0)
        if grown or allocs:
            deltas[record.frames] = (record, grown, allocs)
    return deltas


@dataclass(frozen=True)
class RunStacks:
    """What one run contributes to sites: its size, stack growth, mappings."""

    ops: int
    deltas: Mapping[tuple[int, ...], tuple[StackRecord, int, int]]
    maps: Sequence[ExecutableMapping]


@dataclass
class _Tally:
    """One run's growth, grouped by site."""

    by_site: dict[SiteKey, list[float]] = field(default_factory=dict)   # [bytes, allocs]
    sampled: dict[SiteKey, int] = field(default_factory=dict)   # blocks actually sampled (before scaling up)
    shown: dict[SiteKey, ReadableStack] = field(default_factory=dict)
    runtime_bytes: float = 0.0


def _tally(run: RunStacks, symbolizer: Symbolizer, sample_period: int, home: str | None) -> _Tally:
    local = symbolizer.for_process(run.maps)
    local.symbolize(pc for frames in run.deltas for pc in frames)
    tally = _Tally()
    for record, grown, allocs in run.deltas.values():
        stack = readable(record, local, home)
        est_bytes, est_allocs = unsample(grown, allocs, sample_period)
        if stack.key is None:
            tally.runtime_bytes += est_bytes
            continue
        totals = tally.by_site.setdefault(stack.key, [0.0, 0.0])
        totals[0] += est_bytes
        totals[1] += est_allocs
        tally.sampled[stack.key] = tally.sampled.get(stack.key, 0) + allocs
        tally.shown.setdefault(stack.key, stack)
    return tally


def measure_sites(runs: Sequence[RunStacks], symbolizer: Symbolizer, sample_period: int = 0,
                  home: str | None = None) -> tuple[list[Site], float]:
    """Sites that grow across runs, largest first, and the runtime's own
    growth per op. Each run is symbolized with its own mappings (libraries
    move between runs), all sharing symbolizer's cache."""
    tallies = [_tally(run, symbolizer, sample_period, home) for run in runs]
    xs = [run.ops for run in runs]
    shown: dict[SiteKey, ReadableStack] = {}
    for tally in tallies:
        for key, stack in tally.shown.items():
            shown.setdefault(key, stack)
    sites = []
    for key in shown:
        ys = [t.by_site.get(key, [0.0, 0.0])[0] for t in tallies]
        allocs = [t.by_site.get(key, [0.0, 0.0])[1] for t in tallies]
        growth = analysis.classify(analysis.C_BYTES, xs, ys)
        count_growth = analysis.classify(analysis.C_ALLOCS, xs, allocs)
        if growth.leaking or count_growth.leaking:
            error = None
            if sample_period:
                # The per-op figure is the tail's slope (the last three points):
                # its sampled blocks are those that arrived over that stretch.
                tail = [t.sampled.get(key, 0) for t in tallies[-3:]]
                mean_block = ys[-1] / allocs[-1] if allocs[-1] > 0 else 0.0
                error = sampling_error(growth.per_op, tail[-1] - tail[0], mean_block, sample_period)
            sites.append(Site(key, growth.per_op, count_growth.per_op, growth.shape, shown[key].frames,
                              shown[key].created_by, error_bytes_per_op=error))
    number_calls(sites)
    sites.sort(key=lambda s: (-s.bytes_per_op, -s.allocs_per_op, s.label()))
    runtime_growth = analysis.classify(analysis.C_BYTES, xs, [t.runtime_bytes for t in tallies])
    return sites, runtime_growth.per_op


def sites_over_window(run: RunStacks, symbolizer: Symbolizer, sample_period: int = 0,
                      min_bytes: float = 64, home: str | None = None) -> list[Site]:
    """Sites that grew over one window of a long-running program, per op
    (run.ops is the operations in the window), largest first."""
    tally = _tally(run, symbolizer, sample_period, home)
    ops = max(run.ops, 1)
    sites = [Site(key, grown / ops, allocs / ops, "window", tally.shown[key].frames, tally.shown[key].created_by)
             for key, (grown, allocs) in tally.by_site.items() if grown >= min_bytes]
    number_calls(sites)
    sites.sort(key=lambda s: (-s.bytes_per_op, -s.allocs_per_op, s.label()))
    return sites


def number_calls(sites: Iterable[Site]) -> None:
    """Numbers the calls that share a line (C.CString twice on one line), in
    the order of their addresses, which is their order in the source."""
    by_line: dict[tuple[str, str, int, str], list[Site]] = {}
    for site in sites:
        by_line.setdefault((site.key.function, site.key.file, site.key.line, site.key.c_function), []).append(site)
    for group in by_line.values():
        if len({site.key.call_pc for site in group}) > 1:
            for number, site in enumerate(sorted(group, key=lambda s: s.key.call_pc), start=1):
                site.call = number
