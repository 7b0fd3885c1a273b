"""`cgo-audit watch PID`: the field guide's `ps aux` and pprof checks,
automated, for a process that is already running. Its C heap is read only
if it was started under the shim (its environment names the region
directory); every other figure comes from outside, and the report says which
are missing and why."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import psutil
from rich.table import Table

from cgo_audit.audits.run import analyse_series, attribute_sites, program_sample
from cgo_audit.errors import AuditError
from cgo_audit.measure import limits as proclimits
from cgo_audit.measure.runner import REGION_DIR_ENV
from cgo_audit.measure.sampler import ExecutableMapping, merge_maps, read_maps, sample_process
from cgo_audit.measure.series import DEFAULT_CAPACITY, BoundedSeries
from cgo_audit.measure.stacktimeline import StackTimeline
from cgo_audit.model import ProgramResult, ProgramSample
from cgo_audit.shim.region import Region, latest_region_of
from cgo_audit.toolchain.endpoint import EndpointPoller
from cgo_audit.toolchain.gotool import has_cgo, link_info, unreachable_static_cgo
from cgo_audit.units import format_bytes
from cgo_audit.verdicts import analysis

SHIM_NAME = "libcgoaudit"


@dataclass
class WatchSettings:
    pid: int
    duration_s: float | None = None          # None: until Ctrl-C or the process ends
    interval_s: float = 1.0
    pprof_url: str | None = None
    max_samples: int = DEFAULT_CAPACITY      # kept samples; older ones are thinned evenly beyond it
    attach_refusal: str | None = None        # why the shim was not attached, when it was not


def region_of(pid: int) -> tuple[Path | None, str | None]:
    """The region pid writes, or why there is none."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as stream:
            environ = dict(item.split(b"=", 1) for item in stream.read().split(b"\0") if b"=" in item)
    except OSError as exc:
        return None, f"cannot read its environment ({exc.strerror})"
    preload = environ.get(b"LD_PRELOAD", b"").decode(errors="replace")
    directory = environ.get(REGION_DIR_ENV.encode(), b"").decode(errors="replace")
    if SHIM_NAME not in preload or not directory:
        return None, ("it was not started under the shim; start it with `cgo-audit run -- CMD`, or with "
                      f"LD_PRELOAD=$(cgo-audit build-shim) {REGION_DIR_ENV}=DIR CMD")
    path = latest_region_of(Path(directory), pid)
    if path is None:
        return None, f"it was started under the shim but wrote no region in {directory}"
    return path, None


def attach_refusal(pid: int, refused: bool) -> str | None:
    """None when `watch` should attach the shim to pid; else why it does not
    (started under the shim already, --no-attach, or attach impossible)."""
    from cgo_audit.shim.target import check_target

    if region_of(pid)[0] is not None or not os.path.isdir(f"/proc/{pid}"):
        return "" if os.path.isdir(f"/proc/{pid}") else None
    if refused:
        return "attaching was refused (--no-attach)"
    try:
        check_target(pid)
    except AuditError as exc:
        return f"attach impossible: {exc}"
    return None


Update = Callable[[Sequence[ProgramSample], Sequence[str]], None]


