"""goaudit/prom: the C heap as Prometheus metrics from inside a Go program,
through client_golang. A real program links the collector, runs under the
real shim, and its /metrics agrees exactly with the shim's region. The
collector's module needs client_golang from the Go module proxy: without it
these tests skip."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from cgo_audit.measure.runner import ShimSession
from cgo_audit.toolchain.gotool import go_executable
from cgo_audit.toolchain.layout import read_layout

from helpers import GO_HELPERS, downloaded_module, write_module
from loopback_server import WAIT_S, Server

PROM_MODULE = GO_HELPERS / "prom"
CLIENT_GOLANG = "github.com/prometheus/client_golang"
CLIENT_VERSION = re.search(rf"^\s*{re.escape(CLIENT_GOLANG)} (v\S+)$", (PROM_MODULE / "go.mod").read_text(),
                           re.M).group(1)
LEAK_BYTES = 12345

PROGRAM = """
package main

// #include <stdlib.h>
import "C"

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"

	"github.com/cgo-audit/cgo-audit/goaudit/prom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	prometheus.MustRegister(prom.NewCollector())
	http.Handle("/metrics", promhttp.Handler())
	http.HandleFunc("/leak", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("bytes"))
		C.malloc(C.size_t(n)) // never freed
		fmt.Fprintln(w, "ok")
	})
	log.Fatal(http.ListenAndServe(os.Args[1], nil))
}
"""


@pytest.fixture(scope="module")
def metrics_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A program of a user's own module that links the collector (goaudit
    from this checkout through replace directives, as the docs show)."""
    root = write_module(tmp_path_factory.mktemp("promuser"), {"main.go": PROGRAM}, module="example.com/promuser")
    with (root / "go.mod").open("a") as mod:
        mod.write(f"\nreplace github.com/cgo-audit/cgo-audit/goaudit => {GO_HELPERS}\n"
                  f"replace github.com/cgo-audit/cgo-audit/goaudit/prom => {PROM_MODULE}\n")
    shutil.copy(PROM_MODULE / "go.sum", root / "go.sum")
    downloaded_module(CLIENT_GOLANG, CLIENT_VERSION, "client_golang", cwd=root)
    for command in (["mod", "tidy"], ["build", "-o", "promuser", "."]):
        proc = subprocess.run([go_executable(), *command], cwd=root, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    return root / "promuser"


def listen(address: str) -> list[str]:
    return [address]


@pytest.fixture
def shim_session(shim_path: Path) -> Iterator[ShimSession]:
    with ShimSession(shim_path) as session:
        yield session


def metrics(server: Server) -> dict[str, float]:
    """The cgo_audit_ series of one scrape, by name (labels checked apart)."""
    status, text = server.get("/metrics")
    assert status == 200
    values = {}
    for line in text.splitlines():
        match = re.match(r'^(cgo_audit_\w+)\{pid="(\d+)",program="promuser"\} (\S+)$', line)
        if match:
            assert int(match.group(2)) == server.proc.pid
            values[match.group(1)] = float(match.group(3))
    return values


def stable_scrape(server: Server, session: ShimSession):
    """A scrape taken while the region did not move, and the region then."""
    deadline = time.monotonic() + WAIT_S
    while True:
        before = session.main_cheap(server.proc.pid)
        scraped = metrics(server)
        after = session.main_cheap(server.proc.pid)
        if before is not None and before == after:
            return scraped, after
        assert time.monotonic() < deadline, "the C heap never stayed still around a scrape"
        time.sleep(0.05)


@pytest.mark.network
def test_metrics_agree_with_the_region_and_count_a_known_leak(metrics_program, shim_session):
    layout = read_layout(metrics_program).environment_value()
    server = Server(metrics_program, shim_session.environment(extra={"CGO_AUDIT_GO_LAYOUT": layout}), listen)
    try:
        first, region = stable_scrape(server, shim_session)
        assert first["cgo_audit_shim_active"] == 1
        assert first["cgo_audit_c_heap_live_bytes"] == region.user_live_bytes
        assert first["cgo_audit_c_heap_live_blocks"] == region.user_live_allocs
        assert first["cgo_audit_c_heap_peak_bytes"] == region.peak_live_bytes
        assert (first["cgo_audit_c_heap_allocated_bytes_total"] - first["cgo_audit_c_heap_freed_bytes_total"]
                == region.user_live_bytes)
        assert (first["cgo_audit_c_heap_allocations_total"] - first["cgo_audit_c_heap_frees_total"]
                == region.user_live_allocs)

        status, _ = server.get(f"/leak?bytes={LEAK_BYTES}")
        assert status == 200
        second, region = stable_scrape(server, shim_session)
        assert second["cgo_audit_c_heap_live_bytes"] == region.user_live_bytes
        assert second["cgo_audit_c_heap_live_bytes"] - first["cgo_audit_c_heap_live_bytes"] == LEAK_BYTES
        assert second["cgo_audit_c_heap_live_blocks"] - first["cgo_audit_c_heap_live_blocks"] == 1
        assert second["cgo_audit_c_heap_peak_bytes"] == region.peak_live_bytes >= region.live_bytes
        grown = second["cgo_audit_c_heap_allocated_bytes_total"] - first["cgo_audit_c_heap_allocated_bytes_total"]
        freed = second["cgo_audit_c_heap_freed_bytes_total"] - first["cgo_audit_c_heap_freed_bytes_total"]
        assert grown - freed == LEAK_BYTES and grown >= LEAK_BYTES
    finally:
        server.close()


@pytest.mark.network
def test_without_the_shim_only_the_shim_gauge_is_exported(metrics_program):
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    server = Server(metrics_program, env, listen)
    try:
        assert metrics(server) == {"cgo_audit_shim_active": 0}
    finally:
        server.close()


@pytest.mark.network
def test_the_collector_passes_client_golangs_pedantic_checks_under_the_shim(metrics_program, shim_session):
    # metrics_program has fetched client_golang; the package's own Go test
    # gathers through a pedantic registry (names, help, labels, types).
    proc = subprocess.run([go_executable(), "test", "-count=1", "-v", "-run", "TestCollectorIsConsistent", "."],
                          cwd=PROM_MODULE, env=shim_session.environment(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--- PASS: TestCollectorIsConsistent" in proc.stdout
