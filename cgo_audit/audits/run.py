"""`cgo-audit run`: any program under the shim, sampled while it runs (a
server while a load generator hits it, as the field guide does by hand), and
verdicts from the trends of its C heap, RSS, fds, threads and, through its
net/http/pprof endpoint, goroutines and Go heap."""

from __future__ import annotations

import bisect
import os
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from cgo_audit.errors import AuditError
from cgo_audit.measure import limits as proclimits
from cgo_audit.measure.runner import RunRecord, ShimSession, run_target
from cgo_audit.measure.series import DEFAULT_CAPACITY, BoundedSeries
from cgo_audit.shim.build import build_shim
from cgo_audit.toolchain.gotool import has_linked_shim, link_info, unreachable_static_cgo
from cgo_audit.toolchain.layout import LayoutUnavailable, read_layout
from cgo_audit.verdicts import analysis

if TYPE_CHECKING:
    # Imported where used: what only the samples and the verdicts need loads
    # while the target runs, not before it starts (start-up is added to every
    # run); HTTP clients load only for a run that uses them.
    from cgo_audit.measure.load import HttpLoad
    from cgo_audit.measure.sampler import ExecutableMapping, ProcessSample
    from cgo_audit.measure.stacktimeline import StackTimeline
    from cgo_audit.model import ProgramResult, ProgramSample
    from cgo_audit.shim.region import CHeap, StackRecord
    from cgo_audit.toolchain.endpoint import EndpointPoller, GoSide

# Checkpoints along the run, as fractions of it: doubling, like bench's sizes,
# so a plateau and a steady slope look the same to the classifier.
CHECKPOINTS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 1.0)


@dataclass
class RunSettings:
    argv: Sequence[str]
    cwd: Path = Path(".")
    duration_s: float | None = 30.0          # None: until the program exits
    interval_s: float = 1.0
    pprof_url: str | None = None
    load_urls: Sequence[str] = ()
    load_concurrency: int = 2
    memory_limit_bytes: int | None = None
    restarts: int = 0                        # start it again this many times when it dies (OOM, crash)
    # Every allocation's stack by default: a service's leak can be a small
    # part of what it allocates (a cache churning over it), and only exact
    # per-stack counts name it at its size; the walk costs tens of ns per
    # allocation, small beside a request.
    stacks: str = "all"
    sample_bytes: int = 16 * 1024            # with stacks "sampled": mean bytes between samples
    warmup_s: float = 0.0                    # samples before this are not part of the trend
    max_samples: int = DEFAULT_CAPACITY      # kept samples; older ones are thinned evenly beyond it
    # States to run until, rather than a number of seconds (duration_s is then
    # the generous bound): the memory limit has killed it this many times, or
    # the load has had this many answers.
    stop_after_kills: int | None = None
    stop_after_ops: int | None = None


GO_SIDE = ("goroutines", "go_heap_bytes")
MIN_SAMPLES_TO_STOP = 16    # a run stopped on a state has at least these (CHECKPOINTS need 4+)


def answered_enough(load: HttpLoad | None, stop_after_ops: int | None, samples: int) -> bool:
    """The state --requests asks for: that many answers, and samples enough
    for the trend's checkpoints however fast the answers came."""
    return load is not None and stop_after_ops is not None and load.completed >= stop_after_ops \
        and samples >= MIN_SAMPLES_TO_STOP


def resolve_program(argv0: str, cwd: Path) -> Path | None:
    found = shutil.which(argv0, path=f"{cwd}{os.pathsep}{os.environ.get('PATH', '')}") if "/" not in argv0 \
        else str((cwd / argv0) if not os.path.isabs(argv0) else argv0)
    return Path(found) if found and os.path.isfile(found) else None


def checkpoint_indices(xs: Sequence[float]) -> list[int]:
    """Samples nearest to each checkpoint fraction of the x range."""
    if len(xs) < 2:
        return list(range(len(xs)))
    start, end = xs[0], xs[-1]
    ordered = all(a <= b for a, b in zip(xs, xs[1:]))
    chosen: list[int] = []
    for fraction in CHECKPOINTS:
        target = start + fraction * (end - start)
        index = _nearest_sorted(xs, target) if ordered else min(range(len(xs)), key=lambda i: abs(xs[i] - target))
        if index not in chosen and index > 0:
            chosen.append(index)
    return [0, *sorted(chosen)]


