"""Samples a running process from the outside: RSS, file descriptors, sockets
and threads (psutil), and the RSS of the shim's own side table (smaps)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Sequence

import psutil


@dataclass(frozen=True)
class ProcessSample:
    """What `ps` and /proc show of one process at one moment."""

    time_s: float
    rss_bytes: int
    shim_rss_bytes: int
    num_fds: int
    num_sockets: int
    num_threads: int
    vms_bytes: int = 0      # virtual size: what RLIMIT_AS limits

    @property
    def target_rss_bytes(self) -> int:
        """RSS without the shim's own side table."""
        return self.rss_bytes - self.shim_rss_bytes

    def as_dict(self) -> dict[str, float]:
        fields = asdict(self)
        fields["target_rss_bytes"] = self.target_rss_bytes
        return fields


def count_sockets(pid: int) -> int:
    """Open sockets of pid, from the targets of its /proc fd links."""
    count = 0
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def rss_in_span(pid: int, start: int, end: int) -> int:
    """Resident bytes of pid's mappings that lie inside [start, end)."""
    if start >= end:
        return 0
    total = 0
    inside = False
    try:
        with open(f"/proc/{pid}/smaps", "rb") as smaps:
            for line in smaps:
                first = line.split(b" ", 1)[0]
                if b"-" in first and not line.startswith(b"Rss:"):
                    low, _, high = first.partition(b"-")
                    try:
                        inside = int(low, 16) >= start and int(high, 16) <= end
                    except ValueError:
                        pass
                elif inside and line.startswith(b"Rss:"):
                    total += int(line.split()[1]) * 1024
    except OSError:
        return 0
    return total


@dataclass(frozen=True)
class ExecutableMapping:
    """One executable mapping of a process (from /proc/PID/maps)."""

    start: int
    end: int
    offset: int
    path: str


def read_maps(pid: int, executable_only: bool = True) -> list[ExecutableMapping]:
    """The executable, file-backed mappings of pid (empty once it has gone).
    Under qemu-user the guest's code is mapped readable but not executable
    on the host (qemu runs its translation instead): executable_only=False
    takes every file-backed mapping, which is enough to place a guest PC."""
    mappings = []
    try:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) < 6 or (executable_only and "x" not in parts[1]) or not parts[5].startswith("/"):
                    continue
                low, _, high = parts[0].partition("-")
                mappings.append(ExecutableMapping(int(low, 16), int(high, 16), int(parts[2], 16), parts[5].strip()))
    except OSError:
        return []
    return mappings


def merge_maps(known: Sequence[ExecutableMapping], latest: Sequence[ExecutableMapping]) -> list[ExecutableMapping]:
    """Every mapping seen so far: the latest reading, plus the earlier ones
    it does not overlap. A reading taken while the process exits is partial
    (its libraries are being unmapped), yet the stacks gathered before name
    code in them; a library loaded later is added, and one mapped anew over
    an old range replaces it."""
    kept = [old for old in known if not any(new.start < old.end and old.start < new.end for new in latest)]
    return sorted([*kept, *latest], key=lambda m: m.start)


def sample_process(proc: psutil.Process, time_s: float, shim_span: tuple[int, int] | None = None
                   ) -> ProcessSample | None:
    """One sample of proc, or None once it has gone."""
    try:
        with proc.oneshot():
            memory = proc.memory_info()
            rss, vms = memory.rss, memory.vms
            fds = proc.num_fds()
            threads = proc.num_threads()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None
    if rss == 0:
        return None  # exiting: its memory is already gone, and a zero would end every curve at 0
    shim_rss = rss_in_span(proc.pid, *shim_span) if shim_span else 0
    return ProcessSample(time_s=time_s, rss_bytes=rss, shim_rss_bytes=shim_rss, num_fds=fds,
                         num_sockets=count_sockets(proc.pid), num_threads=threads, vms_bytes=vms)
