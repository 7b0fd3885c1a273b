"""A bounded series of samples, for watches that last hours or days.

The fit of `run` and `watch` reads the samples nearest to a few fractions
of the whole span (checkpoints), not every sample. Keeping every sample of a
week-long watch would grow the harness without improving that fit; keeping
samples evenly spaced in arrival order does not change it either: each
checkpoint is still a real sample, at most one stride from where it would
have been. So when the series is full, every other kept sample goes and the
stride doubles; the first sample (the fit's base) and the latest one always
stay."""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

T = TypeVar("T")

# 4096 samples: a day at one a second is thinned 21 times, and every
# checkpoint sits within 1/2048 of the span of where it belongs.
DEFAULT_CAPACITY = 4096


class BoundedSeries(Generic[T]):
    """Samples in arrival order, at most capacity of them (plus the latest)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 4:
            raise ValueError("a series needs room for at least 4 samples")
        self.capacity = capacity
        self.stride = 1          # every stride-th sample that arrives is kept
        self.seen = 0            # samples that arrived in all
        self._kept: list[T] = []
        self._latest: T | None = None
        self._latest_kept = False

    def append(self, sample: T) -> None:
        keep = self.seen % self.stride == 0
        self.seen += 1
        self._latest, self._latest_kept = sample, keep
        if not keep:
            return
        self._kept.append(sample)
        if len(self._kept) > self.capacity:
            # Arrival indices 0, s, 2s, ...: keeping the even positions keeps
            # 0, 2s, 4s, ..., exactly what stride 2s would have kept.
            self._kept = self._kept[::2]
            self.stride *= 2
            self._latest_kept = self._kept[-1] is sample

    def items(self) -> list[T]:
        """The kept samples, with the latest one last."""
        if self._latest is None or self._latest_kept:
            return list(self._kept)
        return [*self._kept, self._latest]

    def __len__(self) -> int:
        return len(self._kept) + (0 if self._latest is None or self._latest_kept else 1)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items())

    def __getitem__(self, index: int) -> T:
        return self.items()[index]

    def __bool__(self) -> bool:
        return self._latest is not None

    @property
    def thinned(self) -> bool:
        return self.stride > 1
