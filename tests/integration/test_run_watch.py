"""`cgo-audit run` and `watch` on a live fixture server under loopback load."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cgo_audit.measure.load import HttpLoad
from cgo_audit.measure.runner import ShimSession

from helpers import SERVER_CWD, PacedLoad, assert_one_line_error, audit_json, free_port, run_cli


def run_server(tmp_path, leakyserver, mode: str, *extra: str, key: str = "timeout", requests: int = 3000,
               server_args: tuple[str, ...] = ()):
    """`cgo-audit run` on the fixture server until the load has had `requests`
    answers (a state, however busy the machine; 300 s is only the bound)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    until = ("--requests", str(requests)) if requests else ()
    return audit_json(tmp_path, "--duration", "300", *until, "--interval", "0.25", "--pprof-url", base,
                      "--load", f"{base}/value?key={key}", "--cwd", str(SERVER_CWD), *extra,
                      "--", str(leakyserver), "-addr", f"127.0.0.1:{port}", "-mode", mode, *server_args,
                      command="run")


@pytest.mark.slow
def test_run_names_the_cstring_leak_per_request(tmp_path, leakyserver):
    # Enough requests (about 8 s idle) that the Go heap's warm-up and GC noise are well under 16 B a request.
    proc, report = run_server(tmp_path, leakyserver, "leaky", requests=40000)
    program = report["program"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert program["verdict"] == "cgo-leak" and program["per"] == "request"
    # Samples are taken while requests are in flight: per request within 1%.
    assert program["c_leak_bytes_per_op"] == pytest.approx(26.0, rel=0.01)
    assert program["c_leak_allocs_per_op"] == pytest.approx(2.0, rel=0.01)
    # pprof is blind to it: the Go heap is not what grows. Its shape, not a
    # figure per request, says so whatever the throughput: a few hundred KB
    # of request buffers in flight at a checkpoint make tens of B/req of
    # noise when the machine is busy, never a steady slope.
    go_heap = program["growth"]["go_heap_bytes"]
    assert "go-heap-leak" not in program["verdicts"] and go_heap["shape"] != "linear", go_heap
    assert abs(go_heap["total"]) < 4 << 20
    assert program["samples"][-1]["ops"] > 30000   # sampled just before the 40,000th answer stopped it
    assert any(site["function"].endswith("cstring.GetValueLeaky") for site in program["sites"])
    assert "C-B/req" in proc.stdout


def test_run_calls_the_fix_clean(tmp_path, leakyserver):
    proc, report = run_server(tmp_path, leakyserver, "fixed")
    assert proc.returncode == 0, proc.stdout
    assert report["program"]["verdict"] == "clean"


@pytest.mark.slow
def test_run_sees_goroutines_through_the_pprof_endpoint(tmp_path, leakyserver):
    proc, report = run_server(tmp_path, leakyserver, "goroutines")
    assert "program" in report, proc.stdout + proc.stderr
    program = report["program"]
    assert program["verdict"] == "goroutine-leak"
    assert program["goroutines_per_op"] == pytest.approx(1.0, rel=0.05)


@pytest.mark.slow
def test_run_killed_by_its_memory_limit_still_gets_a_verdict(tmp_path, leakyserver):
    # 60 KB keys: each request leaks a copy, so RSS passes the limit in seconds;
    # the run ends with the kill (no --requests: the 300 s are only the bound).
    # 5 ms a request, sampled every 0.1 s: dozens of samples before the kill
    # even on a fast idle machine.
    proc, report = run_server(tmp_path, leakyserver, "leaky", "--memory-limit", "200MiB", "--interval", "0.1",
                              key="k" * 60000, requests=0, server_args=("-delay", "5ms"))
    program = report["program"]
    assert "memory limit" in program["ended"]
    assert program["verdict"] == "cgo-leak" and proc.returncode == 1
    assert program["c_leak_bytes_per_op"] == pytest.approx(60000 + 1 + 18, rel=0.02)
    assert program["samples"][-1]["rss_bytes"] > 150 << 20


def test_run_without_a_command_or_with_a_missing_one(tmp_path):
    assert_one_line_error(run_cli("run", "--duration", "1"), "needs a command")
    assert_one_line_error(run_cli("run", "--requests", "10", "--", "true"), "--requests N needs --load URL")
    assert_one_line_error(run_cli("run", "--duration", "1", "--", str(tmp_path / "nope")), "command not found")


def test_watch_reads_the_c_heap_of_a_process_started_under_the_shim(tmp_path, shim_path, leakyserver):
    port = free_port()
    with ShimSession(shim_path) as session:
        server = subprocess.Popen([str(leakyserver), "-addr", f"127.0.0.1:{port}"], cwd=SERVER_CWD,
                                  env=session.environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # watch's figures are per second, so the load keeps a fixed pace (a
        # rate a busy machine still keeps, catching up when late) rather than
        # going as fast as the CPU allows: the slope is then steady however
        # busy the machine is.
        assert HttpLoad([f"http://127.0.0.1:{port}/value"]).wait_ready(20)
        pacer = PacedLoad(f"http://127.0.0.1:{port}/value", per_second=100)
        try:
            proc, report = audit_json(tmp_path, str(server.pid), "--duration", "10", "--interval", "0.25",
                                      "--pprof-url", f"http://127.0.0.1:{port}", command="watch")
        finally:
            pacer.stop()
            server.kill()
            server.wait()
    program = report["program"]
    assert program["per"] == "second" and program["verdict"] == "cgo-leak", proc.stdout
    assert program["c_leak_bytes_per_op"] > 0
    assert not any("C heap" in line for line in program["not_measured"])


def test_watch_says_what_it_cannot_measure(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        proc, report = audit_json(tmp_path, str(sleeper.pid), "--duration", "2", "--interval", "0.25",
                                  "--no-attach", command="watch")
    finally:
        sleeper.kill()
        sleeper.wait()
    # Without the C heap the audit is incomplete: never a bare clean.
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert report["program"]["verdict"] == "c-heap-not-measured"
    missing = " ".join(report["program"]["not_measured"])
    assert "not started under the shim" in missing and "no --pprof-url" in missing
    assert "not measured: C heap" in " ".join(proc.stdout.split())


def test_watch_a_pid_that_does_not_exist():
    assert_one_line_error(run_cli("watch", "999999999", "--duration", "1"), "no process with pid")
