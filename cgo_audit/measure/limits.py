"""The limits a process cannot grow past, read from /proc and its cgroup:
open files, threads, memory. A metric that climbs to one of them and stays
there has been exhausted, not bounded (analysis.reached_limit decides)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence


@dataclass(frozen=True)
class Limit:
    """A ceiling the process cannot grow a metric past."""

    value: float
    name: str          # "the open-file limit (256)"
    margin: float | None = None   # how close counts as at it (default: limit_margin)


UNLIMITED = "unlimited"
# cgroup v1 writes "no limit" as the largest page-aligned int64.
CGROUP_V1_UNLIMITED = 1 << 62

# Keys of the limited quantities: the metrics themselves for counts, and
# the process's memory (resident, virtual) for every memory metric.
FDS, THREADS, RESIDENT, VIRTUAL = "fds", "threads", "resident", "virtual"


def _rlimits(pid: int) -> dict[str, int]:
    """Soft limits of pid, by the first words of their /proc/PID/limits line."""
    found: dict[str, int] = {}
    try:
        lines = Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        name, soft = line[:26].strip(), line[26:47].strip()
        if soft and soft != UNLIMITED and soft.isdigit():
            found[name] = int(soft)
    return found


def _read_number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None   # "max": no limit
    value = int(text)
    return None if value >= CGROUP_V1_UNLIMITED else value


def _cgroup_limits(pid: int, root: Path = Path("/sys/fs/cgroup")) -> dict[str, int]:
    """The memory and pids limits of pid's cgroup (v2, or v1's controllers),
    the tightest along its path: a parent's limit holds for its children."""
    found: dict[str, int] = {}
    try:
        entries = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return found
    for entry in entries:
        _, controllers, path = entry.split(":", 2)
        parts = [p for p in path.split("/") if p]
        if controllers == "":   # v2: one unified tree
            base, files = root, {"memory": "memory.max", "pids": "pids.max"}
        elif controllers in ("memory", "pids"):
            base = root / controllers
            files = {"memory": "memory.limit_in_bytes"} if controllers == "memory" else {"pids": "pids.max"}
        else:
            continue
        for depth in range(len(parts) + 1):
            directory = base.joinpath(*parts[:depth])
            for kind, name in files.items():
                value = _read_number(directory / name)
                if value is not None and value <= found.get(kind, value):
                    found[kind] = value
                    if kind == "memory":   # what the limiting cgroup is charged now
                        usage = _read_number(directory / ("memory.current" if controllers == ""
                                                          else "memory.usage_in_bytes"))
                        if usage is None:
                            found.pop(MEMORY_CHARGED, None)
                        else:
                            found[MEMORY_CHARGED] = usage
    return found


MEMORY_CHARGED = "memory charged"


def _resident_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def process_limits(pid: int, memory_limit_bytes: int | None = None) -> dict[str, list[Limit]]:
    """Each limited quantity of pid with the limits that apply to it."""
    rlimits = _rlimits(pid)
    cgroup = _cgroup_limits(pid)
    limits: dict[str, list[Limit]] = {FDS: [], THREADS: [], RESIDENT: [], VIRTUAL: []}
    if "Max open files" in rlimits:
        limits[FDS].append(_limit(rlimits["Max open files"], "the open-file limit", FDS))
    if "Max processes" in rlimits:
        # Counted per user, across all its processes: this process alone
        # reaches it only when nothing else of the user runs.
        limits[THREADS].append(_limit(rlimits["Max processes"], "the per-user process limit", THREADS))
    threads_max = _read_number(Path("/proc/sys/kernel/threads-max"))
    if threads_max is not None:
        limits[THREADS].append(_limit(threads_max, "the system's thread limit", THREADS))
    if "pids" in cgroup:
        limits[THREADS].append(_limit(cgroup["pids"], "the cgroup's pids limit", THREADS))
    if memory_limit_bytes:
        limits[RESIDENT].append(_limit(memory_limit_bytes, "the memory limit", RESIDENT))
    if "memory" in cgroup:
        # The cgroup is charged more than this process's resident pages (page
        # cache, kernel memory, the other processes in it), and its OOM
        # killer acts on the sum: the process is at the limit once its RSS
        # is within that other charge of it.
        resident = _resident_bytes(pid)
        other = max(0, cgroup.get(MEMORY_CHARGED, 0) - resident) if resident is not None else 0
        value = cgroup["memory"]
        limits[RESIDENT].append(Limit(value, f"the cgroup's memory limit ({describe_limit(value, RESIDENT)})",
                                      margin=max(4 << 20, 0.02 * value) + other))
    if "Max address space" in rlimits:
        limits[VIRTUAL].append(_limit(rlimits["Max address space"], "the address-space limit", VIRTUAL))
    return limits


class LimitWatch:
    """The limits of a process as it runs: they move (Go raises its
    open-file soft limit as it starts; a supervisor moves a process into a
    cgroup), so they are read again once `every_s` seconds have passed, at
    the next sample, the latest kept. Not at every sample: a read walks
    /proc and the cgroup tree (about half a millisecond), and a watch of
    days takes millions of samples."""

    def __init__(self, pid: int, memory_limit_bytes: int | None = None, every_s: float = 0.5) -> None:
        self.pid, self.memory_limit_bytes, self.every_s = pid, memory_limit_bytes, every_s
        self.read_at: float | None = None
        self.limits: dict[str, list[Limit]] = {}

    def update(self) -> dict[str, list[Limit]]:
        """The limits, read afresh when due."""
        now = time.monotonic()
        if self.read_at is None or now - self.read_at >= self.every_s:
            self.limits = process_limits(self.pid, self.memory_limit_bytes)
            self.read_at = now
        return self.limits


def _limit(value: int, words: str, key: str) -> Limit:
    return Limit(value, f"{words} ({describe_limit(value, key)})")


def own_limits(memory_limit_bytes: int | None = None) -> dict[str, list[Limit]]:
    """The limits of this process, which the targets it starts inherit."""
    return process_limits(os.getpid(), memory_limit_bytes)


def describe_limit(value: float, key: str) -> str:
    if key in (RESIDENT, VIRTUAL):
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value >= size:
                return f"{value / size:g} {unit}"
    return f"{value:.0f}"


def merge(*sets: Mapping[str, Sequence[Limit]]) -> dict[str, list[Limit]]:
    merged: dict[str, list[Limit]] = {}
    for limits in sets:
        for key, values in limits.items():
            merged.setdefault(key, []).extend(values)
    return merged
