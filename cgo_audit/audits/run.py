"""`cgo-audit run`: any program under the shim, sampled while it runs (a
server while a load generator hits it, as the field guide does by hand), and
verdicts from the trends of its C heap, RSS, fds, threads and, through its
net/http/pprof endpoint, goroutines and Go heap."""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, cast

from cgo_audit.errors import AuditError
from cgo_audit.measure.load import HttpLoad
from cgo_audit.measure.runner import RunRecord, ShimSession, run_target
from cgo_audit.measure.sampler import ProcessSample
from cgo_audit.model import ProgramResult, ProgramSample
from cgo_audit.shim.build import build_shim
from cgo_audit.shim.region import CHeap
from cgo_audit.toolchain.endpoint import EndpointPoller
from cgo_audit.toolchain.gotool import has_linked_shim, link_info, unreachable_static_cgo
from cgo_audit.toolchain.layout import LayoutUnavailable, read_layout
from cgo_audit.verdicts import analysis
from cgo_audit.verdicts.sites import RunStacks, sites_over_window, stack_deltas
from cgo_audit.verdicts.symbolize import Symbolizer

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
    stacks: str = "sampled"
    # Finer than Go's 512 KiB: a service's leak is a small part of what it
    # allocates, and a sampled capture costs well under a microsecond.
    sample_bytes: int = 16 * 1024
    warmup_s: float = 0.0                    # samples before this are not part of the trend
    # States to run until, rather than a number of seconds (duration_s is then
    # the generous bound): the memory limit has killed it this many times, or
    # the load has had this many answers.
    stop_after_kills: int | None = None
    stop_after_ops: int | None = None


GO_SIDE = ("goroutines", "go_heap_bytes")
MIN_SAMPLES_TO_STOP = 16    # a run stopped on a state has at least these (CHECKPOINTS need 4+)


def resolve_program(argv0: str, cwd: Path) -> Path | None:
    found = shutil.which(argv0, path=f"{cwd}{os.pathsep}{os.environ.get('PATH', '')}") if "/" not in argv0 \
        else str((cwd / argv0) if not os.path.isabs(argv0) else argv0)
    return Path(found) if found and os.path.isfile(found) else None


def checkpoint_indices(xs: Sequence[float]) -> list[int]:
    """Samples nearest to each checkpoint fraction of the x range."""
    if len(xs) < 2:
        return list(range(len(xs)))
    start, end = xs[0], xs[-1]
    chosen: list[int] = []
    for fraction in CHECKPOINTS:
        target = start + fraction * (end - start)
        index = min(range(len(xs)), key=lambda i: abs(xs[i] - target))
        if index not in chosen and index > 0:
            chosen.append(index)
    return [0, *sorted(chosen)]


def analyse_series(samples: Sequence[ProgramSample], per: str
                   ) -> tuple[dict[str, analysis.Growth], analysis.Verdicts]:
    """Growth per op (request or second) of each metric, from checkpoints
    over the samples that have it (the pprof endpoint answers a little after
    the program starts)."""
    growth = {}
    for metric in analysis.METRICS:
        have = [s for s in samples if getattr(s, metric.key, None) is not None]
        if metric.key in GO_SIDE:
            have = [s for s in have if s.go_stamp is not None]
            xs = [float(s.go_stamp) for s in have]  # type: ignore[arg-type]
        else:
            xs = [float(s.ops or 0) if per == "request" else s.time_s for s in have]
        picks = checkpoint_indices(xs)
        if len(picks) < 4:
            continue
        base_x, base_y = xs[picks[0]], getattr(have[picks[0]], metric.key)
        growth[metric.key] = analysis.classify(metric, [xs[i] - base_x for i in picks[1:]],
                                               [getattr(have[i], metric.key) - base_y for i in picks[1:]])
    return growth, analysis.decide(growth)


Progress = Callable[[ProgramSample], None]


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
    if link.is_elf and not link.dynamic and not linked_in:
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
    load = HttpLoad(settings.load_urls, settings.load_concurrency) if settings.load_urls else None
    per = "request" if load else "second"
    samples: list[ProgramSample] = []
    starts: list[tuple[RunRecord, dict[str, object]]] = []   # each start, with its early stacks
    lock = threading.Lock()

    with ShimSession(shim) as session:
        started = time.monotonic()

        def stamp() -> float:
            return float(load.completed) if load else time.monotonic() - started

        poller = EndpointPoller(settings.pprof_url, settings.interval_s, stamp) if settings.pprof_url else None
        if load is not None:
            def start_when_ready(load: HttpLoad = load) -> None:
                if load.wait_ready(60):
                    load.start()

            threading.Thread(target=start_when_ready, daemon=True).start()
        enough_ops = settings.stop_after_ops
        # Enough answers, and enough samples for the trend's checkpoints
        # however fast the answers came.
        stop_when = (lambda: load.completed >= enough_ops and len(samples) >= MIN_SAMPLES_TO_STOP) \
            if load is not None and enough_ops else None
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
    return _conclude(settings, starts, samples, per, missing)