# A live program is sampled while requests are in flight: a sample can catch
# a request's C blocks (a FILE and its buffer), goroutine or connection
# before they go. Those lift single samples; a leak lifts every sample after
# it. So each checkpoint takes the lowest of the few samples ending at it.
FLOOR_NEIGHBOURS = 3


def floor_picks(picks: Sequence[int], xs: Sequence[float], values: Sequence[Any]) -> list[int]:
    """picks (checkpoint indices, their xs strictly rising), each moved to
    the sample with the lowest value among it and the FLOOR_NEIGHBOURS - 1
    samples before it, past the previous choice's x (two points at one x
    have no slope between them); the base to the lowest of the first few.
    Ties keep the checkpoint, and the base at the first sample. With a
    steady leak the chosen samples still lie on its line, so its slope is
    exact; a sample lifted by work in flight is passed over."""
    if len(picks) < 2:
        return list(picks)
    first = min((i for i in range(min(FLOOR_NEIGHBOURS, picks[1])) if xs[i] < xs[picks[1]]),
                key=lambda i: values[i], default=picks[0])
    chosen = [first]
    for pick in picks[1:]:
        nearby = [i for i in range(pick, max(chosen[-1], pick - FLOOR_NEIGHBOURS), -1) if xs[i] > xs[chosen[-1]]]
        chosen.append(min(nearby, key=lambda i: values[i]))
    return chosen


def _nearest_sorted(xs: Sequence[float], target: float) -> int:
    """The first index of the value nearest target in ascending xs (what a
    scan would pick), by bisection: a scrape of a process sampled for days
    fits its trends in milliseconds."""
    above = bisect.bisect_left(xs, target)
    candidates = [i for i in (above - 1, above) if 0 <= i < len(xs)]
    best = min(candidates, key=lambda i: (abs(xs[i] - target), i))
    return bisect.bisect_left(xs, xs[best])


# Threads are fitted for programs (a limit on them is a leak's end).
PROGRAM_METRICS = (*analysis.METRICS, analysis.THREADS)
MEMORY_METRICS = (analysis.C_BYTES.key, analysis.C_ALLOCS.key, analysis.GO_HEAP.key, analysis.RSS.key)
# The least evidence a verdict rests on: the classifier tells a steady slope
# from a plateau by comparing the tail's slope with the whole fit, which
# takes three points after the base (two points always fit a line). With
# the checkpoints at doubling fractions of the span, four samples are the
# fewest that give the base and three distinct checkpoints.
MIN_SAMPLES = 4


def _limited_series(metric: analysis.Metric, have: Sequence[ProgramSample],
                    limits: Mapping[str, Sequence[analysis.Limit]]
                    ) -> list[tuple[list[float], Sequence[analysis.Limit]]]:
    """The quantities limits apply to, for one metric: its own count (fds,
    threads), or the process's resident and virtual memory."""
    found: list[tuple[list[float], Sequence[analysis.Limit]]] = []
    if metric.key in (analysis.FDS.key, analysis.THREADS.key):
        key = proclimits.FDS if metric.key == analysis.FDS.key else proclimits.THREADS
        found.append(([float(getattr(s, metric.key)) for s in have], limits.get(key, ())))
    elif metric.key in MEMORY_METRICS:
        found.append(([float(s.rss_bytes) for s in have], limits.get(proclimits.RESIDENT, ())))
        found.append(([float(s.vms_bytes or 0) for s in have], limits.get(proclimits.VIRTUAL, ())))
    if metric.key in (analysis.C_BYTES.key, analysis.C_ALLOCS.key) and have:
        # The shim's own capacity: once its side table is full, new blocks go
        # uncounted and the C heap it reports stops growing.
        base = have[0].c_untracked or 0
        found.append(([float((s.c_untracked or 0) - base) for s in have],
                      [analysis.Limit(1, "the shim's side-table capacity (later blocks went uncounted)", margin=0)]))
    return found


