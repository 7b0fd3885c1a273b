"""The process cgo-audit attaches to, seen from outside: its memory map,
whether the shim can be loaded into it (one-line errors for every reason it
cannot), and the run-time address of a function of one of its libraries."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from cgo_audit.errors import AuditError
from cgo_audit.shim.ptrace import Memory


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
        if not isinstance(dynsym, SymbolTableSection):
            return None
        found: dict[str, int] = {}
        for sym in dynsym.iter_symbols():
            if sym.name in names and sym["st_value"] and sym["st_info"]["type"] == "STT_FUNC":
                found.setdefault(sym.name, sym["st_value"])
    for name in names:
        if name in found:
            return base + found[name] - (first_load & ~0xFFF)
    return None


def find_syscall_instruction(memory: Memory, maps: list[Mapping]) -> int:
    for m in maps:
        if re.search(r"/libc\.so\.6$", m.path) and "x" in m.perms:
            data = memory.read(m.start, min(m.end - m.start, 1 << 22))
            index = data.find(b"\x0f\x05")
            if index >= 0:
                return m.start + index
    raise AuditError("no syscall instruction found in the target's C library")


def alive(pid: int) -> bool:
    """Running or sleeping: not gone, not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"
