"""The target's threads under ptrace: one borrowed to run the injector's
calls (inject.py says why each step is safe), or all stopped at once while
the allocator slots change."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

from cgo_audit.errors import AuditError
from cgo_audit.shim.ptrace import Memory, Regs, Stop, Thread, ThreadGone, wait_stop
from cgo_audit.shim.target import Mapping, alive, find_syscall_instruction

SCRATCH_BYTES = 1 << 20
CALL_TIMEOUT_S = 30.0
MMAP, MUNMAP = 9, 11
PROT_RW, MAP_PRIVATE_ANON = 3, 0x22
# System calls a thread sleeps in: borrowed there, it holds no library lock
# (a thread in malloc's own code might).
WAITING_SYSCALLS = {202, 232, 281, 441, 35, 230, 7, 271, 23, 270, 0, 43, 288, 61, 34, 128, 247}


# ---- borrowing one thread -------------------------------------------------


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
        self.syscall_at = find_syscall_instruction(memory, maps)
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