def watch_process(settings: WatchSettings, on_update: Update = lambda _s, _m: None) -> ProgramResult:
    try:
        proc = psutil.Process(settings.pid)
        argv = proc.cmdline() or [proc.name()]
    except psutil.NoSuchProcess:
        raise AuditError(f"no process with pid {settings.pid}") from None
    except psutil.AccessDenied:
        raise AuditError(f"not allowed to watch pid {settings.pid} (another user's process?)") from None
    missing: list[str] = []
    region_path, why = region_of(settings.pid)
    c_heap_applies = True
    if region_path is None:
        try:
            exe = Path(os.readlink(f"/proc/{settings.pid}/exe"))
            unreachable = unreachable_static_cgo(exe)
        except OSError:
            exe, unreachable = None, None
        if unreachable is not None:
            raise AuditError(unreachable)
        if exe is not None:
            link = link_info(exe)
            if link.is_elf and not link.dynamic and not has_cgo(exe):
                c_heap_applies = False
                why = "it is statically linked without cgo: its C heap cannot leak from Go code"
        missing.append(f"C heap: {why}" + (f"; {settings.attach_refusal}" if settings.attach_refusal else ""))
    if not settings.pprof_url:
        missing.append("goroutines and Go heap: no --pprof-url (serve net/http/pprof and pass its address)")
    region = Region(region_path) if region_path else None
    samples: BoundedSeries[ProgramSample] = BoundedSeries(settings.max_samples)
    limit_watch = proclimits.LimitWatch(settings.pid)
    limits = limit_watch.update()
    started = time.monotonic()
    poller = (EndpointPoller(settings.pprof_url, settings.interval_s, lambda: time.monotonic() - started)
              if settings.pprof_url else None)
    span = ((int(region.raw.header.map_start), int(region.raw.header.map_end)) if region else None)
    # A process whose shim records stacks gets leak sites, as under run.
    stack_mode = region.stack_mode() if region else None
    timeline: StackTimeline[ProgramSample] | None = StackTimeline() if stack_mode and stack_mode.mode else None
    maps: list[ExecutableMapping] = []
    ended = "was watched until you stopped"
    try:
        if poller:
            poller.__enter__()
        while settings.duration_s is None or time.monotonic() - started < settings.duration_s:
            process = sample_process(proc, time.monotonic() - started, span)
            if process is None:
                ended = "ended while watched"
                break
            cheap = region.cheap() if region else None
            stacks = region.stacks() if region and timeline is not None else None
            maps = merge_maps(maps, read_maps(settings.pid))
            go = poller.latest() if poller else None
            sample = program_sample(process, cheap, go, ops=None, pid=settings.pid)
            samples.append(sample)
            limits = limit_watch.update()
            if timeline is not None and stacks is not None:
                timeline.add(sample, stacks)
            on_update(samples.items(), missing)
            time.sleep(settings.interval_s)
        else:
            ended = f"was watched for {settings.duration_s:.0f}s"
    except KeyboardInterrupt:
        pass
    finally:
        if poller:
            poller.__exit__(None, None, None)
        if region:
            region.close()
    kept = samples.items()
    c_measured = region is not None or not c_heap_applies
    growth, verdicts = analyse_series(kept, "second", limits, c_heap_measured=c_measured)
    notes = [*verdicts.why_incomplete, f"the process {ended}"]
    if samples.thinned:
        notes.append(f"{samples.seen} samples taken; {len(kept)} kept, evenly spread over the watch "
                     f"(one in {samples.stride}), for the fit and the curves")
    unmeasured: tuple[str, ...] = () if c_measured else (analysis.C_BYTES.key, analysis.C_ALLOCS.key)
    if not any(s.goroutines is not None for s in kept):
        unmeasured += (analysis.GOROUTINES.key, analysis.GO_HEAP.key)
    result = ProgramResult(argv=argv, per="second", samples=kept, missing=missing, verdicts=verdicts,
                           growth=growth, notes=notes, unmeasured=unmeasured, samples_seen=samples.seen)
    if timeline is not None and stack_mode is not None and analysis.CGO_LEAK in verdicts.all and maps:
        period = stack_mode.sample_period_bytes if stack_mode.mode == 2 else 0
        attribute_sites(result, timeline, kept, "second", maps, period)
    return result


def describe(value: int | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "B":
        return format_bytes(value)
    return str(value)


ROWS = (("C heap (live)", "c_bytes", "B"), ("C allocations", "c_allocs", ""), ("RSS", "rss_bytes", "B"),
        ("Go heap (after GC)", "go_heap_bytes", "B"), ("goroutines", "goroutines", ""),
        ("file descriptors", "fds", ""), ("sockets", "sockets", ""), ("threads", "threads", ""))


def live_table(samples: Sequence[ProgramSample]) -> Table:
    """The live view: each figure now, its change since the start, per minute."""
    table = Table(title=f"cgo-audit watch  ({len(samples)} samples, Ctrl-C for the verdict)", width=78)
    for column in ("figure", "now", "since start", "per minute"):
        table.add_column(column, justify="right" if column != "figure" else "left")
    first, last = samples[0], samples[-1]
    minutes = max((last.time_s - first.time_s) / 60, 1e-9)
    for label, key, unit in ROWS:
        now, start = getattr(last, key), getattr(first, key)
        if now is None or start is None:
            table.add_row(label, "-", "not measured", "")
            continue
        change = now - start
        table.add_row(label, describe(now, unit), ("+" if change > 0 else "") + describe(change, unit),
                      describe(int(change / minutes), unit) if last.time_s > first.time_s else "")
    return table
