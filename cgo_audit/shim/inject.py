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

import ctypes
import errno
import os
import re
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from elftools.elf.elffile import ELFFile

from cgo_audit.errors import AuditError
from cgo_audit.shim.ptrace import Memory, Regs, Stop, Thread, ThreadGone, TraceError, wait_stop

RTLD_NOW = 2
SCRATCH_BYTES = 1 << 20
CALL_TIMEOUT_S = 30.0
MMAP, MUNMAP = 9, 11
PROT_RW, MAP_PRIVATE_ANON = 3, 0x22
# System calls a thread sleeps in: borrowed there, it holds no library lock
# (a thread in malloc's own code might).
WAITING_SYSCALLS = {202, 232, 281, 441, 35, 230, 7, 271, 23, 270, 0, 43, 288, 61, 34, 128, 247}
ERESTART = {512, 513, 514, 516}


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    path: str


def read_maps(pid: int) -> list[Mapping]:
    maps = []
    with open(f"/proc/{pid}/maps") as stream:
        for line in stream:
            parts = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            maps.append(Mapping(start, end, parts[1], int(parts[2], 16), parts[5].strip() if len(parts) > 5 else ""))
    return maps


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


# ---- checks ---------------------------------------------------------------


def _ptrace_scope() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except (OSError, ValueError):
        return None


def not_permitted(pid: int, why: str) -> AuditError:
    """The one-line explanation of an EPERM from ptrace."""
    tracer = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("TracerPid:"):
                tracer = int(line.split()[1])
    except (OSError, ValueError):
        pass
    if tracer:
        return AuditError(f"ptrace not permitted on pid {pid}: it is already traced by pid {tracer} "
                          "(a debugger, strace or another cgo-audit); detach that first")
    scope = _ptrace_scope()
    if scope and scope >= 1 and os.geteuid() != 0:
        hint = {1: "only a parent may trace its children", 2: "only root may trace",
                3: "no process may be traced"}.get(scope, "")
        return AuditError(f"ptrace not permitted on pid {pid}: kernel.yama.ptrace_scope is {scope} ({hint}); "
                          "run as root or with CAP_SYS_PTRACE" + (", or set it to 0" if scope < 3 else ""))
    return AuditError(f"ptrace not permitted on pid {pid} ({why}): run as root or with CAP_SYS_PTRACE")


def check_target(pid: int) -> list[Mapping]:
    """The target's mappings once it is known to be attachable; else one-line errors."""
    if pid <= 0 or not os.path.isdir(f"/proc/{pid}"):
        raise AuditError(f"no process with pid {pid}")
    if pid == os.getpid():
        raise AuditError("cgo-audit cannot attach to itself")
    try:
        owner = os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        raise AuditError(f"no process with pid {pid}") from None
    if os.geteuid() != 0 and owner != os.geteuid():
        raise AuditError(f"pid {pid} belongs to another user (uid {owner}): attaching needs root or CAP_SYS_PTRACE")
    try:
        maps = read_maps(pid)
    except FileNotFoundError:
        raise AuditError(f"no process with pid {pid}") from None
    except PermissionError:
        raise not_permitted(pid, "its memory map is not readable") from None
    if not maps:
        raise AuditError(f"pid {pid} has no memory map (a kernel thread or a zombie): nothing to attach to")
    if os.uname().machine != "x86_64":
        raise AuditError(f"attach is implemented for x86-64 only, not {os.uname().machine}")
    if not any(re.search(r"/libc\.so\.6$", m.path) for m in maps):
        exe = os.readlink(f"/proc/{pid}/exe") if os.access(f"/proc/{pid}/exe", os.R_OK) else f"pid {pid}"
        if not any(re.search(r"/ld-.*\.so", m.path) for m in maps):
            raise AuditError(f"{exe} is statically linked: the shim cannot be loaded into it "
                             "(a Go binary without cgo: its C heap cannot leak from Go code)")
        raise AuditError(f"{exe} does not use glibc: attach needs glibc's dlopen")
    return maps


# ---- symbols --------------------------------------------------------------


def _object_path(pid: int, path: str) -> str:
    """A mapped file as this process can open it (the target's mount namespace)."""
    inside = f"/proc/{pid}/root{path}"
    return inside if os.path.exists(inside) else path


