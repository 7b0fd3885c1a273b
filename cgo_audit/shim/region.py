"""Reads the shim's shared counters region (layout: csrc/cgo_audit_region.h)
through cffi, live while the target runs and after it has exited."""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from cgo_audit.errors import AuditError
from cgo_audit.shim.cdefs import region_constant, shim_ffi

REGION_NAME = re.compile(r"^cgo-audit\.(\d+)\.(\d+)\.region$")
MAGIC = 0x544944554130474F
# The header's first fields, which no layout version moves: magic,
# layout_version, header_size, region_size. Any reader can tell from them
# whether a region is of its own layout.
_IDENTITY = struct.Struct("=QIIQ")
COUNTER_FIELDS = ("allocs", "frees", "alloc_bytes", "free_bytes", "thread_start_allocs",
                  "thread_start_frees", "thread_start_alloc_bytes", "thread_start_free_bytes")


@dataclass(frozen=True)
class CHeap:
    """The C heap of one process, summed over its thread slots."""

    live_bytes: int
    live_allocs: int
    total_allocs: int
    total_frees: int
    total_alloc_bytes: int
    total_free_bytes: int
    thread_start_live_bytes: int
    thread_start_live_allocs: int
    peak_live_bytes: int
    ignored_frees: int
    failed_allocs: int
    untracked_allocs: int
    shim_table_bytes: int

    @property
    def user_live_bytes(self) -> int:
        """Live bytes less the runtime's per-thread blocks (made in pthread_create)."""
        return self.live_bytes - self.thread_start_live_bytes

    @property
    def user_live_allocs(self) -> int:
        return self.live_allocs - self.thread_start_live_allocs

    @classmethod
    def zero(cls) -> "CHeap":
        return cls(*([0] * 13))

    def as_dict(self) -> dict[str, int]:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["user_live_bytes"] = self.user_live_bytes
        fields["user_live_allocs"] = self.user_live_allocs
        return fields


@dataclass(frozen=True)
class StackRecord:
    """One distinct allocation stack and the live heap its allocations hold."""

    frames: tuple[int, ...]       # return addresses, innermost first
    go_walk: bool                 # Go frames came from the goroutine walk
    ends_with_go_statement: bool  # the last frame is the go statement's PC
    live_bytes: int
    live_allocs: int


GO_WALK_FLAG, GOPC_FLAG = 1, 2


@dataclass(frozen=True)
class StackMode:
    mode: int                     # 0 off, 1 every allocation, 2 sampled
    sample_period_bytes: int
    go_walks: int
    stacks_dropped: int


def read_stacks(region: Any) -> list[StackRecord]:
    """Every stack the shim has stored (the table is dense: stacks[0:used])."""
    ffi = shim_ffi()
    used = min(int(region.header.stacks_used), int(region.header.stack_capacity))
    records = []
    for i in range(used):
        entry = region.stacks[i]
        depth = min(int(entry.depth), len(entry.frames))
        flags = int(entry.mode_flags)
        records.append(StackRecord(
            frames=tuple(ffi.unpack(entry.frames, depth)), go_walk=bool(flags & GO_WALK_FLAG),
            ends_with_go_statement=bool(flags & GOPC_FLAG), live_bytes=int(entry.live_bytes),
            live_allocs=int(entry.live_allocs)))
    return records


def read_stack_mode(region: Any) -> StackMode:
    header = region.header
    return StackMode(int(header.stack_mode), int(header.sample_period_bytes), int(header.go_walks),
                     int(header.stacks_dropped))


@dataclass(frozen=True)
class RegionInfo:
    """Who wrote a region: one program image of one process."""

    path: Path
    pid: int
    ppid: int
    generation: int
    forked_child: bool
    exe: str
    argv: tuple[str, ...]
    start_time_ns: int


