"""Talks to a Go driver (package auditdriver) running under the shim: calls
its functions a known number of times and measures exact C-heap deltas
while the driver waits between requests."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import psutil

from cgo_audit.errors import AuditError
from cgo_audit.measure.runner import ShimSession, failure_line, settled_state
from cgo_audit.measure.sampler import ProcessSample, sample_process
from cgo_audit.shim.region import CHeap

GO_HEAP_LIVE = "/gc/heap/live:bytes"
GO_GOROUTINES = "/sched/goroutines:goroutines"


class DriverError(AuditError):
    """The driver died, hung or answered nonsense."""


@dataclass(frozen=True)
class CallDelta:
    """What a batch of calls left behind, measured with the Go side settled."""

    calls: int
    errors: int
    c_bytes: int
    c_allocs: int
    go_heap_bytes: int
    goroutines: int
    fds: int
    rss_bytes: int
    result: Any

    @property
    def c_bytes_per_call(self) -> float:
        return self.c_bytes / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class DriverState:
    c_heap: CHeap
    go: Mapping[str, int]
    process: ProcessSample | None


class Driver:
    """A driver process under the shim; use as a context manager."""

    def __init__(self, argv: Sequence[str], session: ShimSession, *, cwd: str | os.PathLike[str] | None = None,
                 env_extra: Mapping[str, str] | None = None, timeout_s: float = 120.0) -> None:
        self.session = session
        self.timeout_s = timeout_s
        self._next_id = 0
        self._buffer = b""
        env = {**go_layout_environment(argv[0], cwd), **(env_extra or {})}
        self.proc = subprocess.Popen(list(argv), cwd=cwd, env=session.environment(extra=env),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self._ps = psutil.Process(self.proc.pid)
        self._started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        self._next_id += 1
        message = {"id": self._next_id, "op": op, **fields}
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise DriverError(self._death("before the request")) from None
        answer = json.loads(self._read_line())
        if answer.get("id") != self._next_id:
            raise DriverError(f"driver answered request {answer.get('id')} to request {self._next_id}")
        return answer

    def _read_line(self) -> bytes:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.timeout_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise DriverError(f"driver gave no answer in {self.timeout_s:.0f}s (killed)")
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise DriverError(self._death("while answering"))
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _death(self, when: str) -> str:
        code = self.proc.wait(timeout=5)
        assert self.proc.stderr is not None
        output = self.proc.stderr.read().decode(errors="replace").strip()
        said = failure_line(output) or (output.splitlines()[-1] if output else "")
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return f"driver {how} {when}" + (f": {said}" if said else "")

    def state(self, settle: bool = True) -> DriverState:
        """The Go side (settled, by default), then the C heap once it holds
        still (see runner.settled_state), and the process."""
        go = self.request("settle" if settle else "stats").get("go", {})
        cheap, _ = settled_state(self.session, self.pid)
        if cheap is None:
            raise DriverError("the driver is not running under the shim (static binary?)")
        span = self.session.main_span(self.pid)
        return DriverState(cheap, go, sample_process(self._ps, time.monotonic() - self._started, span))

    def call(self, func: str, args: Any = None, count: int = 1) -> dict[str, Any]:
        answer = self.request("call", func=func, args=args, count=count)
        if not answer.get("ok"):
            raise DriverError(f"driver refused the call: {answer.get('error')}")
        return answer

    def measure(self, func: str, args: Any = None, count: int = 1, settle: bool = True) -> CallDelta:
        """Calls func count times; the growth they left behind, with the Go
        side settled (GC until finalizers have run) unless settle is False:
        a claim on C blocks that no finalizer frees needs no GC, and is ten
        milliseconds a call cheaper."""
        before = self.state(settle)
        answer = self.call(func, args, count)
        after = self.state(settle)
        rss_before = before.process.target_rss_bytes if before.process else 0
        rss_after = after.process.target_rss_bytes if after.process else 0
        fds_before = before.process.num_fds if before.process else 0
        fds_after = after.process.num_fds if after.process else 0
        return CallDelta(
            calls=int(answer.get("calls", 0)), errors=int(answer.get("errors", 0)),
            c_bytes=after.c_heap.user_live_bytes - before.c_heap.user_live_bytes,
            c_allocs=after.c_heap.user_live_allocs - before.c_heap.user_live_allocs,
            go_heap_bytes=after.go.get(GO_HEAP_LIVE, 0) - before.go.get(GO_HEAP_LIVE, 0),
            goroutines=after.go.get(GO_GOROUTINES, 0) - before.go.get(GO_GOROUTINES, 0),
            fds=fds_after - fds_before, rss_bytes=rss_after - rss_before, result=answer.get("result"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request("exit")
            except (DriverError, ValueError, OSError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> "Driver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def go_layout_environment(argv0: str, cwd: str | os.PathLike[str] | None) -> dict[str, str]:
    """CGO_AUDIT_GO_LAYOUT for a Go driver, so the shim knows the runtime's
    thread-start code: the block x_cgo_thread_start hands a new thread is
    then the thread's, not a call's, however late that thread runs to free
    it (without it, a measure waits a moment for the free and hopes)."""
    from cgo_audit.toolchain.layout import LayoutUnavailable, read_layout

    path = Path(cwd or ".", argv0) if "/" in argv0 else None
    if path is None or not path.is_file():
        return {}
    try:
        return {"CGO_AUDIT_GO_LAYOUT": read_layout(path).environment_value()}
    except (LayoutUnavailable, OSError, ValueError):
        return {}


def build_go_command(module_dir: Path, package: str, output: Path) -> Path:
    """go build of one main package (a driver) into output."""
    from cgo_audit.toolchain.gotool import go_executable

    if not Path(module_dir).is_dir():
        raise AuditError(f"cannot build {package}: no such directory {module_dir}")
    proc = subprocess.run([go_executable(), "build", "-o", str(output), package], cwd=module_dir,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [line.strip() for line in proc.stderr.splitlines() if line.strip() and not line.startswith("#")]
        raise AuditError(f"cannot build {package}: {errors[0] if errors else 'go build failed'}")
    return output
