"""ptrace(2) for one thread at a time, through ctypes (x86-64 Linux): seize,
interrupt, registers (general and the whole FPU/SSE/AVX state), resume,
detach, and the target's memory through /proc/PID/mem.

Only what the injector needs; every call that can fail raises TraceError
with the errno, so the caller can say which pid and why in one line."""

from __future__ import annotations

import ctypes
import errno
import os
import time
from dataclasses import dataclass

PTRACE_CONT = 7
PTRACE_SINGLESTEP = 9
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_GETREGSET = 0x4204
PTRACE_SETREGSET = 0x4205
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_EVENT_STOP = 128
NT_X86_XSTATE = 0x202
WALL = 0x40000000
XSTATE_MAX = 16384

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long

_REG_NAMES = ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss "
              "fs_base gs_base ds es fs gs").split()


class Regs(ctypes.Structure):
    """struct user_regs_struct (x86-64)."""

    _fields_ = [(name, ctypes.c_ulonglong) for name in _REG_NAMES]

    def copy(self) -> "Regs":
        other = Regs()
        ctypes.memmove(ctypes.byref(other), ctypes.byref(self), ctypes.sizeof(Regs))
        return other


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class TraceError(OSError):
    """A ptrace request failed (errno says why)."""


class ThreadGone(Exception):
    """The thread (or its whole process) exited while traced."""


def _call(request: int, tid: int, addr: int | None = None, data: object = None) -> int:
    ctypes.set_errno(0)
    result = _libc.ptrace(request, tid, addr, data)
    err = ctypes.get_errno()
    if result == -1 and err:
        if err == errno.ESRCH:
            raise ThreadGone(tid)
        raise TraceError(err, os.strerror(err))
    return result


@dataclass
class Stop:
    """Why a traced thread stopped: an interrupt (event stop) or a signal."""

    signal: int
    event: int

    @property
    def is_event_stop(self) -> bool:
        return self.event == PTRACE_EVENT_STOP


def wait_stop(tid: int, timeout_s: float) -> Stop:
    """Waits for tid's next ptrace stop; ThreadGone if it exits instead."""
    deadline = time.monotonic() + timeout_s
    delay = 0.0002
    while True:
        try:
            got, status = os.waitpid(tid, os.WNOHANG | WALL)
        except ChildProcessError:
            raise ThreadGone(tid) from None
        if got == tid:
            if os.WIFSTOPPED(status):
                return Stop(os.WSTOPSIG(status), (status >> 16) & 0xFF)
            raise ThreadGone(tid)
        if time.monotonic() > deadline:
            raise TimeoutError(f"thread {tid} did not stop within {timeout_s:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


class Thread:
    """One seized thread."""

    def __init__(self, tid: int) -> None:
        self.tid = tid
        _call(PTRACE_SEIZE, tid, 0, 0)

    def interrupt(self) -> None:
        _call(PTRACE_INTERRUPT, self.tid, 0, 0)

    def get_regs(self) -> Regs:
        regs = Regs()
        _call(PTRACE_GETREGS, self.tid, 0, ctypes.addressof(regs))
        return regs

    def set_regs(self, regs: Regs) -> None:
        _call(PTRACE_SETREGS, self.tid, 0, ctypes.addressof(regs))

    def get_xstate(self) -> bytes:
        """The whole extended state (x87, SSE, AVX...): C code clobbers it."""
        buf = ctypes.create_string_buffer(XSTATE_MAX)
        iov = _IoVec(ctypes.addressof(buf), XSTATE_MAX)
        _call(PTRACE_GETREGSET, self.tid, NT_X86_XSTATE, ctypes.addressof(iov))
        return buf.raw[:iov.len]

    def set_xstate(self, state: bytes) -> None:
        buf = ctypes.create_string_buffer(state, len(state))
        iov = _IoVec(ctypes.addressof(buf), len(state))
        _call(PTRACE_SETREGSET, self.tid, NT_X86_XSTATE, ctypes.addressof(iov))

    def cont(self, sig: int = 0) -> None:
        _call(PTRACE_CONT, self.tid, 0, sig)

    def step(self, sig: int = 0) -> None:
        _call(PTRACE_SINGLESTEP, self.tid, 0, sig)

    def detach(self, sig: int = 0) -> None:
        """Lets the thread go. One that exited while traced stays a zombie
        until its tracer reaps it, and with it the whole process: reaped here."""
        try:
            _call(PTRACE_DETACH, self.tid, 0, sig)
            return
        except ThreadGone:
            pass
        try:  # not in a stop (running again, or exiting): stop it, then let go
            self.interrupt()
            wait_stop(self.tid, 1.0)
            _call(PTRACE_DETACH, self.tid, 0, sig)
        except (ThreadGone, TimeoutError, TraceError):
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    got, _ = os.waitpid(self.tid, os.WNOHANG | WALL)
                except ChildProcessError:
                    return
                if got == self.tid:
                    return
                time.sleep(0.001)


class Memory:
    """The target's address space through /proc/PID/mem (the tracer may write
    read-only pages, as a debugger sets breakpoints)."""

    def __init__(self, pid: int) -> None:
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDWR)

    def read(self, address: int, size: int) -> bytes:
        return os.pread(self.fd, size, address)

    def write(self, address: int, data: bytes) -> None:
        written = os.pwrite(self.fd, data, address)
        if written != len(data):
            raise TraceError(errno.EIO, f"short write at {address:#x}")

    def read_u64(self, address: int) -> int:
        return int.from_bytes(self.read(address, 8), "little")

    def write_u64(self, address: int, value: int) -> None:
        self.write(address, value.to_bytes(8, "little"))

    def read_cstring(self, address: int, limit: int = 4096) -> str:
        data = self.read(address, limit)
        return data.split(b"\0", 1)[0].decode(errors="replace")

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> "Memory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