def symbol_address(pid: int, maps: list[Mapping], path_pattern: str, names: tuple[str, ...]) -> int | None:
    """Run-time address of the first of names defined by the object whose path matches."""
    mine = [m for m in maps if re.search(path_pattern, m.path)]
    if not mine:
        return None
    path = mine[0].path
    base = min(m.start - m.offset for m in mine if m.path == path)
    with open(_object_path(pid, path), "rb") as stream:
        elf = ELFFile(stream)
        first_load = min((seg["p_vaddr"] for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"), default=0)
        dynsym = elf.get_section_by_name(".dynsym")
        if dynsym is None:
            return None
        found: dict[str, int] = {}
        for sym in dynsym.iter_symbols():
            if sym.name in names and sym["st_value"] and sym["st_info"]["type"] == "STT_FUNC":
                found.setdefault(sym.name, sym["st_value"])
    for name in names:
        if name in found:
            return base + found[name] - (first_load & ~0xFFF)
    return None


def _find_syscall_instruction(memory: Memory, maps: list[Mapping]) -> int:
    for m in maps:
        if re.search(r"/libc\.so\.6$", m.path) and "x" in m.perms:
            data = memory.read(m.start, min(m.end - m.start, 1 << 22))
            index = data.find(b"\x0f\x05")
            if index >= 0:
                return m.start + index
    raise AuditError("no syscall instruction found in the target's C library")


# ---- borrowing one thread -------------------------------------------------


def alive(pid: int) -> bool:
    """Running or sleeping: not gone, not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _thread_rank(pid: int, tid: int, exe_ranges: list[tuple[int, int]]) -> int | None:
    """Lower is better; None: not a candidate now."""
    try:
        text = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
    except OSError:
        return None
    if not text or text[0] in ("running", "-1"):
        return 3
    number, pc = int(text[0]), int(text[-1], 16)
    in_exe = any(lo <= pc < hi for lo, hi in exe_ranges)
    if in_exe:
        return 0
    return 1 if number in WAITING_SYSCALLS else 2


class Borrowed:
    """One thread, stopped, running calls for the injector on a stack of its
    own; everything it had is put back on release()."""

    def __init__(self, pid: int, maps: list[Mapping], memory: Memory) -> None:
        self.pid = pid
        self.memory = memory
        self.pending: list[int] = []
        self.syscall_at = _find_syscall_instruction(memory, maps)
        exe_path = os.readlink(f"/proc/{pid}/exe")
        exe_ranges = [(m.start, m.end) for m in maps if m.path == exe_path and "x" in m.perms]
        self.thread, self.saved = self._borrow(exe_ranges)
        self.scratch = 0
        try:
            self.xstate = self.thread.get_xstate()
            mapped = self.syscall(MMAP, 0, SCRATCH_BYTES, PROT_RW, MAP_PRIVATE_ANON, (1 << 64) - 1, 0)
            if mapped >= (1 << 64) - 4096:
                raise AuditError(f"the target could not map the injector's stack "
                                 f"({os.strerror((1 << 64) - mapped)})")
        except BaseException:
            self.thread.set_regs(self.saved)
            self.thread.detach(self._take_pending())
            raise
        self.scratch = self.cursor = mapped

    def _borrow(self, exe_ranges: list[tuple[int, int]]) -> tuple[Thread, Regs]:
        for _ in range(50):
            if not alive(self.pid):
                raise ThreadGone(self.pid)
            tids = [int(t) for t in os.listdir(f"/proc/{self.pid}/task")]
            ranked = sorted((rank, tid) for tid in tids
                            if (rank := _thread_rank(self.pid, tid, exe_ranges)) is not None)
            for rank, tid in ranked:
                if rank == 2:
                    continue   # in a library's own system call (malloc's mmap, say): it may hold a lock
                thread = Thread(tid)
                try:
                    thread.interrupt()
                    self._wait_event_stop(thread)
                    regs = thread.get_regs()
                except ThreadGone:
                    continue
                waiting = regs.orig_rax < (1 << 63) and regs.orig_rax in WAITING_SYSCALLS
                if waiting or any(lo <= regs.rip < hi for lo, hi in exe_ranges):
                    return thread, regs
                # Busy inside a library now: let it go, with any signal it was due.
                thread.detach(self._take_pending())
                for sig in self.pending:
                    try:
                        _tgkill(self.pid, tid, sig)
                    except OSError:
                        pass
                self.pending.clear()
            os.sched_yield()
        raise AuditError(f"no thread of pid {self.pid} is waiting in a system call or in the program's own "
                         "code (all are busy inside the C library): try again")

    def _take_pending(self) -> int:
        return self.pending.pop(0) if self.pending else 0

    def _wait_event_stop(self, thread: Thread) -> None:
        while True:
            stop = wait_stop(thread.tid, CALL_TIMEOUT_S)
            if stop.is_event_stop:
                return
            self.pending.append(stop.signal)     # delivered after, in release()
            thread.cont(0)

    def _run_until(self, resume, done) -> Regs:  # type: ignore[no-untyped-def]
        resume(0)
        while True:
            stop = wait_stop(self.thread.tid, CALL_TIMEOUT_S)
            regs = self.thread.get_regs()
            if done(stop, regs):
                return regs
            if stop.signal == signal.SIGSEGV and not stop.is_event_stop:
                raise AuditError(f"the injected call faulted in pid {self.pid} at {regs.rip:#x}")
            if not stop.is_event_stop and stop.signal not in (signal.SIGTRAP,):
                self.pending.append(stop.signal)
            resume(0)

    def syscall(self, number: int, *args: int) -> int:
        regs = self.saved.copy()
        regs.rax, regs.orig_rax, regs.rip = number, (1 << 64) - 1, self.syscall_at
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
            setattr(regs, name, value & ((1 << 64) - 1))
        self.thread.set_regs(regs)
        after = self.syscall_at + 2
        out = self._run_until(self.thread.step, lambda stop, r: stop.signal == signal.SIGTRAP and r.rip == after)
        return out.rax

    def call(self, function: int, *args: int) -> int:
        """function(*args) on the scratch stack; its return value."""
        top = (self.scratch + SCRATCH_BYTES - 256) & ~0xF
        self.memory.write_u64(top - 8, 0)          # the return address: a fault the tracer catches
        regs = self.saved.copy()
        regs.rip, regs.rsp, regs.rax, regs.orig_rax = function, top - 8, 0, (1 << 64) - 1
        regs.eflags &= ~0x100 & ((1 << 64) - 1)
        for name, value in zip(("rdi", "rsi", "rdx", "rcx", "r8", "r9"), args):
            setattr(regs, name, value & ((1 << 64) - 1))
        self.thread.set_regs(regs)
        out = self._run_until(self.thread.cont,
                              lambda stop, r: stop.signal == signal.SIGSEGV and not stop.is_event_stop and r.rip == 0)
        return out.rax

    def string(self, text: str) -> int:
        """Copies text (NUL-terminated) into the scratch area; its address."""
        data = text.encode() + b"\0"
        address = self.cursor
        self.memory.write(address, data)
        self.cursor += (len(data) + 15) & ~15
        return address

    def release(self) -> None:
        """Everything back as it was; held signals delivered."""
        try:
            if self.scratch:
                self.syscall(MUNMAP, self.scratch, SCRATCH_BYTES)
            self.thread.set_xstate(self.xstate)
            self.thread.set_regs(self.saved)
        finally:
            first = self._take_pending()
            self.thread.detach(first)
            for sig in dict.fromkeys(self.pending):
                try:
                    _tgkill(self.pid, self.thread.tid, sig)
                except OSError:
                    pass


def _tgkill(pid: int, tid: int, sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(234, pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


# ---- stopping every thread ------------------------------------------------


def stop_all(pid: int, held: frozenset[int] = frozenset()) -> dict[int, tuple[Thread, int]]:
    """Every thread of pid stopped (with the signal each was about to get),
    but for those in held: this tracer has them stopped already."""
    stopped: dict[int, tuple[Thread, int]] = {}
    gone: set[int] = set(held)
    try:
        while True:
            tids = {int(t) for t in os.listdir(f"/proc/{pid}/task")} - stopped.keys() - gone
            if not tids:
                return stopped
            fresh = []
            for tid in sorted(tids):
                try:
                    thread = Thread(tid)
                    thread.interrupt()
                    fresh.append(thread)
                except ThreadGone:
                    gone.add(tid)
            for thread in fresh:
                try:
                    stop: Stop = wait_stop(thread.tid, CALL_TIMEOUT_S)
                except ThreadGone:
                    gone.add(thread.tid)
                    continue
                stopped[thread.tid] = (thread, 0 if stop.is_event_stop else stop.signal)
    except BaseException:
        resume_all(stopped)
        raise


def resume_all(stopped: dict[int, tuple[Thread, int]]) -> None:
    for thread, sig in stopped.values():
        thread.detach(sig)


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
        for sig in dict.fromkeys(arrived):
            signal.raise_signal(sig)


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
