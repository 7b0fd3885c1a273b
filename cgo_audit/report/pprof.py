"""The C-heap leak as a gzipped pprof profile.proto, so `go tool pprof -top`
and `go tool pprof -http=:` show it the way they show the Go heap.

Each leaking benchmark contributes the growth of every allocation stack over
its largest run (what that run left behind), labelled with the benchmark's
name; cgo trampolines appear as one frame named like the call in the source
(C.CString)."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

from cgo_audit.model import AuditReport, BenchResult, RunPoint
from cgo_audit.report.profileproto import Function, Label, Line, Location, Mapping, Profile, Sample, ValueType
from cgo_audit.verdicts.sites import ShownFrame, readable, unsample
from cgo_audit.verdicts.symbolize import Symbolizer


class _Builder:
    def __init__(self) -> None:
        self.profile = Profile()
        self.strings: dict[str, int] = {}
        self.functions: dict[tuple[str, str], int] = {}
        self.locations: dict[tuple[int, str, int, bool], int] = {}
        self.mappings: dict[tuple[int, str], int] = {}
        self.string("")

    def string(self, text: str) -> int:
        if text not in self.strings:
            self.strings[text] = len(self.profile.string_table)
            self.profile.string_table.append(text)
        return self.strings[text]

    def mapping(self, symbolizer: Symbolizer, address: int) -> int:
        found = symbolizer.mapping_of(address)
        if found is None:
            return 0
        key = (found.start, found.path)
        if key not in self.mappings:
            mapping = Mapping(id=len(self.profile.mapping) + 1, memory_start=found.start,
                              memory_limit=found.end, file_offset=found.offset,
                              filename=self.string(found.path), has_functions=True,
                              has_filenames=True, has_line_numbers=True, has_inline_frames=True)
            self.profile.mapping.append(mapping)
            self.mappings[key] = mapping.id
        return self.mappings[key]

    def location(self, frame: ShownFrame, symbolizer: Symbolizer) -> int:
        key = (frame.address, frame.function, frame.line, frame.inlined)
        if key not in self.locations:
            fkey = (frame.function, frame.file)
            if fkey not in self.functions:
                function = Function(id=len(self.profile.function) + 1, name=self.string(frame.function),
                                    system_name=self.string(frame.function),
                                    filename=self.string(frame.file or "cgo"))
                self.profile.function.append(function)
                self.functions[fkey] = function.id
            location = Location(id=len(self.profile.location) + 1, address=frame.address,
                                mapping_id=self.mapping(symbolizer, frame.address),
                                line=[Line(function_id=self.functions[fkey], line=frame.line)])
            self.profile.location.append(location)
            self.locations[key] = location.id
        return self.locations[key]


def _largest_run(result: BenchResult) -> RunPoint | None:
    runs = [p for p in result.points if p.ok and p.stacks and p.maps]
    return max(runs, key=lambda p: p.ops) if runs else None


def build_profile(report: AuditReport) -> Profile:
    builder = _Builder()
    profile = builder.profile
    for kind, unit in (("inuse_objects", "count"), ("inuse_space", "bytes")):
        profile.sample_type.append(ValueType(type=builder.string(kind), unit=builder.string(unit)))
    profile.period_type = ValueType(type=builder.string("space"), unit=builder.string("bytes"))
    profile.default_sample_type = builder.string("inuse_space")
    profile.time_nanos = time.time_ns()
    profile.comment.append(builder.string("cgo-audit: C-heap growth over each leaking benchmark's largest run"))
    period = 1
    for result in report.results:
        run = _largest_run(result)
        if run is None or not result.is_leak or result.symbolizer is None:
            continue
        period = max(period, result.sample_period_bytes)
        # Frames were symbolized (and cached) while the binaries still existed.
        symbolizer = result.symbolizer.for_process(run.maps)
        for record, grown, allocs in run.stacks.values():
            if grown <= 0 and allocs <= 0:
                continue
            bytes_, count = unsample(grown, allocs, result.sample_period_bytes)
            stack = readable(record, symbolizer)
            labels = [Label(key=builder.string("benchmark"), str=builder.string(f"{result.package}.{result.name}")),
                      Label(key=builder.string("ops"), num=run.ops, num_unit=builder.string("count"))]
            profile.sample.append(Sample(location_id=[builder.location(f, symbolizer) for f in stack.frames],
                                         value=[round(count), round(bytes_)], label=labels))
    profile.period = period
    return profile


def write_pprof(report: AuditReport, path: Path) -> int:
    """Writes the profile; returns how many samples it holds."""
    profile = build_profile(report)
    Path(path).write_bytes(gzip.compress(profile.SerializeToString()))
    return len(profile.sample)
