"""Loads the shim into a running process and points its allocator slots at
it (`cgo-audit attach`), then puts them back (detach). x86-64 Linux, glibc.

How, and why each step is safe for the target:
1. One thread is borrowed: preferably one blocked in a system call made
   from the executable's own code (a Go thread parked in futex or epoll),
   since such a thread holds no C library lock that dlopen could need.
   Its registers and whole FPU/vector state are saved.
2. A raw mmap system call gives a fresh stack: the thread may be on a small
   goroutine stack, which dlopen must never run on.
3. On that stack the thread calls dlopen(shim), then cgo_audit_attach(),
   which makes the region and finds every GOT slot of every loaded object
   that names an allocator entry point (attach.c). Each call returns to
   address 0; the fault that follows is caught by the tracer, never seen by
   the program. Signals that arrive meanwhile are held and delivered after.
4. The stack is unmapped, the registers restored exactly (a system call
   that was interrupted restarts), and the thread let go.
5. Every thread is stopped (PTRACE_SEIZE + PTRACE_INTERRUPT, until no new
   thread appears), the slots are written, and every thread let go: no
   thread ever runs with half of them changed. Detach is step 5 with the
   original values.

cgo-audit is never the target's tracer between these steps: if it is killed
while it watches, the target only loses its observer (docs/attach.md)."""

from __future__ import annotations

import errno
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from cgo_audit.errors import AuditError
from cgo_audit.shim.ptrace import Memory, ThreadGone, TraceError
from cgo_audit.shim.target import alive, check_target, not_permitted, symbol_address
from cgo_audit.shim.threads import Borrowed, resume_all, stop_all

RTLD_NOW = 2


@dataclass
class PatchEntry:
    slot: int
    hook: int
    original: int


@dataclass
class Attachment:
    """What an attach left in the target, enough to detach it."""

    pid: int
    shim: Path
    table_address: int
    entries: list[PatchEntry] = field(default_factory=list)
    objects: int = 0
    dropped: int = 0
    borrowed_s: float = 0.0     # how long one thread ran the injector's calls
    stopped_s: float = 0.0      # how long every thread stood still for the slots


# ---- the patch table ------------------------------------------------------

TABLE_HEADER = 24   # count, dropped, objects
ENTRY = 24          # slot, hook, original


def read_table(memory: Memory, address: int) -> tuple[list[PatchEntry], int, int]:
    head = memory.read(address, TABLE_HEADER)
    count, dropped, objects = (int.from_bytes(head[i:i + 8], "little") for i in (0, 8, 16))
    raw = memory.read(address + TABLE_HEADER, count * ENTRY) if count else b""
    entries = [PatchEntry(*(int.from_bytes(raw[i + j:i + j + 8], "little") for j in (0, 8, 16)))
               for i in range(0, len(raw), ENTRY)]
    return entries, dropped, objects


def write_slots(pid: int, memory: Memory, table_address: int, entries: list[PatchEntry], hooked: bool,
                held: frozenset[int] = frozenset()) -> tuple[int, float]:
    """With every thread stopped, points each slot at its hook (hooked) or
    back at its original. Returns how many slots changed, and for how many
    seconds the threads stood still."""
    changed = 0
    started = time.monotonic()
    stopped = stop_all(pid, held)
    try:
        for index, entry in enumerate(entries):
            now = memory.read_u64(entry.slot)
            if hooked and now != entry.hook:
                if now != entry.original:
                    # Resolved since the table was made (a lazy PLT slot): keep the newest.
                    entry.original = now
                    memory.write_u64(table_address + TABLE_HEADER + index * ENTRY + 16, now)
                memory.write_u64(entry.slot, entry.hook)
                changed += 1
            elif not hooked and now == entry.hook:
                memory.write_u64(entry.slot, entry.original)
                changed += 1
    finally:
        resume_all(stopped)
    return changed, time.monotonic() - started


# ---- attach and detach ----------------------------------------------------


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the injection or the detach is over: cut
    short, they would leave a borrowed thread inside dlopen, or half of the
    slots changed. Their handlers run once it is over."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, _frame: arrived.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for arrived_sig in dict.fromkeys(arrived):
            signal.raise_signal(arrived_sig)


