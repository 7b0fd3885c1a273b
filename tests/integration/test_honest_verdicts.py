"""No verdict without evidence: what was not measured, too few samples, a
target killed before its figures settled, a shape still undecided after
the largest runs, each get a word of their own and exit 2, never `clean`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import psutil
import pytest

from cgo_audit.measure.load import HttpLoad
from cgo_audit.verdicts import analysis

from fleet_helpers import audit_until, value
from helpers import SERVER_CWD, audit_json, free_port, run_cli, write_module

pytestmark = pytest.mark.slow


def test_decide_orders_leaks_before_incomplete_words():
    flat = analysis.classify(analysis.C_BYTES, [1, 2, 4, 8], [0, 0, 0, 0])
    growing = analysis.classify(analysis.C_BYTES, [1000, 2000, 4000, 8000, 16000], [704, 768, 832, 896, 960])
    linear = analysis.classify(analysis.FDS, [1, 2, 4, 8], [1, 2, 4, 8])
    assert growing.shape == analysis.GROWING
    assert analysis.decide({"c_bytes": flat}).all == ("clean",)
    assert analysis.decide({"c_bytes": flat}, c_heap_measured=False).all == ("c-heap-not-measured",)
    assert analysis.decide({"c_bytes": growing}).main == "undecided"
    assert analysis.decide({}, too_little="only 2 samples").all == ("inconclusive",)
    # A leak that shows is a leak, whatever else is missing; what was not
    # measured is still said.
    both = analysis.decide({"c_bytes": flat, "fds": linear}, c_heap_measured=False, too_little="short")
    assert both.all == ("fd-leak", "c-heap-not-measured") and both.is_leak


def test_watch_without_the_shim_says_the_c_heap_was_not_measured(tmp_path, leakyserver):
    # Where watch can attach the shim to a running process, refuse it here.
    refuse = ["--no-attach"] if "--no-attach" in run_cli("watch", "--help").stdout else []
    port = free_port()
    server = subprocess.Popen([str(leakyserver), "-addr", f"127.0.0.1:{port}", "-mode", "fixed"], cwd=SERVER_CWD,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load = HttpLoad([f"http://127.0.0.1:{port}/value"])
    try:
        assert load.wait_ready(20)
        load.start()
        # Stopped once a dozen samples have both sides (the Go side through
        # the pprof endpoint, which answers a little late), however busy
        # the machine.
        proc, report = audit_until(
            tmp_path, "watch", str(server.pid), "--interval", "0.25", "--pprof-url", f"http://127.0.0.1:{port}",
            *refuse, until=lambda s: (value(s, "cgo_audit_samples_total") or 0) >= 12
            and value(s, "cgo_audit_goroutines") is not None, what="a dozen samples")
    finally:
        load.stop()
        server.kill()
        server.wait()
    program = report["program"]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert program["verdict"] == "c-heap-not-measured" and program["verdicts"] == ["c-heap-not-measured"]
    assert program["incomplete"] is True
    # Not measured is not flat: no figure at all, and the sentence says so.
    assert program["c_leak_bytes_per_op"] is None and program["c_leak_allocs_per_op"] is None
    assert program["goroutines_per_op"] is not None and program["fds_per_op"] is not None
    text = " ".join(proc.stdout.split())
    assert "- C-B/s" in text and "not measured: C heap" in text and "clean" not in text
    assert "INCOMPLETE" in text and "(exit 2)" in text


def test_run_of_a_target_killed_after_a_second_is_inconclusive(tmp_path):
    # The churn loop: leaks ~3.8 MB/s of C heap, then someone else
    # SIGKILLs it about a second after it started.
    churn_dir = write_module(tmp_path / "churn", {"main.go": """
        package main

        // #include <stdlib.h>
        import "C"

        import (
            "strings"
            "time"
        )

        func main() {
            value := strings.Repeat("x", 3799)
            for {
                for i := 0; i < 100; i++ {
                    C.CString(value)
                }
                time.Sleep(100 * time.Millisecond)
            }
        }
        """})
    churn = churn_dir / "churn"
    subprocess.run([shutil.which("go") or "go", "build", "-o", str(churn), "."], cwd=churn_dir, check=True)
    out = tmp_path / "report.json"
    audit = subprocess.Popen([sys.executable, "-m", "cgo_audit", "run", "--duration", "20", "--interval", "0.5",
                              "--json", str(out),
                              "--", str(churn)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    target = None
    deadline = time.monotonic() + 60
    while target is None and time.monotonic() < deadline and audit.poll() is None:
        target = next((p for p in psutil.Process(audit.pid).children(recursive=True)
                       if p.name() == "churn"), None)
        time.sleep(0.02)
    assert target is not None, "the target never started"
    time.sleep(1.0)   # someone else's kill, a second in: at most three samples, 0.5 s apart
    target.kill()
    stdout, stderr = audit.communicate(timeout=120)
    import json

    program = json.loads(out.read_text())["program"]
    assert audit.returncode == 2, stdout + stderr
    assert program["verdict"] == "inconclusive" and program["incomplete"], program["verdicts"]
    why = " ".join(program["why_incomplete"])
    assert "killed by SIGKILL" in why and "before the 20s asked for" in why and "a verdict needs at least 4" in why
    if sum(s["c_bytes"] is not None for s in program["samples"]) >= 2:   # the raw changes it saw are still said
        assert any(note.startswith("measured over") and "C heap +" in note for note in program["notes"]), \
            program["notes"]
    # Every figure it has is still reported.
    assert 1 <= len(program["samples"]) <= 3
    text = " ".join(stdout.split())
    assert "inconclusive" in text and "clean" not in text and "(exit 2)" in text


def test_bench_shape_still_undecided_after_the_largest_runs_is_not_clean(tmp_path):
    # 64 B at every power-of-two op: the C heap grows by log2(N), never
    # settling and never steady.
    module = write_module(tmp_path / "mod", {
        "logleak/logleak.go": """
            package logleak

            // #include <stdlib.h>
            import "C"

            var kept []*C.char

            // Step leaks 64 bytes when i is a power of two.
            func Step(i int) {
                if i&(i-1) == 0 {
                    kept = append(kept, (*C.char)(C.malloc(64)))
                }
            }
            """,
        "logleak/logleak_test.go": """
            package logleak

            import "testing"

            func BenchmarkStep(b *testing.B) {
                for i := 1; i <= b.N; i++ {
                    Step(i)
                }
            }
            """,
    })
    junit = tmp_path / "report.xml"
    proc, report = audit_json(tmp_path, "--dir", str(module), "--sizes", "1000,2000,4000,8000,16000",
                              "--junit", str(junit), "./...")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    result = report["results"][0]
    assert result["verdict"] == "undecided" and result["incomplete"], result["growth"]["c_bytes"]
    assert result["growth"]["c_bytes"]["shape"] == "growing"
    # log2: 64 B per doubling of the run, exactly.
    assert result["growth"]["c_bytes"]["segment_per_op"][-1] == pytest.approx(64 / 8000)
    assert any("C heap neither settled nor grew steadily" in why for why in result["why_incomplete"])
    case = ET.parse(junit).getroot().find(".//testcase")
    assert case is not None and case.find("error") is not None
    assert case.find("error").get("type") == "audit-incomplete"
    assert "1 incomplete" in " ".join(proc.stdout.split())