def floor_values(metric: analysis.Metric, samples: Sequence[ProgramSample]) -> list[Any]:
    """What floor_picks compares for a counted metric: the C heap's bytes and
    blocks together (so both are read at the same samples, those the leak
    sites are fitted on), else the metric itself."""
    if metric.key in (analysis.C_BYTES.key, analysis.C_ALLOCS.key):
        return [(s.c_bytes, s.c_allocs) for s in samples]
    return [getattr(s, metric.key) for s in samples]


def analyse_series(samples: Sequence[ProgramSample], per: str,
                   limits: Mapping[str, Sequence[analysis.Limit]] | None = None, *,
                   c_heap_measured: bool = True, cut_short: str | None = None
                   ) -> tuple[dict[str, analysis.Growth], analysis.Verdicts]:
    """Growth per op (request or second) of each metric, from checkpoints
    over the samples that have it (the pprof endpoint answers a little after
    the program starts); a metric that stopped at one of the limits is
    exhausted. Too few samples, or a program cut short (cut_short says how),
    make the result inconclusive unless a leak shows anyway."""
    growth = {}
    for metric in PROGRAM_METRICS:
        have = [s for s in samples if getattr(s, metric.key, None) is not None]
        if metric.key in GO_SIDE:
            have = [s for s in have if s.go_stamp is not None]
            xs = [float(s.go_stamp) for s in have]  # type: ignore[arg-type]
        else:
            xs = [float(s.ops or 0) if per == "request" else s.time_s for s in have]
        picks = checkpoint_indices(xs)
        if len(picks) < MIN_SAMPLES:
            continue
        if metric.counted:
            picks = floor_picks(picks, xs, floor_values(metric, have))
        base_x, base_y = xs[picks[0]], getattr(have[picks[0]], metric.key)
        found = analysis.classify(metric, [xs[i] - base_x for i in picks[1:]],
                                  [getattr(have[i], metric.key) - base_y for i in picks[1:]])
        if limits:
            found = analysis.reached_limit(metric, found, [x - base_x for x in xs],
                                           [float(getattr(s, metric.key) - base_y) for s in have],
                                           _limited_series(metric, have, limits))
            if found.limit_reached_at is not None:
                index = next(i for i, x in enumerate(xs) if x - base_x >= found.limit_reached_at)
                found = replace(found, limit_reached_s=have[index].time_s - have[0].time_s)
        growth[metric.key] = found
    main = analysis.C_BYTES.key if c_heap_measured else analysis.RSS.key
    too_little = cut_short
    if main not in growth:
        usable = [s for s in samples if getattr(s, main, None) is not None]
        span = usable[-1].time_s - usable[0].time_s if usable else 0.0
        too_little = (f"only {len(usable)} usable sample(s) over {span:.0f}s: a verdict needs at least "
                      f"{MIN_SAMPLES} (a base and three checkpoints, to tell a steady slope from a plateau); "
                      "run longer (--duration) or sample more often (--interval)")
        if cut_short:
            too_little = f"{cut_short}; {too_little}"
    return growth, analysis.decide(growth, c_heap_measured=c_heap_measured, too_little=too_little)


Progress = Callable[["ProgramSample"], None]