def _traced(pid: int, action, during: str = "attach"):  # type: ignore[no-untyped-def]
    """Runs action, turning ptrace failures into one-line errors."""
    try:
        with signals_held():
            return action()
    except ThreadGone:
        raise AuditError(f"pid {pid} exited during the {during}") from None
    except TraceError as exc:
        if exc.errno == errno.EPERM:
            raise not_permitted(pid, os.strerror(exc.errno)) from None
        raise AuditError(f"ptrace failed on pid {pid}: {os.strerror(exc.errno or 0)}") from None
    except TimeoutError as exc:
        raise AuditError(f"pid {pid}: {exc}") from None
    except (FileNotFoundError, ProcessLookupError):
        raise AuditError(f"pid {pid} exited during the {during}") from None


def attach(pid: int, shim: Path, region_dir: Path, stacks: str, sample_bytes: int, layout: str) -> Attachment:
    """Loads the shim into pid and redirects its allocator slots to it."""
    maps = check_target(pid)
    dlopen = symbol_address(pid, maps, r"/libc\.so\.6$", ("dlopen", "__libc_dlopen_mode"))
    dlsym = symbol_address(pid, maps, r"/libc\.so\.6$", ("dlsym", "__libc_dlsym"))
    dlerror = symbol_address(pid, maps, r"/libc\.so\.6$", ("dlerror",))
    if dlopen is None or dlsym is None:
        raise AuditError(f"pid {pid}: its C library exports no dlopen")

    def load() -> Attachment:
        with Memory(pid) as memory:
            started = time.monotonic()
            borrowed = Borrowed(pid, maps, memory)
            try:
                handle = borrowed.call(dlopen, borrowed.string(str(shim)), RTLD_NOW)
                if handle == 0:
                    why = "dlopen failed"
                    if dlerror is not None:
                        text = borrowed.call(dlerror)
                        why = memory.read_cstring(text) if text else why
                    if "static TLS" in why:
                        why += " (glibc's static TLS surplus is spent: start the program with " \
                               "GLIBC_TUNABLES=glibc.rtld.optional_static_tls=4096, or under `cgo-audit run`)"
                    raise AuditError(f"pid {pid} could not load the shim: {why}")
                functions = {}
                for name in ("cgo_audit_attach", "cgo_audit_patches"):
                    functions[name] = borrowed.call(dlsym, handle, borrowed.string(name))
                    if functions[name] == 0:
                        raise AuditError(f"pid {pid} loaded a shim without {name} (an older build?)")
                table = borrowed.call(functions["cgo_audit_patches"])
                previous, _, _ = read_table(memory, table)
                if any(memory.read_u64(e.slot) == e.hook for e in previous):
                    # A cgo-audit that died while attached: put its slots back first.
                    write_slots(pid, memory, table, previous, hooked=False,
                                held=frozenset({borrowed.thread.tid}))
                rc = borrowed.call(functions["cgo_audit_attach"], borrowed.string(str(region_dir)),
                                   borrowed.string(stacks), sample_bytes, borrowed.string(layout))
                if rc & 0xFFFFFFFF:
                    raise AuditError(f"pid {pid}: the shim could not start counting "
                                     f"({os.strerror(rc & 0xFFFFFFFF)} in {region_dir})")
            finally:
                borrowed.release()
            borrowed_s = time.monotonic() - started
            entries, dropped, objects = read_table(memory, table)
            if not entries:
                raise AuditError(f"pid {pid}: no allocator slot found in any of its {objects} objects")
            _, stopped_s = write_slots(pid, memory, table, entries, hooked=True)
            return Attachment(pid, shim, table, entries, objects, dropped, borrowed_s, stopped_s)

    return _traced(pid, load)


def detach(attachment: Attachment) -> int:
    """Puts the original slots back; the shim stays loaded, idle. Returns how
    many slots changed (0 when the process has gone)."""
    pid = attachment.pid
    if not alive(pid):
        return 0

    def restore() -> int:
        with Memory(pid) as memory:
            return write_slots(pid, memory, attachment.table_address, attachment.entries, hooked=False)[0]

    try:
        return _traced(pid, restore, "detach")
    except AuditError:
        if not alive(pid):
            return 0   # it ended meanwhile: nothing left to restore
        raise
