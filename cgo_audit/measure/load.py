"""A small loopback load generator: keeps GET requests going against a
server from a few threads and counts what completed, so growth can be given
per request. (For real load tests, run wrk or your own and leave --load off.)"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from typing import Sequence

from cgo_audit.errors import AuditError


class HttpLoad:
    def __init__(self, urls: Sequence[str], concurrency: int = 2, timeout_s: float = 10.0) -> None:
        self.urls = [urllib.parse.urlsplit(url) for url in urls]
        for url in self.urls:
            if url.scheme != "http" or not url.hostname:
                raise AuditError(f"--load takes http:// URLs, not {urllib.parse.urlunsplit(url)!r}")
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._completed = 0
        self.errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def completed(self) -> int:
        with self._lock:
            return self._completed

    def wait_ready(self, deadline_s: float) -> bool:
        """Waits until the first URL accepts connections."""
        url = self.urls[0]
        end = time.monotonic() + deadline_s
        while time.monotonic() < end and not self._stop.is_set():
            try:
                conn = http.client.HTTPConnection(str(url.hostname), url.port or 80, timeout=1)
                conn.connect()
                conn.close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def _worker(self, index: int) -> None:
        conn: http.client.HTTPConnection | None = None
        i = index
        while not self._stop.is_set():
            url = self.urls[i % len(self.urls)]
            i += 1
            path = url.path or "/"
            if url.query:
                path += "?" + url.query
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(str(url.hostname), url.port or 80, timeout=self.timeout_s)
                conn.request("GET", path)
                conn.getresponse().read()
                with self._lock:
                    self._completed += 1
            except (OSError, http.client.HTTPException) as exc:
                self.errors += 1
                self.last_error = str(exc) or type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.05)
        if conn is not None:
            conn.close()

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._worker, args=(i,), name=f"load-{i}", daemon=True)
                         for i in range(self.concurrency)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 1)