def audit_program(settings: RunSettings, progress: Progress = lambda _: None) -> ProgramResult:
    shim = build_shim()
    cwd = settings.cwd.resolve()
    program = resolve_program(settings.argv[0], cwd)
    if program is None:
        raise AuditError(f"command not found: {settings.argv[0]}")
    missing: list[str] = []
    env: dict[str, str] = {}
    link = link_info(program)
    unreachable = unreachable_static_cgo(program)
    if unreachable is not None:
        raise AuditError(unreachable)
    linked_in = link.is_elf and not link.dynamic and has_linked_shim(program)
    # A static binary that is not refused has no cgo: its C heap cannot leak.
    c_heap_applies = not (link.is_elf and not link.dynamic and not linked_in)
    if not c_heap_applies:
        missing.append(f"C heap: {program.name} is statically linked, so LD_PRELOAD cannot reach it "
                       "(a Go binary without cgo: its C heap cannot leak from Go code)")
    if settings.stacks != "off":
        env.update(CGO_AUDIT_STACKS=settings.stacks, CGO_AUDIT_SAMPLE_BYTES=str(settings.sample_bytes))
    if link.is_elf and (link.dynamic or linked_in):
        try:
            env["CGO_AUDIT_GO_LAYOUT"] = read_layout(program).environment_value()
        except LayoutUnavailable:
            pass  # not a Go binary, or stripped: sites show C frames only
    if not settings.pprof_url:
        missing.append("goroutines and Go heap: no --pprof-url (serve net/http/pprof and pass its address)")
    load = None
    if settings.load_urls:
        from cgo_audit.measure.load import HttpLoad

        load = HttpLoad(settings.load_urls, settings.load_concurrency)
    per = "request" if load else "second"
    samples: BoundedSeries[ProgramSample] = BoundedSeries(settings.max_samples)
    starts: list[tuple[RunRecord, dict[str, object]]] = []   # each start, with its early stacks
    lock = threading.Lock()

    with ShimSession(shim) as session:
        started = time.monotonic()

        def stamp() -> float:
            return float(load.completed) if load else time.monotonic() - started

        poller = None
        if settings.pprof_url:
            from cgo_audit.toolchain.endpoint import EndpointPoller

            poller = EndpointPoller(settings.pprof_url, settings.interval_s, stamp)
        if load is not None:
            def start_when_ready(load: HttpLoad = load) -> None:
                if load.wait_ready(60):
                    load.start()

            threading.Thread(target=start_when_ready, daemon=True).start()
        stop_when = (lambda: answered_enough(load, settings.stop_after_ops, len(samples))) \
            if load is not None and settings.stop_after_ops else None
        try:
            if poller is not None:
                poller.__enter__()
            for incarnation in range(settings.restarts + 1):
                offset = time.monotonic() - started
                remaining = None if settings.duration_s is None else settings.duration_s - offset
                if remaining is not None and remaining <= settings.interval_s:
                    break
                early: dict[str, object] = {}
                record = run_target(list(settings.argv), session, cwd=cwd, env_extra=env,
                                    timeout_s=(remaining or 24 * 3600) + 30, sample_interval_s=settings.interval_s,
                                    on_sample=_sampler(session, settings, load, poller, samples, early, lock,
                                                       progress, offset, incarnation),
                                    stop_after_s=remaining, memory_limit_bytes=settings.memory_limit_bytes,
                                    stop_when=stop_when)
                starts.append((record, early))
                region = early.pop("region", None)
                if region is not None:
                    region.close()  # type: ignore[attr-defined]
                if record.stopped or (record.returncode == 0 and not record.memory_limit_hit):
                    break  # asked to stop, or it ended on its own
                kills = sum(1 for started_record, _ in starts if started_record.memory_limit_hit)
                if settings.stop_after_kills is not None and kills >= settings.stop_after_kills:
                    break
        finally:
            if load is not None:
                load.stop()
            if poller is not None:
                poller.__exit__(None, None, None)
    if load is not None and load.completed == 0:
        missing.append(f"requests: the load never got an answer ({load.last_error or 'no connection'})")
    if not any(record.preload_active for record, _ in starts) and (link.dynamic or linked_in):
        missing.append("C heap: the shim never started in the program (LD_PRELOAD not honoured)")
    if poller is not None and not any(s.goroutines is not None for s in samples):
        missing.append(f"goroutines and Go heap: the pprof endpoint never answered ({poller.last_error})")
    return _conclude(settings, starts, samples, per, missing, c_heap_applies)


