"""Allocation stacks read along a running program, kept compact and bounded:
each reading is one figure pair (live bytes, live blocks) per stack, the
stacks' frames stored once. Leak sites are then fitted over the same
checkpoints as the C heap itself, so the sites' figures add up to its slope
(every allocation's stack is counted in the shim, not sampled)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Generic, Sequence, TypeVar

from cgo_audit.measure.series import BoundedSeries
from cgo_audit.shim.region import StackRecord

S = TypeVar("S")
StackKey = tuple[tuple[int, ...], bool]

# Readings kept: the checkpoints of the fit sit at doubling fractions of the
# span (the first at 1/16), so 64 evenly spread readings place each within
# 1/64 of the span of where it belongs.
DEFAULT_READINGS = 64


@dataclass(frozen=True)
class StackReading(Generic[S]):
    """The program's sample and its stacks' live figures, read together."""

    sample: S
    live: dict[StackKey, tuple[int, int]]


class StackTimeline(Generic[S]):
    def __init__(self, capacity: int = DEFAULT_READINGS) -> None:
        self.readings: BoundedSeries[StackReading[S]] = BoundedSeries(capacity)
        self._records: dict[StackKey, StackRecord] = {}   # one record (its frames) per stack

    def add(self, sample: S, stacks: Sequence[StackRecord]) -> None:
        live = {}
        for record in stacks:
            key = (record.frames, record.ends_with_go_statement)
            self._records.setdefault(key, record)
            live[key] = (record.live_bytes, record.live_allocs)
        self.readings.append(StackReading(sample, live))

    def records(self, reading: StackReading[S]) -> list[StackRecord]:
        """The stacks of one reading, as the region gave them."""
        return [replace(self._records[key], live_bytes=figures[0], live_allocs=figures[1])
                for key, figures in reading.live.items()]

    def items(self) -> list[StackReading[S]]:
        return self.readings.items()
