"""Reads a Go program's net/http/pprof endpoint, as the field guide does by
hand: goroutines from /debug/pprof/goroutine?debug=1 and the live heap from
/debug/pprof/heap?debug=1 (with gc=1, so it is measured after a GC)."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from typing import Callable

GOROUTINE_TOTAL = re.compile(rb"^goroutine profile: total (\d+)", re.M)
HEAP_ALLOC = re.compile(rb"^# HeapAlloc = (\d+)", re.M)


@dataclass(frozen=True)
class GoSide:
    goroutines: int | None
    heap_live_bytes: int | None
    error: str | None = None
    stamp: float | None = None     # where the program was (requests or seconds) when this was read


def _get(url: str, timeout_s: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (a URL the user gave)
        return response.read()


def read_go_side(base_url: str, timeout_s: float = 3.0) -> GoSide:
    """One reading of the endpoint at base_url (e.g. http://127.0.0.1:6060)."""
    base = base_url.rstrip("/")
    if not base.endswith("/debug/pprof"):
        base += "/debug/pprof"
    try:
        goroutines = GOROUTINE_TOTAL.search(_get(f"{base}/goroutine?debug=1", timeout_s))
        heap = HEAP_ALLOC.search(_get(f"{base}/heap?gc=1&debug=1", timeout_s))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return GoSide(None, None, f"{base}: {getattr(exc, 'reason', exc)}")
    return GoSide(int(goroutines.group(1)) if goroutines else None, int(heap.group(1)) if heap else None)


class EndpointPoller:
    """Polls the endpoint on its own thread, so a slow answer never holds up
    the harness's sampling loop; latest() is the newest good reading. Each
    reading is stamped with stamp() taken around it (the requests served so
    far, say), because it is older than the sample that reports it."""

    def __init__(self, base_url: str, interval_s: float, stamp: Callable[[], float] = time.monotonic) -> None:
        self.base_url = base_url
        self.interval_s = interval_s
        self.stamp = stamp
        self._latest: GoSide | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pprof-poller", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            before = self.stamp()
            side = read_go_side(self.base_url)
            if side.error is None:
                self._latest = replace(side, stamp=(before + self.stamp()) / 2)
            else:
                self.last_error = side.error
            self._stop.wait(self.interval_s)

    def latest(self) -> GoSide | None:
        return self._latest

    def __enter__(self) -> "EndpointPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