def program_sample(process: ProcessSample, cheap: CHeap | None, go: GoSide | None, *, ops: int | None,
                   time_s: float | None = None, incarnation: int = 0, pid: int | None = None) -> ProgramSample:
    """One reading of a program from its three sources: the process (/proc),
    its C heap (the shim's region, None where it is not measured) and its
    Go side (the pprof endpoint). For run, watch and attach alike."""
    from cgo_audit.model import ProgramSample

    return ProgramSample(
        time_s=process.time_s if time_s is None else time_s, ops=ops,
        c_bytes=cheap.user_live_bytes if cheap else None, c_allocs=cheap.user_live_allocs if cheap else None,
        c_peak_bytes=cheap.peak_live_bytes if cheap else None, rss_bytes=process.target_rss_bytes,
        fds=process.num_fds, sockets=process.num_sockets, threads=process.num_threads,
        goroutines=go.goroutines if go else None, go_heap_bytes=go.heap_live_bytes if go else None,
        go_stamp=go.stamp if go else None, incarnation=incarnation, vms_bytes=process.vms_bytes,
        c_untracked=cheap.untracked_allocs if cheap else None, pid=pid)


def _sampler(session: ShimSession, settings: RunSettings, load: HttpLoad | None, poller: EndpointPoller | None,
             samples: BoundedSeries[ProgramSample], early: dict[str, object], lock: threading.Lock, progress: Progress,
             offset: float, incarnation: int) -> Callable[[ProcessSample, CHeap | None, int], None]:
    """The sample hook of one start of the program: its samples go on one
    time axis with the others', tagged with which start they belong to."""
    def on_sample(process: ProcessSample, cheap: CHeap | None, pid: int) -> None:
        from cgo_audit.measure.stacktimeline import StackTimeline

        go = poller.latest() if poller else None
        want_stacks = settings.stacks != "off" and process.time_s >= settings.warmup_s
        ops, mine, stacks = _read_together(session, pid, early, load, want_stacks) if cheap is not None \
            else (None, None, None)
        if mine is None:
            ops = load.completed if load else None
        cheap = mine or cheap
        sample = program_sample(process, cheap, go, ops=ops, time_s=offset + process.time_s,
                                incarnation=incarnation, pid=pid)
        with lock:
            samples.append(sample)
            watch = early.setdefault("limit_watch", proclimits.LimitWatch(pid, settings.memory_limit_bytes))
            early["limits"] = watch.update()  # type: ignore[attr-defined]
            if stacks is not None:
                timeline = early.setdefault("timeline", StackTimeline())
                timeline.add(sample, stacks)  # type: ignore[attr-defined]
        progress(sample)

    return on_sample


def _read_together(session: ShimSession, pid: int, early: dict[str, object], load: HttpLoad | None,
                   stacks: bool) -> tuple[int | None, CHeap | None, list[StackRecord] | None]:
    """Requests completed, the C heap, and (if asked) its stacks, read back
    to back from the program's region, kept open for the whole start: no
    system call between the request count and the counters (one would let
    the load's threads run, and requests completed in between would count
    against a heap read before them), so the slope per request is exact."""
    from cgo_audit.shim.region import Region, latest_region_of

    region = early.get("region")
    if region is None:
        path = latest_region_of(session.directory, pid)
        if path is None:
            return None, None, None
        try:
            region = Region(path)
        except (OSError, ValueError):
            return None, None, None
        early["region"] = region
    assert isinstance(region, Region)
    if not region.ready():
        return None, None, None
    ops = load.completed if load else None
    cheap = region.cheap()
    return ops, cheap, region.stacks() if stacks else None


def cut_short(record: RunRecord, duration_s: float | None) -> str | None:
    """Why a start of the program ended before the evidence could settle: a
    signal nobody here sent, or a failure exit, before --duration was up.
    None when it was stopped as asked, exited cleanly, or was killed at
    --memory-limit (that kill is the evidence)."""
    if record.stopped or record.memory_limit_hit or record.timed_out:
        return None
    if record.term_signal is None and record.returncode in (0, None):
        return None
    planned = f", before the {duration_s:.0f}s asked for" if duration_s else ""
    return f"the program ended ({record.exit_description()}) after {record.elapsed_s:.0f}s{planned}"


