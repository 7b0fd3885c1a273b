"""Bad input gets one line and exit status 2, never a traceback; a target
that dies still reports the counters it had."""

from __future__ import annotations

import pytest

from helpers import assert_one_line_error, audit_json, run_cli, write_module

CGO_LEAK_THEN = """
package crashy

/*
#include <stdlib.h>
void *crashy_last; // visible, so the compiler cannot drop the malloc
static void leak100(void) { crashy_last = malloc(100); }
static void die(void) { abort(); }
*/
import "C"

func Step(i int) {
	C.leak100()
	if i == %d {
		C.die()
	}
}
"""

CRASHY_TEST = """
package crashy

import "testing"

func BenchmarkCrash(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Step(i)
	}
}
"""


def test_directory_that_is_not_a_module(tmp_path):
    assert_one_line_error(run_cli("bench", "--dir", str(tmp_path)), "not inside a Go module")


def test_directory_that_does_not_exist(tmp_path):
    assert_one_line_error(run_cli("bench", "--dir", str(tmp_path / "nope")), "no such directory")


def test_package_that_does_not_build_shows_gos_error(tmp_path):
    module = write_module(tmp_path / "m", {
        "broken/broken.go": "package broken\n\nimport \"C\"\n\nfunc F() { undefinedThing() }\n",
        "broken/broken_test.go": "package broken\n\nimport \"testing\"\n\nfunc BenchmarkF(b *testing.B) {}\n",
    })
    assert_one_line_error(run_cli("bench", "--dir", str(module)), "does not build", "undefinedThing")


def test_package_without_benchmarks(tmp_path):
    module = write_module(tmp_path / "m", {
        "nob/nob.go": "package nob\n\n// #include <stdlib.h>\nimport \"C\"\n\nfunc F() {}\n",
        "nob/nob_test.go": "package nob\n\nimport \"testing\"\n\nfunc TestF(t *testing.T) { F() }\n",
    })
    # Its tests would be audited instead; without that fallback there is nothing to audit.
    assert_one_line_error(run_cli("bench", "--dir", str(module), "--no-tests"), "no-benchmarks")


def test_statically_linked_package_is_named_as_such(tmp_path):
    module = write_module(tmp_path / "m", {
        "pure/pure.go": "package pure\n\nfunc F() int { return 1 }\n",
        "pure/pure_test.go": "package pure\n\nimport \"testing\"\n\nfunc BenchmarkF(b *testing.B) { F() }\n",
    })
    # Audited for the causes that need no shim; the report says why the C heap is not.
    proc = run_cli("bench", "--dir", str(module), "--sizes", "10,20,40")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    text = " ".join(proc.stdout.split())
    assert "statically linked" in text and "LD_PRELOAD cannot reach it" in text


@pytest.mark.slow
def test_target_that_crashes_still_reports_its_counters(tmp_path):
    module = write_module(tmp_path / "m", {"crashy/crashy.go": CGO_LEAK_THEN % 40,
                                           "crashy/crashy_test.go": CRASHY_TEST})
    proc, report = audit_json(tmp_path, "--dir", str(module), "--sizes", "10,100,200")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    result = report["results"][0]
    # Go's signal handler reports the abort() and exits with status 2.
    assert result["verdict"] == "error" and "SIGABRT: abort" in result["error"]
    crashed = result["samples"][-1]
    assert crashed["source"] == "exit" and crashed["status"] == "exited with status 2"
    # run1 (1 op) and 41 ops of the round that died each leaked 100 bytes before abort().
    assert crashed["c_live_bytes"] == 100 * (1 + 41)
    assert "counters gathered before it ended" in " ".join(proc.stdout.split())


@pytest.mark.slow
def test_target_that_hangs_is_killed_on_timeout(tmp_path):
    module = write_module(tmp_path / "m", {
        "hang/hang.go": "package hang\n\n// #include <unistd.h>\nimport \"C\"\n\nfunc Wait() { C.pause() }\n",
        "hang/hang_test.go": "package hang\n\nimport \"testing\"\n\nfunc BenchmarkHang(b *testing.B) { Wait() }\n",
    })
    proc, report = audit_json(tmp_path, "--dir", str(module), "--sizes", "1,2,3", "--timeout", "3")
    assert proc.returncode == 2
    assert "timed out" in report["results"][0]["error"]


def test_shim_that_fails_to_build(tmp_path, monkeypatch):
    env = {"CC": "false", "CGO_AUDIT_CACHE": str(tmp_path / "cache")}
    assert_one_line_error(run_cli("bench", "--dir", str(tmp_path), env=env), "shim failed to build")


def test_missing_compiler_and_missing_go(tmp_path):
    assert_one_line_error(run_cli("bench", env={"CC": "no-such-cc", "CGO_AUDIT_CACHE": str(tmp_path)}),
                          "no C compiler")
    assert_one_line_error(run_cli("bench", "--dir", str(tmp_path), env={"GO": "no-such-go"}),
                          "Go toolchain is not installed")


@pytest.mark.parametrize("content", ["not json", "{\"accepted\": 3}", "{\"accepted\": [{\"package\": 1}]}"])
def test_bad_baseline_file(tmp_path, content):
    baseline = tmp_path / "b.json"
    baseline.write_text(content)
    assert_one_line_error(run_cli("bench", "--baseline", str(baseline)), "baseline file")
