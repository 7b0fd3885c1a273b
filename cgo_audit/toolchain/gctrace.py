"""Parses GODEBUG=gctrace=1 lines, the Go runtime's own account of each GC."""

from __future__ import annotations

import re
from dataclasses import dataclass

# gc 12 @1.234s 3%: 0.01+1.2+0.02 ms clock, ..., 4->5->2 MB, 8 MB goal, 0 MB stacks, ...
GCTRACE_LINE = re.compile(
    r"^gc (?P<num>\d+) @(?P<at>[\d.]+)s \d+%: .*?"
    r"(?P<start>\d+)->(?P<end>\d+)->(?P<live>\d+) MB, (?P<goal>\d+) MB goal")

MIB = 1 << 20


@dataclass(frozen=True)
class GcCycle:
    number: int
    at_s: float
    heap_start_bytes: int
    heap_end_bytes: int
    heap_live_bytes: int      # marked live: what pprof's inuse_space reflects
    heap_goal_bytes: int
    forced: bool


def parse_gctrace(text: str) -> list[GcCycle]:
    """Every GC cycle reported in text (other lines are ignored)."""
    cycles = []
    for line in text.splitlines():
        match = GCTRACE_LINE.match(line.strip())
        if match:
            cycles.append(GcCycle(
                number=int(match["num"]), at_s=float(match["at"]),
                heap_start_bytes=int(match["start"]) * MIB, heap_end_bytes=int(match["end"]) * MIB,
                heap_live_bytes=int(match["live"]) * MIB, heap_goal_bytes=int(match["goal"]) * MIB,
                forced="(forced)" in line))
    return cycles


def strip_gctrace(text: str) -> str:
    """text without its gctrace lines (what the program itself wrote)."""
    return "\n".join(line for line in text.splitlines() if not GCTRACE_LINE.match(line.strip()))