def limit_at_end(last: ProgramSample, limits: Mapping[str, Sequence[analysis.Limit]]) -> str:
    """", its memory at the address-space limit (2 GiB) when it ended", when
    the last sample before a program died sat at one of its limits: the
    likely cause (a failed malloc is fatal to Go), said beside the exit."""
    held = {proclimits.RESIDENT: last.rss_bytes, proclimits.VIRTUAL: last.vms_bytes,
            proclimits.FDS: last.fds, proclimits.THREADS: last.threads}
    metric = {proclimits.RESIDENT: analysis.RSS, proclimits.VIRTUAL: analysis.RSS,
              proclimits.FDS: analysis.FDS, proclimits.THREADS: analysis.THREADS}
    for key, value in held.items():
        for limit in limits.get(key, ()):
            if value is not None and value >= limit.value - analysis.limit_margin(metric[key], limit):
                what = {proclimits.RESIDENT: "its resident memory", proclimits.VIRTUAL: "its virtual memory",
                        proclimits.FDS: "its open files", proclimits.THREADS: "its threads"}[key]
                return f", {what} at {limit.name} when last sampled"
    return ""


RAW_FIGURES = (("C heap", "c_bytes", "B"), ("C allocations", "c_allocs", ""), ("RSS", "rss_bytes", "B"),
               ("Go heap", "go_heap_bytes", "B"), ("goroutines", "goroutines", ""), ("fds", "fds", ""),
               ("threads", "threads", ""))


def raw_changes(samples: Sequence[ProgramSample]) -> str | None:
    """What the samples of an inconclusive run still say: each figure's
    change from the first to the last, with the span."""
    if len(samples) < 2:
        return None
    first, last = samples[0], samples[-1]
    parts = []
    for label, key, unit in RAW_FIGURES:
        have = [s for s in samples if getattr(s, key) is not None]   # the C heap may answer a sample late
        if len(have) < 2:
            continue
        start, end = getattr(have[0], key), getattr(have[-1], key)
        change = end - start
        parts.append(f"{label} {'+' if change >= 0 else ''}{change}{' B' if unit else ''} ({start} to {end})")
    requests = f", {(last.ops or 0) - (first.ops or 0)} requests" if last.ops is not None else ""
    return f"measured over {last.time_s - first.time_s:.1f}s{requests}: " + ", ".join(parts)


def _conclude(settings: RunSettings, starts: list[tuple[RunRecord, dict[str, object]]],
              series: BoundedSeries[ProgramSample], per: str, missing: list[str],
              c_heap_applies: bool = True) -> ProgramResult:
    """Verdicts from the longest start of the program (each start's C heap
    begins again at zero); every kept sample stays for the curves."""
    from cgo_audit.measure.stacktimeline import StackTimeline
    from cgo_audit.model import ProgramResult

    if not starts:
        raise AuditError("the program never started")
    samples = series.items()
    by_start = [[s for s in samples if s.incarnation == i] for i in range(len(starts))]
    chosen = max(range(len(starts)), key=lambda i: len(by_start[i]))
    record, early = starts[chosen]
    usable = [s for s in by_start[chosen]
              if s.time_s - by_start[chosen][0].time_s >= settings.warmup_s and (per != "request" or s.ops)]
    # Measured when the shim answered at all; too few usable samples is another matter (inconclusive).
    c_measured = not c_heap_applies or not by_start[chosen] or any(s.c_bytes is not None for s in by_start[chosen])
    ended_early = cut_short(record, settings.duration_s)
    if ended_early and by_start[chosen]:
        ended_early += limit_at_end(by_start[chosen][-1], early.get("limits") or {})  # type: ignore[arg-type]
    growth, verdicts = analyse_series(usable, per, early.get("limits"),  # type: ignore[arg-type]
                                      c_heap_measured=c_measured, cut_short=ended_early)
    notes = list(verdicts.why_incomplete)
    if series.thinned:
        notes.append(f"{series.seen} samples taken; {len(samples)} kept, evenly spread over the run "
                     f"(one in {series.stride}), for the fit and the curves")
    ends = [f"start {i + 1} {r.exit_description()}" for i, r in enumerate(record for record, _ in starts)]
    if len(starts) > 1:
        notes.append(f"the program was started {len(starts)} times ({'; '.join(ends)}); "
                     f"verdict from start {chosen + 1}, the longest")
    elif verdicts.main == analysis.INCONCLUSIVE:
        seen = by_start[chosen]
        figures = raw_changes([s for s in seen if s.time_s >= usable[0].time_s] if usable else seen)
        if figures:
            notes.append(figures)
    elif record.memory_limit_hit or record.crashed or (record.returncode not in (0, None) and not record.stopped):
        notes.append(f"the program {record.exit_description()}; verdict from the {series.seen} samples taken before")
    unmeasured: tuple[str, ...] = () if c_measured else (analysis.C_BYTES.key, analysis.C_ALLOCS.key)
    if not any(s.goroutines is not None for s in usable):
        unmeasured += (analysis.GOROUTINES.key, analysis.GO_HEAP.key)
    result = ProgramResult(argv=list(settings.argv), per=per, samples=samples, record=record, missing=missing,
                           ends=ends, verdicts=verdicts, growth=growth, notes=notes, unmeasured=unmeasured,
                           samples_seen=series.seen)
    timeline = early.get("timeline")
    if settings.stacks != "off" and analysis.CGO_LEAK in verdicts.all and isinstance(timeline, StackTimeline) \
            and record.maps:
        attribute_sites(result, timeline, usable, per, record.maps,
                        settings.sample_bytes if settings.stacks == "sampled" else 0)
    return result


