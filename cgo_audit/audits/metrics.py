"""`--metrics-addr`: what `run` and `watch` measure, served for Prometheus to
scrape through prometheus_client. A collector reads the samples gathered so
far at scrape time (nothing is computed between scrapes), so a scrape always
shows the latest sample, the slopes fitted over every sample of the current
start of the program, and the verdict those slopes give.

Names follow Prometheus' conventions: a `cgo_audit_` prefix, the unit in the
name, `_total` for counters. Every series carries `pid` and `program`, so
several audited processes behind one Prometheus can be told apart."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cgo_audit.audits.live import LiveFigures
from cgo_audit.audits.run import analyse_series
from cgo_audit.errors import AuditError
from cgo_audit.model import ProgramSample
from cgo_audit.verdicts import analysis

# The latest sample's figures: (metric name, sample field, help).
GAUGES = (
    ("cgo_audit_c_heap_live_bytes", "c_bytes", "C heap bytes allocated and not yet freed (counted by the shim)"),
    ("cgo_audit_c_heap_live_blocks", "c_allocs", "C heap blocks allocated and not yet freed"),
    ("cgo_audit_c_heap_peak_bytes", "c_peak_bytes", "The C heap's highest live bytes so far"),
    ("cgo_audit_resident_memory_bytes", "rss_bytes", "Resident memory, without the shim's own side table"),
    ("cgo_audit_go_heap_live_bytes", "go_heap_bytes", "Go heap live after the last GC (from net/http/pprof)"),
    ("cgo_audit_goroutines", "goroutines", "Goroutines (from net/http/pprof)"),
    ("cgo_audit_open_fds", "fds", "Open file descriptors"),
    ("cgo_audit_open_sockets", "sockets", "Open sockets"),
    ("cgo_audit_threads", "threads", "OS threads"),
)

# The fitted growth per op: (metric name, analysis metric key, help).
SLOPES = (
    ("cgo_audit_c_heap_growth_bytes_per_op", analysis.C_BYTES.key, "C heap growth per op, fitted"),
    ("cgo_audit_c_heap_growth_blocks_per_op", analysis.C_ALLOCS.key, "C heap blocks gained per op, fitted"),
    ("cgo_audit_go_heap_growth_bytes_per_op", analysis.GO_HEAP.key, "Go heap growth per op, fitted"),
    ("cgo_audit_resident_memory_growth_bytes_per_op", analysis.RSS.key, "RSS growth per op, fitted"),
    ("cgo_audit_goroutines_growth_per_op", analysis.GOROUTINES.key, "Goroutines gained per op, fitted"),
    ("cgo_audit_open_fds_growth_per_op", analysis.FDS.key, "File descriptors gained per op, fitted"),
)

# Too few samples is not "clean": it is its own word, as in the reports.
INSUFFICIENT = "insufficient"
UNDECIDED = "undecided"
VERDICT_STATES = (*analysis.VERDICT_ORDER, analysis.CLEAN, UNDECIDED, INSUFFICIENT)
MIN_SAMPLES = 4


def fd_limit(pid: int) -> int | None:
    """The soft RLIMIT_NOFILE of pid: where its fds run out."""
    try:
        soft, _hard = psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)
    except (psutil.Error, OSError):
        return None
    return soft if soft >= 0 else None


def cgroup_memory_limit(pid: int) -> int | None:
    """memory.max of pid's cgroup (v2), where the OOM killer steps in; None
    when unlimited or unreadable (a Kubernetes container has one)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            path = Path("/sys/fs/cgroup") / line[3:].lstrip("/") / "memory.max"
            try:
                text = path.read_text().strip()
            except OSError:
                return None
            return int(text) if text.isdigit() else None
    return None


class Families:
    """Metric families of one process: every sample carries its pid and program."""

    def __init__(self, pid: int | None, program: str) -> None:
        self.names = ["pid", "program"]
        self.values = [str(pid), program]

    def gauge(self, name: str, doc: str, value: float, extra: dict[str, str] | None = None) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=self.names + list(extra or {}))
        family.add_metric(self.values + list((extra or {}).values()), value)
        return family

    def counter(self, name: str, doc: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=self.names)
        family.add_metric(self.values, value)
        return family

    def gauges(self, name: str, doc: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
        """One family, a sample per value of label (a state set: one 1, the rest 0)."""
        family = GaugeMetricFamily(name, doc, labels=[*self.names, label])
        for key, value in values.items():
            family.add_metric([*self.values, key], value)
        return family


class ProgramCollector(Collector):
    """Reads LiveFigures when Prometheus scrapes."""

    def __init__(self, figures: LiveFigures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        samples = self.figures.current()
        if not samples:
            return
        last = samples[-1]
        pid = last.pid if last.pid is not None else self.figures.pid
        out = Families(pid, self.figures.program)
        for name, key, doc in GAUGES:
            value = getattr(last, key)
            if value is not None:
                yield out.gauge(name, doc, value)
        yield out.gauge("cgo_audit_shim_active", "1 when the shim counts this process's C heap",
                        0 if last.c_bytes is None else 1)
        if last.ops is not None:
            yield out.counter("cgo_audit_load_requests", "Requests --load completed", last.ops)
        yield out.counter("cgo_audit_samples", "Samples taken of the program", self.figures.count())
        if pid is not None:
            limit = fd_limit(pid)
            if limit is not None:
                yield out.gauge("cgo_audit_fd_limit", "Soft limit on open file descriptors (RLIMIT_NOFILE)", limit)
            memory = self.figures.memory_limit_bytes or cgroup_memory_limit(pid)
            if memory is not None:
                yield out.gauge("cgo_audit_memory_limit_bytes",
                                "Memory limit: --memory-limit, else the cgroup's memory.max", memory)
        yield from self._trends(samples, out)

    def _trends(self, samples: list[ProgramSample], out: Families) -> Iterator[Metric]:
        per = {"per": self.figures.per}
        found: tuple[str, ...] = ()
        state = INSUFFICIENT
        if len(samples) >= MIN_SAMPLES:
            growth, verdicts = analyse_series(samples, self.figures.per)
            for name, key, doc in SLOPES:
                if key in growth:
                    yield out.gauge(name, f"{doc} (an op is a {self.figures.per})", growth[key].per_op, per)
            found = tuple(v for v in verdicts.all if v != analysis.CLEAN)
            state = verdicts.main
            if state == analysis.CLEAN and verdicts.undecided:
                state = UNDECIDED
        yield out.gauges("cgo_audit_verdict", "1 for each verdict the trends give so far, else 0", "verdict",
                         {v: 1 if v in found or v == state else 0 for v in VERDICT_STATES})


ADDRESS = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:]*)):(?P<port>\d{1,5})$")


def parse_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:9464', ':9464' (every interface), '[::1]:9464'."""
    match = ADDRESS.match(text.strip())
    if match is None or not 0 <= int(match.group("port")) <= 65535:
        raise AuditError(f"--metrics-addr takes HOST:PORT (e.g. 127.0.0.1:9464), not {text!r}")
    host = match.group("v6") or match.group("host") or "0.0.0.0"
    return host, int(match.group("port"))


@contextmanager
def serve_metrics(address: str | None, figures: LiveFigures) -> Iterator[str | None]:
    """Serves figures on http://ADDRESS/metrics while the block runs; yields
    the URL (None when no address was asked for)."""
    if not address:
        yield None
        return
    host, port = parse_address(address)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProgramCollector(figures))
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise AuditError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from None
    bound = server.server_address[1]
    try:
        yield f"http://{host if ':' not in host else f'[{host}]'}:{bound}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

