"""The samples of a run, watch or attach so far, as the metrics server
reads them: kept apart from metrics.py so that a run without a server does
not import prometheus_client."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from cgo_audit.measure.series import BoundedSeries

if TYPE_CHECKING:
    from cgo_audit.model import ProgramSample


class LiveFigures:
    """The samples of a run or watch so far, shared between the sampling
    thread (which adds) and the metrics server (which reads at scrape time)."""

    def __init__(self, argv: Sequence[str], per: str, memory_limit_bytes: int | None = None,
                 warmup_s: float = 0.0, pid: int | None = None) -> None:
        self.program = Path(argv[0]).name if argv else "?"
        self.pid = pid            # for samples that do not say (a process attached to)
        self.per = per
        self.memory_limit_bytes = memory_limit_bytes
        self.warmup_s = warmup_s
        # Bounded like the audit's own series: a scrape of a week-long watch stays small.
        self._samples: BoundedSeries[ProgramSample] = BoundedSeries()
        self._lock = threading.Lock()

    def add(self, sample: ProgramSample) -> None:
        with self._lock:
            self._samples.append(sample)

    def current(self) -> list[ProgramSample]:
        """The samples of the program's latest start (each start's C heap
        begins again at zero), past the warm-up: what a trend is fitted on."""
        with self._lock:
            if not self._samples:
                return []
            kept = self._samples.items()
            latest = kept[-1].incarnation
            mine = [s for s in kept if s.incarnation == latest]
        first = mine[0].time_s
        return [s for s in mine if s.time_s - first >= self.warmup_s and (self.per != "request" or s.ops)] \
            or mine[-1:]

    def count(self) -> int:
        with self._lock:
            return self._samples.seen