def attribute_sites(result: ProgramResult, timeline: StackTimeline[ProgramSample], usable: Sequence[ProgramSample],
                    per: str, maps: Sequence[ExecutableMapping], period: int) -> None:
    """Leak sites, fitted over the checkpoints of the readings that carry
    stacks (period > 0: sampled ones, scaled up). The C heap's own figures
    are fitted on those same readings, so that (with every allocation's
    stack counted) the sites add up to them: a least-squares slope is
    linear in what it fits. For run and watch alike."""
    from cgo_audit.verdicts.sites import RunStacks, measure_sites, stack_deltas
    from cgo_audit.verdicts.symbolize import Symbolizer

    first = usable[0] if usable else None
    readings = [r for r in timeline.items() if first is not None and r.sample.time_s >= first.time_s
                and (per != "request" or r.sample.ops)]
    if len(readings) < MIN_SAMPLES:
        return
    samples = [r.sample for r in readings]
    xs = [float(s.ops or 0) if per == "request" else s.time_s for s in samples]
    picks = checkpoint_indices(xs)
    if len(picks) < MIN_SAMPLES:
        return
    picks = floor_picks(picks, xs, floor_values(analysis.C_BYTES, samples))
    refit, _ = analyse_series(samples, per)
    for key in (analysis.C_BYTES.key, analysis.C_ALLOCS.key):
        if key in refit and result.growth.get(key) is not None:
            old = result.growth[key]
            result.growth[key] = replace(refit[key], limit_name=old.limit_name, limit_value=old.limit_value,
                                         limit_reached_at=old.limit_reached_at, limit_reached_s=old.limit_reached_s)
    base = timeline.records(readings[picks[0]])
    runs = [RunStacks(xs[i] - xs[picks[0]], stack_deltas(base, timeline.records(readings[i])),  # type: ignore[arg-type]
                      maps) for i in picks[1:]]
    symbolizer = Symbolizer([])
    result.sites, result.runtime_c_bytes_per_op = measure_sites(runs, symbolizer, period)  # type: ignore[arg-type]
    result.sample_period_bytes = period
    result.symbolizer = symbolizer
    result.notes.extend(symbolizer.notes)
    attributed = sum(site.bytes_per_op for site in result.sites) + result.runtime_c_bytes_per_op
    rest = result.per_op(analysis.C_BYTES.key) - attributed
    if period and rest > 0.05 * result.per_op(analysis.C_BYTES.key):
        result.notes.append(f"sampled stacks (one per {period // 1024} KiB allocated) name {attributed:.2f} of "
                            f"the {result.per_op(analysis.C_BYTES.key):.2f} B/op the C heap grows: a leak small "
                            "beside the allocations around it escapes sampling; --stacks all counts every one")
    elif not period and abs(rest) > max(0.01 * abs(result.per_op(analysis.C_BYTES.key)), 0.005):
        result.notes.append(f"{rest:.2f} B/op of the C heap's growth is at no site above: blocks whose "
                            "stack could not be taken, or sites that grew without a steady slope")