def read_cheap(region: Any) -> CHeap:
    """Sums a mapped region's thread slots (region: a cffi struct cgo_audit_region *).

    Slot fields only grow, so live figures are exact differences of sums."""
    header = region.header
    used = min(int(header.slots_in_use), int(header.max_slots) - 1)
    sums = dict.fromkeys(COUNTER_FIELDS, 0)
    for i in range(used + 1):
        slot = region.slots[i]
        for name in COUNTER_FIELDS:
            sums[name] += getattr(slot, name)
    return CHeap(
        live_bytes=sums["alloc_bytes"] - sums["free_bytes"],
        live_allocs=sums["allocs"] - sums["frees"],
        total_allocs=sums["allocs"], total_frees=sums["frees"],
        total_alloc_bytes=sums["alloc_bytes"], total_free_bytes=sums["free_bytes"],
        thread_start_live_bytes=sums["thread_start_alloc_bytes"] - sums["thread_start_free_bytes"],
        thread_start_live_allocs=sums["thread_start_allocs"] - sums["thread_start_frees"],
        peak_live_bytes=int(header.peak_live_bytes), ignored_frees=int(header.ignored_frees),
        failed_allocs=int(header.failed_allocs), untracked_allocs=int(header.untracked_allocs),
        shim_table_bytes=int(header.table_bytes))


def check_layout(path: Path, magic: int, version: int, header_size: int, region_size: int) -> None:
    """Refuses a published region whose layout is not the reader's own: a shim
    from another cgo-audit version (CGO_AUDIT_SHIM, or a program started under
    an older install) would otherwise be read with the wrong offsets."""
    if magic == 0:
        return  # not published yet (the shim stores the magic last)
    ffi = shim_ffi()
    ours = (MAGIC, region_constant("CGO_AUDIT_LAYOUT_VERSION"),
            ffi.sizeof("struct cgo_audit_header"), ffi.sizeof("struct cgo_audit_region"))
    if (magic, version, header_size, region_size) == ours:
        return
    if magic != MAGIC:
        raise AuditError(f"{path} is not a cgo-audit region (magic {magic:#x})")
    raise AuditError(
        f"{path} was written by a shim of region layout {version} ({header_size}-byte header, "
        f"{region_size}-byte region); this cgo-audit reads layout {ours[1]} ({ours[2]}, {ours[3]}): "
        "the shim is from another cgo-audit version, use this one's (cgo-audit build-shim)")


class Region:
    """One region file mapped read-only; usable as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        ffi = shim_ffi()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size < ffi.sizeof("struct cgo_audit_region"):
                if size >= _IDENTITY.size:
                    check_layout(self.path, *_IDENTITY.unpack(os.pread(fd, _IDENTITY.size, 0)))
                raise ValueError(f"{self.path} is smaller than a region")
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        self._view = ffi.from_buffer("struct cgo_audit_region *", self._map)
        self._check_layout()

    def _check_layout(self) -> None:
        header = self._view.header
        check_layout(self.path, int(header.magic), int(header.layout_version), int(header.header_size),
                     int(header.region_size))

    @property
    def raw(self) -> Any:
        """The cffi struct cgo_audit_region * over the mapping."""
        return self._view

    def ready(self) -> bool:
        """True once the shim has published the region; raises AuditError
        if the shim that wrote it has another layout than this reader."""
        self._check_layout()
        return int(self._view.header.magic) == MAGIC

    def cheap(self) -> CHeap:
        return read_cheap(self._view)

    def stacks(self) -> list[StackRecord]:
        return read_stacks(self._view)

    def stack_mode(self) -> StackMode:
        return read_stack_mode(self._view)

    def info(self) -> RegionInfo:
        ffi = shim_ffi()
        header = self._view.header
        cmdline = ffi.buffer(header.cmdline)[:].rstrip(b"\0")
        argv = tuple(part.decode(errors="replace") for part in cmdline.split(b"\0")) if cmdline else ()
        return RegionInfo(
            path=self.path, pid=int(header.pid), ppid=int(header.ppid),
            generation=int(header.generation), forked_child=bool(header.flags & 1),
            exe=ffi.string(header.exe).decode(errors="replace"), argv=argv,
            start_time_ns=int(header.start_time_ns))

    def close(self) -> None:
        # The cffi view must go before the mmap can be closed.
        del self._view
        self._map.close()

    def __enter__(self) -> "Region":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def region_files(directory: Path) -> Iterator[tuple[int, int, Path]]:
    """(pid, generation, path) of every region file in a directory."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        match = REGION_NAME.match(name)
        if match:
            yield int(match.group(1)), int(match.group(2)), Path(directory) / name


def latest_region_of(directory: Path, pid: int) -> Path | None:
    """The region of the newest program image (exec generation) of pid."""
    mine = [(gen, path) for p, gen, path in region_files(directory) if p == pid]
    return max(mine)[1] if mine else None
