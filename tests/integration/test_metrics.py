"""`run` and `watch --metrics-addr`: the real endpoint, scraped while a real
fixture server runs under the shim."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import psutil
import pytest

from cgo_audit.measure.load import HttpLoad
from cgo_audit.measure.runner import ShimSession

from fleet_helpers import scrape, scrape_text, sequential_requests, server_pid, start_run, stop, value
from helpers import REPO, SERVER_CWD, assert_one_line_error, free_port, run_cli, wait_for

pytestmark = pytest.mark.slow


def test_run_serves_the_slopes_and_verdict_of_a_leak_under_load(leakyserver):
    proc, url, port = start_run(leakyserver, "leaky", "--load", "http://127.0.0.1:{port}/value?key=timeout",
                                "--pprof-url", "http://127.0.0.1:{port}")
    try:
        pid = server_pid(proc)
        me = {"pid": str(pid), "program": "leakyserver"}
        # Enough requests that one request's C blocks in flight at a sample
        # (4.6 KB) move the slope by well under 1% (as in test_run_watch).
        series = wait_for(lambda: (s := scrape(url)) and value(s, "cgo_audit_verdict", verdict="cgo-leak", **me) == 1
                          and value(s, "cgo_audit_goroutines", **me) is not None
                          and (value(s, "cgo_audit_load_requests_total", **me) or 0) >= 40000 and s, 180, interval=0.2)
        assert isinstance(series, dict)
        # The slopes are fitted per request of the counted load: the fixture leaks
        # C.CString("timeout") and C.CString(value) = 8 + 18 bytes, 2 blocks.
        assert value(series, "cgo_audit_c_heap_growth_bytes_per_op", per="request", **me) == pytest.approx(26, rel=0.01)
        assert value(series, "cgo_audit_c_heap_growth_blocks_per_op", per="request", **me) == pytest.approx(2, rel=0.01)
        assert value(series, "cgo_audit_verdict", verdict="clean", **me) == 0
        assert value(series, "cgo_audit_shim_active", **me) == 1
        assert value(series, "cgo_audit_fd_limit", **me) == psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)[0]
        assert value(series, "cgo_audit_open_fds", **me) == pytest.approx(psutil.Process(pid).num_fds(), abs=4)
        requests = value(series, "cgo_audit_load_requests_total", **me)
        assert requests and requests > 0
        # A gauge read at scrape time: the next scrape has newer figures.
        later = wait_for(lambda: (s := scrape(url))
                         and (value(s, "cgo_audit_load_requests_total", **me) or 0) > requests and s, 90, interval=0.2)
        assert value(later, "cgo_audit_c_heap_live_bytes", **me) > value(series, "cgo_audit_c_heap_live_bytes", **me)
        # Prometheus' own linter accepts the names (units, _total), one family per name.
        text = scrape_text(url)
        helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP")]
        assert len(helps) == len(set(helps)) and "cgo_audit_verdict" in helps
        if shutil.which("promtool"):
            lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
            assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
    finally:
        out = stop(proc)
    assert "Traceback" not in out, out


def settled_scrape(url: str, me: dict[str, str]) -> dict | None:
    """A scrape whose C heap a newer sample confirms (no request in flight), or None."""
    before, after = scrape(url), scrape(url)
    if not before or not after:
        return None
    newer = value(before, "cgo_audit_samples_total", **me) < value(after, "cgo_audit_samples_total", **me)
    same = value(before, "cgo_audit_c_heap_live_bytes", **me) == value(after, "cgo_audit_c_heap_live_bytes", **me)
    return after if newer and same else None


def test_run_c_heap_gauges_are_exact_per_request(leakyserver):
    # No --load: the test is the load, so it knows exactly how many requests
    # were served, and the gauges must move by exactly 26 bytes and 2 blocks each.
    proc, url, port = start_run(leakyserver, "leaky")
    try:
        pid = server_pid(proc)
        me = {"pid": str(pid), "program": "leakyserver"}
        ready = HttpLoad([f"http://127.0.0.1:{port}/value"])
        assert ready.wait_ready(60)
        sequential_requests(port, 1)  # anything a first request sets up once
        first = wait_for(lambda: (s := scrape(url)) and value(s, "cgo_audit_c_heap_live_bytes", **me) is not None
                         and s, 90, interval=0.2)
        settled = wait_for(lambda: settled_scrape(url, me), 90, interval=0.2)
        assert first
        bytes0 = value(settled, "cgo_audit_c_heap_live_bytes", **me)
        blocks0 = value(settled, "cgo_audit_c_heap_live_blocks", **me)
        sequential_requests(port, 500)
        wait_for(lambda: (s := scrape(url)) and value(s, "cgo_audit_c_heap_live_bytes", **me) == bytes0 + 26 * 500
             and value(s, "cgo_audit_c_heap_live_blocks", **me) == blocks0 + 2 * 500, 60, interval=0.2)
        sequential_requests(port, 250)
        final = wait_for(lambda: (s := scrape(url))
                         and value(s, "cgo_audit_c_heap_live_bytes", **me) == bytes0 + 26 * 750 and s, 60, interval=0.2)
        assert value(final, "cgo_audit_c_heap_live_blocks", **me) == blocks0 + 2 * 750
        # Without --load an op is a second, and no request counter is made up.
        assert value(final, "cgo_audit_load_requests_total", **me) is None
    finally:
        out = stop(proc)
    assert "Traceback" not in out, out


def test_watch_serves_the_c_heap_of_a_process_started_under_the_shim(shim_path, leakyserver):
    port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with ShimSession(shim_path) as session:
        server = subprocess.Popen([str(leakyserver), "-addr", f"127.0.0.1:{port}"], cwd=SERVER_CWD,
                                  env=session.environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        watch = None
        try:
            assert HttpLoad([f"http://127.0.0.1:{port}/value"]).wait_ready(60)
            sequential_requests(port, 1)
            watch = subprocess.Popen([sys.executable, "-m", "cgo_audit", "watch", str(server.pid), "--quiet",
                                      "--interval", "0.25", "--metrics-addr", f"127.0.0.1:{metrics_port}"],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            me = {"pid": str(server.pid), "program": "leakyserver"}
            settled = wait_for(lambda: settled_scrape(url, me), 90, interval=0.2)
            bytes0 = value(settled, "cgo_audit_c_heap_live_bytes", **me)
            sequential_requests(port, 300)
            wait_for(lambda: (s := scrape(url))
                     and value(s, "cgo_audit_c_heap_live_bytes", **me) == bytes0 + 26 * 300, 60, interval=0.2)
        finally:
            if watch is not None:
                out = stop(watch)
                assert "Traceback" not in out, out
            server.kill()
            server.wait()


def test_bad_metrics_addresses(tmp_path):
    assert_one_line_error(run_cli("run", "--duration", "1", "--metrics-addr", "nonsense", "--", "true"),
                          "--metrics-addr takes HOST:PORT")
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(run_cli("watch", str(os.getpid()), "--duration", "1",
                                      "--metrics-addr", f"127.0.0.1:{port}"), "cannot serve metrics")


def test_a_stopped_run_stops_its_target(leakyserver):
    # Kubernetes and CI stop with SIGTERM: the server must not outlive its auditor.
    proc, url, _port = start_run(leakyserver, "fixed")
    pid = server_pid(proc)
    wait_for(lambda: scrape(url), 90, interval=0.2)
    proc.terminate()
    proc.communicate(timeout=60)
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             30, interval=0.2)
