"""Launches a target under the shim and gathers what it leaves behind: probe
snapshots, periodic samples, its output, and its regions after it exits.

Nothing is lost: the counters live in files the target maps, so a target
that crashes, is killed on timeout or is OOM-killed still reports them."""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence

from cgo_audit.errors import AuditError
from cgo_audit.measure.series import BoundedSeries
from cgo_audit.toolchain.platform import NATIVE, Platform

if TYPE_CHECKING:   # imported where used: psutil and cffi load while the target runs, not before it starts
    import psutil

    from cgo_audit.measure.sampler import ExecutableMapping, ProcessSample
    from cgo_audit.shim.region import CHeap, RegionInfo, StackMode, StackRecord

PROBE_FDS_ENV = "CGO_AUDIT_PROBE_FDS"
# The line of a Go program's output that says how it failed.
FAILURE_LINE = re.compile(r"^(--- FAIL|panic:|fatal error:|SIG[A-Z]+: )")
# A message go test logs under a --- FAIL line: indented "file_test.go:N: text".
LOGGED_MESSAGE = re.compile(r"^\s+(?:(\S+\.go:\d+: .*\S)|\S.*)$")
REGION_DIR_ENV = "CGO_AUDIT_DIR"

# Output kept of a target's stdout and stderr each: the tail, for reports and benchmark lines.
OUTPUT_KEPT_BYTES = 8 << 20


@dataclass
class Snapshot:
    """The target at one moment: C heap, process and (from the probe) Go side."""

    label: str                      # "before" / "after" (probe), "exit", "sample"
    time_s: float
    c_heap: CHeap | None
    process: ProcessSample | None
    go: dict[str, int] = field(default_factory=dict)
    bench: str | None = None
    n: int | None = None            # b.N when the probe took it
    stacks: list[StackRecord] | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label, "time_s": round(self.time_s, 6), "bench": self.bench, "n": self.n,
            "c_heap": self.c_heap.as_dict() if self.c_heap else None,
            "process": self.process.as_dict() if self.process else None,
            "go": dict(self.go),
        }


@dataclass
class ImageRecord:
    """Another program image that ran under the shim during the run."""

    info: RegionInfo
    c_heap: CHeap
    relation: str                   # "exec-predecessor" or "child"


@dataclass
class RunRecord:
    """Everything one run of a target produced."""

    argv: list[str]
    cwd: str
    pid: int
    returncode: int | None = None
    term_signal: int | None = None
    timed_out: bool = False
    memory_limit_hit: bool = False      # killed by the harness for exceeding --memory-limit
    stopped: bool = False               # the harness asked it to stop (stop_after_s)
    elapsed_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    snapshots: list[Snapshot] = field(default_factory=list)
    samples: BoundedSeries[ProcessSample] = field(default_factory=BoundedSeries)   # thinned on long runs
    final_c_heap: CHeap | None = None
    maxrss_bytes: int = 0
    others: list[ImageRecord] = field(default_factory=list)
    preload_active: bool = False
    final_stacks: list[StackRecord] = field(default_factory=list)
    stack_mode: StackMode | None = None
    maps: list[ExecutableMapping] = field(default_factory=list)   # every one seen while it ran (merge_maps)

    @property
    def crashed(self) -> bool:
        return self.term_signal is not None and not self.timed_out and not self.stopped

    def exit_description(self) -> str:
        if self.memory_limit_hit:
            return "exceeded its memory limit and was killed (as the OOM killer would)"
        if self.timed_out:
            return f"timed out after {self.elapsed_s:.1f}s and was killed"
        if self.stopped:
            return f"was stopped after {self.elapsed_s:.0f}s, as asked"
        if self.term_signal is not None:
            try:
                name = signal.Signals(self.term_signal).name
            except ValueError:
                name = f"signal {self.term_signal}"
            return f"killed by {name}"
        return f"exited with status {self.returncode}"