def _sampler(session: ShimSession, settings: RunSettings, load: HttpLoad | None, poller: EndpointPoller | None,
             samples: list[ProgramSample], early: dict[str, object], lock: threading.Lock, progress: Progress,
             offset: float, incarnation: int) -> Callable[[ProcessSample, CHeap | None, int], None]:
    """The sample hook of one start of the program: its samples go on one
    time axis with the others', tagged with which start they belong to."""
    def on_sample(process: ProcessSample, cheap: CHeap | None, pid: int) -> None:
        go = poller.latest() if poller else None
        sample = ProgramSample(
            time_s=offset + process.time_s, ops=load.completed if load else None,
            c_bytes=cheap.user_live_bytes if cheap else None,
            c_allocs=cheap.user_live_allocs if cheap else None,
            c_peak_bytes=cheap.peak_live_bytes if cheap else None,
            rss_bytes=process.target_rss_bytes, fds=process.num_fds, sockets=process.num_sockets,
            threads=process.num_threads, goroutines=go.goroutines if go else None,
            go_heap_bytes=go.heap_live_bytes if go else None, go_stamp=go.stamp if go else None,
            incarnation=incarnation)
        with lock:
            samples.append(sample)
            if "stacks" not in early and process.time_s >= settings.warmup_s and cheap is not None:
                _, stacks = session.main_state(pid, stacks=True)
                early.update(stacks=stacks or [], ops=sample.ops or 0, time_s=sample.time_s)
        progress(sample)

    return on_sample


def _conclude(settings: RunSettings, starts: list[tuple[RunRecord, dict[str, object]]],
              samples: list[ProgramSample], per: str, missing: list[str]) -> ProgramResult:
    """Verdicts from the longest start of the program (each start's C heap
    begins again at zero); every sample stays for the curves."""
    if not starts:
        raise AuditError("the program never started")
    by_start = [[s for s in samples if s.incarnation == i] for i in range(len(starts))]
    chosen = max(range(len(starts)), key=lambda i: len(by_start[i]))
    record, early = starts[chosen]
    usable = [s for s in by_start[chosen]
              if s.time_s - by_start[chosen][0].time_s >= settings.warmup_s and (per != "request" or s.ops)]
    growth, verdicts = analyse_series(usable, per) if len(usable) >= 4 else ({}, analysis.decide({}))
    notes = []
    if len(usable) < 4:
        notes.append(f"only {len(usable)} usable sample(s): run longer (--duration) or sample more often (--interval)")
    ends = [f"start {i + 1} {r.exit_description()}" for i, r in enumerate(record for record, _ in starts)]
    if len(starts) > 1:
        notes.append(f"the program was started {len(starts)} times ({'; '.join(ends)}); "
                     f"verdict from start {chosen + 1}, the longest")
    elif record.memory_limit_hit or record.crashed or (record.returncode not in (0, None) and not record.stopped):
        notes.append(f"the program {record.exit_description()}; verdict from the {len(samples)} samples taken before")
    result = ProgramResult(argv=list(settings.argv), per=per, samples=samples, record=record, missing=missing,
                           ends=ends, verdicts=verdicts, growth=growth, notes=notes)
    if settings.stacks != "off" and analysis.CGO_LEAK in verdicts.all and early.get("stacks") is not None \
            and record.maps and usable:
        last = usable[-1]
        early_ops, early_time = cast(int, early["ops"]), cast(float, early["time_s"])
        ops = (last.ops or 0) - early_ops if per == "request" else last.time_s - early_time
        deltas = stack_deltas(early["stacks"], record.final_stacks)  # type: ignore[arg-type]
        symbolizer = Symbolizer([])
        period = settings.sample_bytes if settings.stacks == "sampled" else 0
        result.sites = sites_over_window(RunStacks(max(int(ops), 1), deltas, record.maps), symbolizer, period)
        result.sample_period_bytes = period
        result.symbolizer = symbolizer
        result.notes.extend(symbolizer.notes)
    return result
