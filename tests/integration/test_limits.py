"""A resource that grows until it stops at one of the process's limits has
been exhausted, not bounded: fd-leak (or cgo-leak) with the limit named,
never a plateau called clean."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from cgo_audit.measure.load import HttpLoad

from fleet_helpers import audit_until, server_pid, start_run, stop, value
from helpers import REPO, SERVER_CWD, audit_json, free_port, wait_for, write_module

pytestmark = pytest.mark.slow

FD_LIMIT = 256


def test_run_calls_fds_stopped_at_the_open_file_limit_a_leak(tmp_path, leakyserver):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # One pipe's read end kept open per request; each request takes 5 ms, so
    # the fds climb over a second or more before they reach the limit.
    proc, report = audit_json(tmp_path, "--duration", "6", "--interval", "0.25", "--concurrency", "1",
                              "--load", f"{base}/value", "--cwd", str(SERVER_CWD), "--",
                              str(leakyserver), "-addr", f"127.0.0.1:{port}", "-mode", "pipes", "-delay", "5ms",
                              command="run", fd_limit=FD_LIMIT)
    program = report["program"]
    assert proc.returncode == 1 and program["verdict"] == "fd-leak", proc.stdout + proc.stderr
    fds = program["growth"]["fds"]
    assert fds["shape"] == "at-limit" and fds["limit_value"] == FD_LIMIT
    assert fds["limit_name"] == f"the open-file limit ({FD_LIMIT})"
    # Exactly one fd per request, give or take the one request in flight at a sample.
    assert program["fds_per_op"] == pytest.approx(1.0, rel=0.05)
    assert max(s["fds"] for s in program["samples"]) >= FD_LIMIT - 3
    text = " ".join(proc.stdout.split())
    assert re.search(rf"grew 1\.0 fd/req until it hit the open-file limit \({FD_LIMIT}\) after \d+ s", text), text
    assert "bounded, not a leak" not in text


def test_run_names_the_memory_limit_a_c_leak_ran_into(tmp_path, leakyserver):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # 60 KB keys: each request leaks a copy (plus "testdata/app.conf" and
    # NULs). 5 ms a request, sampled every 0.1 s: the climb to the limit
    # takes dozens of samples even on an idle machine (a faster one would
    # reach it between the first few).
    proc, report = audit_json(tmp_path, "--duration", "60", "--interval", "0.1", "--memory-limit", "96MiB",
                              "--load", f"{base}/value?key={'k' * 60000}", "--cwd", str(SERVER_CWD), "--",
                              str(leakyserver), "-addr", f"127.0.0.1:{port}", "-mode", "leaky", "-delay", "5ms",
                              command="run")
    program = report["program"]
    assert proc.returncode == 1 and program["verdict"] == "cgo-leak", proc.stdout + proc.stderr
    assert "memory limit" in program["ended"]
    assert program["c_leak_bytes_per_op"] == pytest.approx(60000 + 1 + 18, rel=0.02)
    assert program["growth"]["c_bytes"]["limit_name"] == "the memory limit (96 MiB)"
    text = " ".join(proc.stdout.split())
    assert re.search(r"C heap grows (59|60)\d{3}\.\d\d B/req .* until it hit the memory limit \(96 MiB\) after \d+ s",
                     text), text


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[Path]:
    """A child of this process's memory cgroup (v1) limited to limit_bytes,
    removed after; the test skips saying why where it cannot have one."""
    entries = [line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().splitlines()]
    own = next((path for _, controllers, path in entries if "memory" in controllers.split(",")), None)
    parent = Path("/sys/fs/cgroup/memory") / (own or "/").lstrip("/")
    if own is None or not parent.is_dir():
        pytest.skip("no cgroup v1 memory controller to make a limited cgroup in")
    child = parent / f"cgo-audit-test-{os.getpid()}"
    try:
        child.mkdir()
        (child / "memory.limit_in_bytes").write_text(str(limit_bytes))
    except OSError as error:
        with contextlib.suppress(OSError):
            child.rmdir()
        pytest.skip(f"cannot make a limited memory cgroup ({error.strerror})")
    try:
        yield child
    finally:
        for pid in (child / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        wait_for(lambda: not (child / "cgroup.procs").read_text().strip(), 60, what="the cgroup to empty")
        child.rmdir()


def test_run_names_the_cgroup_memory_limit_a_c_leak_ran_into(tmp_path, leakyserver):
    # The server is moved into a cgroup of 160 MiB once it runs (as a
    # supervisor would), and leaks 60 KB a request until the cgroup's OOM
    # killer ends it: the limit read from the cgroup is named.
    with memory_cgroup(160 << 20) as cgroup:
        load = f"http://127.0.0.1:{{port}}/value?key={'k' * 60000}"
        # 5 ms a request, sampled every 0.1 s: dozens of samples before the OOM kill.
        proc, _, _ = start_run(leakyserver, "leaky", "--load", load, "--json", str(tmp_path / "report.json"),
                               seconds=300, interval=0.1, server_args=("-delay", "5ms"))
        try:
            (cgroup / "cgroup.procs").write_text(str(server_pid(proc)))
            out, _ = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                stop(proc)
    program = json.loads((tmp_path / "report.json").read_text())["program"]
    assert program["verdict"] == "cgo-leak", out
    assert program["growth"]["c_bytes"]["limit_name"] == "the cgroup's memory limit (160 MiB)", program["growth"]
    assert "cgroup's memory limit (160 MiB)" in " ".join(out.split())


def test_bench_calls_fds_stopped_at_the_open_file_limit_a_leak(tmp_path):
    # A benchmark that leaks a pipe per op and ignores the error once the
    # limit is reached: its fds stop at the limit in every larger run.
    module = write_module(tmp_path / "mod", {
        "pipes/pipes.go": """
            package pipes

            import "os"

            var kept []*os.File

            // Open leaks a pipe's read end (kept, so no finalizer closes it).
            func Open() {
                r, w, err := os.Pipe()
                if err != nil {
                    return
                }
                w.Close()
                kept = append(kept, r)
            }
            """,
        "pipes/pipes_test.go": """
            package pipes

            import "testing"

            func BenchmarkOpen(b *testing.B) {
                for i := 0; i < b.N; i++ {
                    Open()
                }
            }
            """,
    })
    proc, report = audit_json(tmp_path, "--dir", str(module), "--sizes", "50,100,200,400,800", "./...",
                              fd_limit=FD_LIMIT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = report["results"][0]
    assert result["verdict"] == "fd-leak", result["growth"]["fds"]
    fds = result["growth"]["fds"]
    assert fds["shape"] == "at-limit" and fds["limit_value"] == FD_LIMIT
    assert result["fds_per_op"] == pytest.approx(1.0, rel=0.02)
    text = " ".join(proc.stdout.split())
    assert re.search(rf"grew 1\.0 fd/op until it hit the open-file limit \({FD_LIMIT}\) at 40[01] ops", text), text


def test_watch_calls_fds_stopped_at_the_open_file_limit_a_leak(tmp_path, leakyserver):
    # The server alone runs under the low limit; 20 ms a request: about 50
    # fds a second, so the climb to the limit takes seconds and is watched.
    port = free_port()
    server = subprocess.Popen([str(leakyserver), "-addr", f"127.0.0.1:{port}", "-mode", "pipes", "-delay", "20ms"],
                              cwd=SERVER_CWD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT)))
    load = HttpLoad([f"http://127.0.0.1:{port}/value"], concurrency=1)
    try:
        assert load.wait_ready(20)
        load.start()
        # Stopped once the fds have sat at the limit (within the metric's
        # noise floor of 3) for as many samples as the climb took, however
        # long that is on a busy machine: a plateau there, not a slope.
        reached: list[float] = []

        def sat_at_limit(series: dict) -> bool:
            taken = value(series, "cgo_audit_samples_total") or 0
            if not reached and (value(series, "cgo_audit_open_fds") or 0) >= FD_LIMIT - 3:
                reached.append(taken)
            return bool(reached) and taken >= 2 * reached[0]

        proc, report = audit_until(tmp_path, "watch", str(server.pid), "--interval", "0.25", until=sat_at_limit,
                                   what="the fds to sit at the limit")
    finally:
        load.stop()
        server.kill()
        server.wait()
    program = report["program"]
    assert "fd-leak" in program["verdicts"], proc.stdout + proc.stderr
    fds = program["growth"]["fds"]
    assert fds["shape"] == "at-limit" and fds["limit_name"] == f"the open-file limit ({FD_LIMIT})"
    text = " ".join(proc.stdout.split())
    assert re.search(rf"until it hit the open-file limit \({FD_LIMIT}\) after \d+ s", text), text


def test_run_says_a_program_died_at_its_address_space_limit(tmp_path, leakyserver):
    # RLIMIT_AS (ulimit -v) for the audit and the server it starts: each
    # request leaks 60 KB until a malloc fails, which is fatal to Go.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out = tmp_path / "report.json"
    limit = 2 << 30
    proc = subprocess.run(
        [sys.executable, "-m", "cgo_audit", "run", "--json", str(out), "--duration", "60", "--interval", "0.1",
         "--load", f"{base}/value?key={'k' * 60000}", "--cwd", str(SERVER_CWD), "--", str(leakyserver),
         "-addr", f"127.0.0.1:{port}", "-mode", "leaky"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    program = json.loads(out.read_text())["program"]
    assert proc.returncode in (1, 2), proc.stdout + proc.stderr
    assert "exited with status 2" in program["ended"], program["ended"]   # Go's fatal error
    text = " ".join(proc.stdout.split())
    # Either enough samples came first (a C leak that ended at the limit), or
    # it died too soon for a fit, and the report says where it was.
    if program["verdict"] == "cgo-leak":
        assert program["growth"]["c_bytes"]["limit_name"] == "the address-space limit (2 GiB)"
    else:
        assert program["verdict"] == "inconclusive", program["verdicts"]
        # The limit is named exactly when the last sample before the death sat at it.
        last = program["samples"][-1]["vms_bytes"] if program["samples"] else 0
        named = "its virtual memory at the address-space limit (2 GiB) when last sampled" in text
        assert named == (last >= 0.98 * limit), (last, text)