class ShimSession:
    """A directory the shim writes its regions into, and the environment that
    preloads it. Use as a context manager: the directory goes with it."""

    def __init__(self, shim: Path, keep: bool = False, platform: Platform = NATIVE) -> None:
        self.shim = Path(shim)
        self.platform = platform
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.directory = Path(tempfile.mkdtemp(prefix="cgo-audit-", dir=base))
        self.keep = keep

    def environment(self, base: Mapping[str, str] | None = None,
                    extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        if not self.platform.emulated:   # an emulated guest gets it from command()
            preload = env.get("LD_PRELOAD", "").strip()
            env["LD_PRELOAD"] = f"{self.shim} {preload}".strip()
        env[REGION_DIR_ENV] = str(self.directory)
        env.update(extra or {})
        return env

    def command(self, argv: Sequence[str]) -> list[str]:
        """argv as launched on the session's platform (under qemu-user when emulated)."""
        return self.platform.command(argv, self.shim)

    def main_cheap(self, pid: int) -> CHeap | None:
        """Live C heap of pid's current image, or None before its region exists."""
        cheap, _ = self.main_state(pid, stacks=False)
        return cheap

    def main_state(self, pid: int, stacks: bool) -> tuple[CHeap | None, list[StackRecord] | None]:
        """The C heap (and, if asked, the stacks) of pid's current image."""
        from cgo_audit.shim.region import Region, latest_region_of

        path = latest_region_of(self.directory, pid)
        if path is None:
            return None, None
        try:
            with Region(path) as region:
                if not region.ready():
                    return None, None
                return region.cheap(), region.stacks() if stacks else None
        except (OSError, ValueError):
            return None, None

    def main_span(self, pid: int) -> tuple[int, int] | None:
        """Address span of the shim's side table in pid (its RSS is the shim's)."""
        from cgo_audit.shim.region import Region, latest_region_of

        path = latest_region_of(self.directory, pid)
        if path is None:
            return None
        try:
            with Region(path) as region:
                if not region.ready():
                    return None
                return int(region.raw.header.map_start), int(region.raw.header.map_end)
        except (OSError, ValueError):
            return None  # made a moment ago and not sized yet

    def images(self) -> Iterator[tuple[RegionInfo, CHeap]]:
        from cgo_audit.shim.region import Region, region_files

        for _pid, _gen, path in sorted(region_files(self.directory)):
            try:
                with Region(path) as region:
                    if region.ready():
                        yield region.info(), region.cheap()
            except (OSError, ValueError):
                continue

    def close(self) -> None:
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "ShimSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_others(session: ShimSession, pid: int) -> tuple[CHeap | None, list[ImageRecord]]:
    """The main image's final C heap (pid's newest exec generation), and every
    other image that ran under the shim, kept apart from it."""
    images = list(session.images())
    mine = [image for image in images if image[0].pid == pid]
    main = max(mine, key=lambda image: image[0].generation) if mine else None
    others = [ImageRecord(info, cheap, "exec-predecessor" if info.pid == pid else "child")
              for info, cheap in images if main is None or info is not main[0]]
    return (main[1] if main else None), others


SnapshotHook = Callable[[Snapshot], None]
SampleHook = Callable[["ProcessSample", "CHeap | None", int], None]   # sample, C heap, pid


def run_target(argv: Sequence[str], session: ShimSession, *, cwd: str | os.PathLike[str] | None = None,
               env_extra: Mapping[str, str] | None = None, timeout_s: float = 300.0,
               sample_interval_s: float = 0.05, probe: bool = False,
               on_snapshot: SnapshotHook | None = None, on_sample: SampleHook | None = None,
               stop_after_s: float | None = None, memory_limit_bytes: int | None = None,
               stdin: int | None = subprocess.DEVNULL, stop_when: Callable[[], bool] | None = None) -> RunRecord:
    """Runs argv under the shim to completion (or timeout), gathering everything.

    With probe=True the target gets two pipes (CGO_AUDIT_PROBE_FDS): each line
    it writes is a Go-side snapshot; the harness adds the C heap and process
    figures of that moment and answers, so the target waits while we read.
    stop_after_s ends a long-running target (a server) with SIGINT, then SIGKILL;
    so does stop_when, once it returns True (checked at each sample): a state
    reached, rather than a number of seconds.
    memory_limit_bytes kills it with SIGKILL once its RSS passes the limit, as
    a container's OOM killer would (no privileges needed)."""
    cwd = str(cwd or os.getcwd())
    extra = dict(env_extra or {})
    pass_fds: tuple[int, ...] = ()
    probe_read = ack_write = None
    if probe:
        probe_read, probe_write = os.pipe()
        ack_read, ack_write = os.pipe()
        extra[PROBE_FDS_ENV] = f"{probe_write},{ack_read}"
        pass_fds = (probe_write, ack_read)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(session.command(argv), cwd=cwd, env=session.environment(extra=extra),
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=pass_fds, start_new_session=True)
    except FileNotFoundError:
        raise AuditError(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise AuditError(f"cannot execute {argv[0]}: permission denied") from None
    finally:
        for fd in pass_fds:
            os.close(fd)
    record = RunRecord(argv=list(argv), cwd=cwd, pid=proc.pid)
    try:
        _watch(proc, record, session, started, timeout_s, sample_interval_s, probe_read, ack_write,
               on_snapshot, on_sample, stop_after_s, memory_limit_bytes, stop_when)
    finally:
        for pipe_end in (probe_read, ack_write):
            if pipe_end is not None:
                try:
                    os.close(pipe_end)
                except OSError:
                    pass
        if proc.returncode is None:
            _kill_group(proc.pid)
            _reap(proc, record, block=True)
    record.elapsed_s = time.monotonic() - started
    from cgo_audit.shim.region import Region, latest_region_of

    record.final_c_heap, record.others = describe_others(session, proc.pid)
    record.preload_active = record.final_c_heap is not None
    path = latest_region_of(session.directory, proc.pid)
    if path is not None:
        try:
            with Region(path) as region:
                if region.ready():
                    record.final_stacks = region.stacks()
                    record.stack_mode = region.stack_mode()
        except (OSError, ValueError):
            pass  # the target died while its region was being made: nothing to read
    return record


def failure_line(output: str) -> str | None:
    """The first line of a Go program's output that says how it failed (not
    the register dump a crash report ends with). A test's "--- FAIL: X" line
    carries the first message logged under it ("x_test.go:12: PAYLOAD env
    was not set"): the name alone does not say why."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if FAILURE_LINE.match(line.strip()):
            said = line.strip()
            if said.startswith("--- FAIL"):
                # Under the line without -test.v; streamed before it with -test.v.
                message = _logged_message(lines[index + 1:]) or _logged_message(_block_above(lines, index))
                if message:
                    said = f"{said.split(' (')[0]}: {message}"
            return said
    return None


def _block_above(lines: Sequence[str], index: int) -> list[str]:
    """The indented lines right above lines[index], top down."""
    start = index
    while start > 0 and lines[start - 1][:1].isspace():
        start -= 1
    return list(lines[start:index])


def _logged_message(lines: Sequence[str]) -> str | None:
    """The first t.Log/b.Fatal message indented under a --- FAIL line."""
    for line in lines:
        match = LOGGED_MESSAGE.match(line)
        if match is None:
            return None
        if match.group(1):
            return match.group(1).strip()
    return None


def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(proc: subprocess.Popen[bytes], record: RunRecord, block: bool) -> bool:
    """Reaps the target with wait4 (for its peak RSS); True once it is gone."""
    try:
        pid, status, usage = os.wait4(proc.pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return True
    if pid == 0:
        return False
    record.maxrss_bytes = usage.ru_maxrss * 1024
    if os.WIFSIGNALED(status):
        record.term_signal = os.WTERMSIG(status)
        record.returncode = -record.term_signal
    else:
        record.returncode = os.WEXITSTATUS(status)
    proc.returncode = record.returncode  # Popen must not wait for it again
    return True


def _exit_notifier(pid: int) -> int | None:
    """A descriptor that turns readable when pid ends (a pidfd, Linux 5.3+),
    so the loop below wakes at once rather than at its next timeout; None
    where there is none (the loop then polls, as before)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _watch(proc: subprocess.Popen[bytes], record: RunRecord, session: ShimSession, started: float,
           timeout_s: float, interval_s: float, probe_read: int | None, ack_write: int | None,
           on_snapshot: SnapshotHook | None, on_sample: SampleHook | None,
           stop_after_s: float | None, memory_limit_bytes: int | None,
           stop_when: Callable[[], bool] | None = None) -> None:
    import psutil

    from cgo_audit.measure.sampler import merge_maps, read_maps, sample_process

    selector = selectors.DefaultSelector()
    buffers: dict[int, bytearray] = {}
    assert proc.stdout is not None and proc.stderr is not None
    streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    for fd in streams:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
        buffers[fd] = bytearray()
    if probe_read is not None:
        selector.register(probe_read, selectors.EVENT_READ)
        buffers[probe_read] = bytearray()
    exit_fd = _exit_notifier(proc.pid)
    if exit_fd is not None:
        selector.register(exit_fd, selectors.EVENT_READ)
    ps_proc = psutil.Process(proc.pid)
    next_sample = started
    stop_sent = False
    stop_sent_at = 0.0
    gone = False
    gone_at = 0.0
    span: tuple[int, int] | None = None
    while True:
        now = time.monotonic()
        elapsed = now - started
        if not gone and elapsed > timeout_s:
            record.timed_out = True
            _kill_group(proc.pid)
        if not gone and not stop_sent and ((stop_after_s is not None and elapsed > stop_after_s)
                                           or (stop_when is not None and stop_when())):
            stop_sent = record.stopped = True
            stop_sent_at = elapsed
            _kill_group(proc.pid, signal.SIGINT)
        if stop_sent and not gone and elapsed > stop_sent_at + 5:
            _kill_group(proc.pid)
        if not gone and now >= next_sample:
            if span is None:
                span = session.main_span(proc.pid)
            record.maps = merge_maps(record.maps, read_maps(proc.pid, not session.platform.emulated))
            sample = sample_process(ps_proc, elapsed, span)
            # The limit is the program's: the shim's own table is not held against it.
            if sample is not None and memory_limit_bytes and sample.target_rss_bytes > memory_limit_bytes:
                record.memory_limit_hit = True
                _kill_group(proc.pid)
            if sample is not None:
                record.samples.append(sample)
                if on_sample is not None:
                    on_sample(sample, session.main_cheap(proc.pid), proc.pid)
            next_sample = now + interval_s
        if not gone and _reap(proc, record, block=False):
            gone, gone_at = True, now
        if gone and (not selector.get_map() or now - gone_at > 1.0):
            break  # a grandchild may hold the pipes open: do not wait for it
        wait = max(0.0, min(next_sample - now, 0.05)) if not gone else 0.05
        for key, _ in selector.select(timeout=wait):
            fd = key.fd
            if fd == exit_fd:   # the target has ended: reaped at the top of the loop
                selector.unregister(fd)
                os.close(fd)
                exit_fd = None
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                selector.unregister(fd)
                continue
            if fd == probe_read:
                buffers[fd].extend(chunk)
                while b"\n" in buffers[fd]:
                    line, _, rest = bytes(buffers[fd]).partition(b"\n")
                    buffers[fd] = bytearray(rest)
                    snap = _probe_snapshot(line, session, proc.pid, ps_proc, time.monotonic() - started, span)
                    record.maps = merge_maps(record.maps, read_maps(proc.pid, not session.platform.emulated))
                    if snap is not None:
                        record.snapshots.append(snap)
                        if on_snapshot is not None:
                            on_snapshot(snap)
                    if ack_write is not None:
                        try:
                            os.write(ack_write, b"ok\n")
                        except OSError:
                            pass
            else:
                buffers[fd].extend(chunk)
                if len(buffers[fd]) > OUTPUT_KEPT_BYTES:   # a service may log for days: keep the tail
                    del buffers[fd][:len(buffers[fd]) - OUTPUT_KEPT_BYTES // 2]
    selector.close()
    if exit_fd is not None:
        os.close(exit_fd)
    for fd, name in streams.items():
        setattr(record, name, buffers[fd].decode(errors="replace"))


def settled_state(session: ShimSession, pid: int, attempts: int = 50
                  ) -> tuple[CHeap | None, list[StackRecord] | None]:
    """The C heap once it holds still. The target is paused in the probe, but
    the runtime may be starting a thread: x_cgo_thread_start mallocs a small
    block that the new thread frees a moment later. Two equal reads 1 ms
    apart mean nothing is in flight."""
    cheap, stacks = session.main_state(pid, stacks=True)
    for _ in range(attempts):
        time.sleep(0.001)
        again, again_stacks = session.main_state(pid, stacks=True)
        if again is None or cheap is None or (
                again.user_live_bytes == cheap.user_live_bytes and again.user_live_allocs == cheap.user_live_allocs):
            return again or cheap, again_stacks if again is not None else stacks
        cheap, stacks = again, again_stacks
    return cheap, stacks


def _probe_snapshot(line: bytes, session: ShimSession, pid: int, ps_proc: psutil.Process,
                    time_s: float, span: tuple[int, int] | None) -> Snapshot | None:
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if message.get("event") != "snapshot":
        return None
    from cgo_audit.measure.sampler import sample_process

    span = span or session.main_span(pid)
    cheap, stacks = settled_state(session, pid)
    return Snapshot(label=str(message.get("phase")), time_s=time_s, c_heap=cheap,
                    process=sample_process(ps_proc, time_s, span),
                    go={k: int(v) for k, v in (message.get("go") or {}).items()},
                    bench=message.get("bench"), n=message.get("n"), stacks=stacks)
