"""`cgo-audit attach PID`: the shim loaded into a process that is already
running (shim/inject.py), sampled and judged exactly as `run` does from the
attach moment on: same samples, same verdicts, same sites and reports.

The target is never restarted and never left traced: between the injection
and the detach cgo-audit only reads the region file, so a cgo-audit that
dies leaves a target that keeps running with the shim counting (docs/attach.md)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import psutil

from cgo_audit.audits.run import RunSettings, _conclude, answered_enough, program_sample
from cgo_audit.errors import AuditError
from cgo_audit.measure.limits import LimitWatch
from cgo_audit.measure.load import HttpLoad
from cgo_audit.measure.runner import RunRecord, ShimSession
from cgo_audit.measure.sampler import merge_maps, read_maps, sample_process
from cgo_audit.measure.series import DEFAULT_CAPACITY, BoundedSeries
from cgo_audit.measure.stacktimeline import StackTimeline
from cgo_audit.model import ProgramResult, ProgramSample
from cgo_audit.shim.build import build_shim
from cgo_audit.shim.inject import Attachment, attach, detach, signals_held
from cgo_audit.shim.region import CHeap, Region, latest_region_of
from cgo_audit.shim.target import check_target
from cgo_audit.toolchain.endpoint import EndpointPoller, GoSide
from cgo_audit.toolchain.layout import LayoutUnavailable, read_layout


@dataclass
class AttachSettings:
    pid: int
    duration_s: float | None = 30.0          # None: until Ctrl-C or the process ends
    detach_after_s: float | None = None      # a bound on the time the shim stays attached
    interval_s: float = 1.0
    pprof_url: str | None = None
    load_urls: Sequence[str] = ()
    load_concurrency: int = 2
    stop_after_ops: int | None = None        # stop once the load has had this many answers
    stacks: str = "sampled"
    sample_bytes: int = 16 * 1024
    warmup_s: float = 0.0
    max_samples: int = DEFAULT_CAPACITY      # kept samples; older ones are thinned evenly beyond it


def shim_for(pid: int) -> Path:
    """The shim at a path the target can open: the build cache when the
    target runs as us, else a world-readable copy (root attaching to a
    service user's process)."""
    shim = build_shim()
    owner = os.stat(f"/proc/{pid}").st_uid
    if owner == os.geteuid():
        return shim
    shared = Path("/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp") / f"cgo-audit-{shim.parent.name}"
    target = shared / shim.name
    if not target.is_file():
        shared.mkdir(mode=0o755, exist_ok=True)
        os.chmod(shared, 0o755)
        tmp = shared / f".{shim.name}.{os.getpid()}"
        shutil.copy2(shim, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return target


def layout_of(pid: int) -> str:
    """The Go runtime offsets the shim's stack walk needs ('' when not Go)."""
    try:
        return read_layout(Path(f"/proc/{pid}/exe")).environment_value()
    except (LayoutUnavailable, OSError, ValueError):
        return ""
    except Exception:  # a malformed binary: sites keep their C frames only
        return ""


@contextmanager
def attached(pid: int, stacks: str, sample_bytes: int, keep_dir: bool = False
             ) -> Iterator[tuple[Attachment, Path, ShimSession]]:
    """The shim attached to pid for the with-block, detached after it."""
    check_target(pid)
    shim = shim_for(pid)
    layout = layout_of(pid) if stacks != "off" else ""
    with ShimSession(shim, keep=keep_dir) as session:
        owner = os.stat(f"/proc/{pid}")
        if owner.st_uid != os.geteuid() and os.geteuid() == 0:
            os.chown(session.directory, owner.st_uid, owner.st_gid)   # the target writes its region there
        attachment = None
        try:
            # A Ctrl-C during the injection is handled once the slots are in,
            # here, where the detach below is sure to follow.
            with signals_held():
                attachment = attach(pid, shim, session.directory, stacks, sample_bytes, layout)
            path = latest_region_of(session.directory, pid)
            if path is None:
                raise AuditError(f"pid {pid} loaded the shim but wrote no region in {session.directory}")
            yield attachment, path, session
        finally:
            if attachment is not None:
                with signals_held():
                    detach(attachment)


Progress = Callable[[ProgramSample], None]


class _Stop(Exception):
    """SIGTERM: end the watch as Ctrl-C does (detach, then report)."""


def _on_term(_sig: int, _frame: object) -> None:
    raise _Stop()


def audit_attached(settings: AttachSettings, progress: Progress = lambda _: None) -> ProgramResult:
    try:
        proc = psutil.Process(settings.pid)
        argv = proc.cmdline() or [proc.name()]
        cwd = proc.cwd()
    except psutil.NoSuchProcess:
        raise AuditError(f"no process with pid {settings.pid}") from None
    except psutil.AccessDenied:
        check_target(settings.pid)   # says why, in one line
        raise AuditError(f"not allowed to read pid {settings.pid}") from None
    missing: list[str] = []
    if not settings.pprof_url:
        missing.append("goroutines and Go heap: no --pprof-url (serve net/http/pprof and pass its address)")
    load = HttpLoad(settings.load_urls, settings.load_concurrency) if settings.load_urls else None
    per = "request" if load else "second"
    samples: BoundedSeries[ProgramSample] = BoundedSeries(settings.max_samples)
    timeline: StackTimeline[ProgramSample] = StackTimeline()   # stack readings, for sites that add up to the slope
    early: dict[str, object] = {"timeline": timeline}
    record = RunRecord(argv=list(argv), cwd=cwd, pid=settings.pid, stopped=True)
    limit_watch = LimitWatch(settings.pid)
    limit = min((x for x in (settings.duration_s, settings.detach_after_s) if x), default=None)
    ended = "was watched until you stopped"
    before_term = signal.signal(signal.SIGTERM, _on_term) if threading.current_thread() is threading.main_thread() \
        else None
    final: CHeap | None = None
    injection = ""
    try:
        with attached(settings.pid, settings.stacks, settings.sample_bytes) as (attachment, path, _session):
            injection = (f"attached: {len(attachment.entries)} allocator slots in {attachment.objects} objects; "
                         f"one thread lent for {attachment.borrowed_s * 1000:.0f} ms, every thread stopped "
                         f"for {attachment.stopped_s * 1000:.1f} ms")
            region = Region(path)
            span = (int(region.raw.header.map_start), int(region.raw.header.map_end))
            started = time.monotonic()

            def stamp() -> float:
                return float(load.completed) if load else time.monotonic() - started

            poller = EndpointPoller(settings.pprof_url, settings.interval_s, stamp) if settings.pprof_url else None
            if load is not None:
                def start_when_ready(load: HttpLoad = load) -> None:
                    if load.wait_ready(60):
                        load.start()

                threading.Thread(target=start_when_ready, daemon=True).start()
            try:
                if poller is not None:
                    poller.__enter__()
                while limit is None or time.monotonic() - started < limit:
                    if answered_enough(load, settings.stop_after_ops, len(samples)):
                        ended = f"was watched until the load had {settings.stop_after_ops} answers"
                        break
                    process = sample_process(proc, time.monotonic() - started, span)
                    if process is None:
                        ended = "ended while watched"
                        break
                    record.maps = merge_maps(record.maps, read_maps(settings.pid))
                    ops = load.completed if load else None
                    cheap = region.cheap()
                    stacks = region.stacks() if settings.stacks != "off" else None
                    go = poller.latest() if poller else None
                    sample = program_sample(process, cheap, go, ops=ops)
                    samples.append(sample)
                    if stacks is not None and process.time_s >= settings.warmup_s:
                        timeline.add(sample, stacks)
                    early["limits"] = limit_watch.update()
                    progress(sample)
                    time.sleep(settings.interval_s)
                else:
                    ended = f"was watched for {limit:.0f}s" + (
                        ", then detached as asked" if limit == settings.detach_after_s else "")
            except (KeyboardInterrupt, _Stop):
                pass
            finally:
                if load is not None:
                    load.stop()
                if poller is not None:
                    poller.__exit__(None, None, None)
                # The last sample and the final stacks at one moment, with the
                # load stopped: a site's figure covers the same requests as the slope.
                process = sample_process(proc, time.monotonic() - started, span)
                if process is not None and samples:
                    ops = load.completed if load else None
                    cheap = region.cheap()
                    record.final_stacks = region.stacks()
                    before = samples[-1]   # the Go side as last read (the poller has stopped)
                    last = program_sample(process, cheap, GoSide(before.goroutines, before.go_heap_bytes,
                                                                 stamp=before.go_stamp), ops=ops)
                    samples.append(last)
                    if settings.stacks != "off":
                        timeline.add(last, record.final_stacks)
                else:
                    record.final_stacks = region.stacks()
                record.stack_mode = region.stack_mode()
                final = region.cheap()
                record.final_c_heap = final
                record.preload_active = True
                record.elapsed_s = time.monotonic() - started
                region.close()
    except (_Stop, KeyboardInterrupt):
        if not samples:
            raise KeyboardInterrupt from None   # stopped before anything was measured
    finally:
        if before_term is not None:
            signal.signal(signal.SIGTERM, before_term)
    if load is not None and load.completed == 0:
        missing.append(f"requests: the load never got an answer ({load.last_error or 'no connection'})")
    run_settings = RunSettings(argv=argv, duration_s=limit, interval_s=settings.interval_s,
                               pprof_url=settings.pprof_url, stacks=settings.stacks,
                               sample_bytes=settings.sample_bytes, warmup_s=settings.warmup_s)
    if not samples:
        raise AuditError(f"pid {settings.pid} ended before the first sample after the attach")
    result = _conclude(run_settings, [(record, early)], samples, per, missing)
    result.notes.insert(0, f"the process {ended}; figures count from the attach, the shim is detached")
    result.notes.insert(1, injection)
    if final is not None and final.ignored_frees:
        result.notes.append(f"freed {final.ignored_frees} blocks allocated before attach "
                            "(not counted: their sizes were never seen)")
    return result
