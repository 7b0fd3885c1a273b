"""The CI gate on packages as users have them: baselines written from a run,
a threshold, JUnit, go test -exec, several modules, vendoring, no cgo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from helpers import FIXTURES, audit_json, result_named, run_cli, write_module

# Each test builds and audits a throwaway module tree several times.
pytestmark = pytest.mark.slow

FREE_KEY = "\tdefer C.free(unsafe.Pointer(ckey))\n"
FREE_GONE = "\t_ = unsafe.Pointer(ckey) // the free is gone\n"

SIZES = ("--sizes", "100,200,400,800")

SERVICE = """
package service

/*
#include <stdlib.h>
#include <string.h>
static size_t lookup(const char *key) { return strlen(key); }
*/
import "C"

import "unsafe"

// Lookup copies key to C for the call and frees the copy.
func Lookup(key string) int {
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	return int(C.lookup(ckey))
}
"""

SERVICE_TEST = """
package service

import "testing"

func BenchmarkLookup(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Lookup("session")
	}
}
"""

CI_SNIPPET = ("bench", "--baseline", "cgo-audit-baseline.json", "--json", "cgo-audit.json",
              "--junit", "cgo-audit.xml", *SIZES, "./...")


def snippet(module: Path) -> subprocess.CompletedProcess[str]:
    """The README's CI step, run in the module as CI would."""
    return run_cli(*CI_SNIPPET, cwd=module)


def test_ci_snippet_fails_on_an_added_leak_and_passes_without_it(tmp_path):
    module = write_module(tmp_path / "svc", {"service/service.go": SERVICE,
                                            "service/service_test.go": SERVICE_TEST})
    # The team's starting point: audit once, accept what is there (nothing).
    first = run_cli("bench", "--json", "start.json", *SIZES, "./...", cwd=module)
    assert first.returncode == 0, first.stdout + first.stderr
    assert run_cli("baseline", "start.json", "-o", "cgo-audit-baseline.json", cwd=module).returncode == 0
    clean = snippet(module)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # A change forgets the free: the same step must now fail, with the figures.
    leaky = SERVICE.replace(FREE_KEY, FREE_GONE)
    (module / "service" / "service.go").write_text(leaky.lstrip())
    failed = snippet(module)
    assert failed.returncode == 1
    report = json.loads((module / "cgo-audit.json").read_text())
    lookup = result_named(report, "BenchmarkLookup")
    assert lookup["new_leak"] and lookup["c_leak_bytes_per_op"] == 8.0   # "session" + NUL
    junit = ET.parse(module / "cgo-audit.xml").getroot()
    (case,) = junit.iter("testcase")
    failure = case.find("failure")
    assert failure is not None and "8.00 C-B/op" in failure.get("message")
    assert "service.Lookup" in failure.text and "C.CString" in failure.text


def test_baseline_accepts_a_leak_but_not_a_new_site_in_the_same_benchmark(tmp_path):
    one_leak = SERVICE.replace(FREE_KEY, FREE_GONE)
    module = write_module(tmp_path / "svc", {"service/service.go": one_leak,
                                            "service/service_test.go": SERVICE_TEST})
    run_cli("bench", "--json", "start.json", *SIZES, "./...", cwd=module)
    run_cli("baseline", "start.json", "-o", "cgo-audit-baseline.json", cwd=module)
    accepted = snippet(module)
    assert accepted.returncode == 0, accepted.stdout + (module / "cgo-audit-baseline.json").read_text()
    # A second leak, at another site, in the same benchmark and within the bytes/op accepted.
    two_leaks = one_leak.replace("\treturn int(C.lookup(ckey))",
                                 "\t_ = C.CBytes([]byte{1})\n\treturn int(C.lookup(ckey))")
    baseline = json.loads((module / "cgo-audit-baseline.json").read_text())
    baseline["accepted"][0]["max_c_leak_bytes_per_op"] = 100
    (module / "cgo-audit-baseline.json").write_text(json.dumps(baseline))
    (module / "service" / "service.go").write_text(two_leaks.lstrip())
    assert snippet(module).returncode == 1


def test_threshold_tolerates_small_byte_leaks_only(tmp_path):
    args = ("--dir", str(FIXTURES), *SIZES, "--bench", "GetValueLeaky", "./cstring")
    proc, report = audit_json(tmp_path, *args, "--max-leak-bytes-per-op", "30")
    assert proc.returncode == 0 and result_named(report, "BenchmarkGetValueLeaky")["within_threshold"]
    assert "under the threshold" in proc.stdout
    proc, _ = audit_json(tmp_path, *args, "--max-leak-bytes-per-op", "20")
    assert proc.returncode == 1
    # A goroutine leak is not a byte leak: no threshold tolerates it.
    proc, _ = audit_json(tmp_path, "--dir", str(FIXTURES), *SIZES, "--bench", "BlockedGoroutines",
                         "--max-leak-bytes-per-op", "1e9", "./causes")
    assert proc.returncode == 1


def test_go_test_exec_audits_tests_and_benchmarks():
    cgo_audit = str(Path(sys.executable).with_name("cgo-audit"))
    if not os.access(cgo_audit, os.X_OK):
        pytest.skip("the cgo-audit script is not installed beside this Python (pip install -e .)")
    go = shutil.which("go") or "go"
    tests = subprocess.run([go, "test", "-count=1", "-exec", f"{cgo_audit} exec", "./cstring"], cwd=FIXTURES,
                           capture_output=True, text=True)
    assert tests.returncode != 0 and "TestGetValue" in tests.stdout
    assert "81.00 C-B/op" in tests.stdout   # three leaky lookups per run: 26 + 26 + 29 bytes
    leaky = subprocess.run([go, "test", "-count=1", "-run", "^$", "-bench", "GetValueLeaky",
                            "-exec", f"{cgo_audit} exec --sizes 100,200,400", "./cstring"],
                           cwd=FIXTURES, capture_output=True, text=True)
    assert leaky.returncode != 0 and "26.00 C-B/op" in leaky.stdout
    fixed = subprocess.run([go, "test", "-count=1", "-run", "^$", "-bench", "GetValueFixed",
                            "-exec", f"{cgo_audit} exec --sizes 100,200,400", "./cstring"],
                           cwd=FIXTURES, capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "clean" in fixed.stdout


LEAKY_DEP = """
package dep

/*
#include <stdlib.h>
void *dep_kept;
static void keep(void) { dep_kept = malloc(48); }
*/
import "C"

// Keep leaks 48 bytes of C heap.
func Keep() { C.keep() }
"""


def test_tree_of_modules_vendoring_tests_only_and_no_cgo(tmp_path):
    tree = tmp_path / "tree"
    write_module(tree / "dep", {"dep.go": LEAKY_DEP}, module="example.com/dep")
    app = write_module(tree / "app", {
        "user/user.go": "package user\n\nimport \"example.com/dep\"\n\nfunc Use() { dep.Keep() }\n",
        "user/user_test.go": "package user\n\nimport \"testing\"\n\nfunc TestUse(t *testing.T) { Use() }\n",
    }, module="example.com/app")
    with open(app / "go.mod", "a") as mod:
        mod.write("\nrequire example.com/dep v0.0.0\n\nreplace example.com/dep => ../dep\n")
    subprocess.run([shutil.which("go") or "go", "mod", "vendor"], cwd=app, check=True, capture_output=True)
    assert (app / "vendor" / "example.com" / "dep" / "dep.go").exists()
    write_module(tree / "pure", {
        "store/store.go": "package store\n\nvar kept [][]byte\n\n"
                          "func Add() { kept = append(kept, make([]byte, 8192)) }\n",
        "store/store_test.go": "package store\n\nimport \"testing\"\n\nfunc BenchmarkAdd(b *testing.B) {\n"
                               "\tfor i := 0; i < b.N; i++ {\n\t\tAdd()\n\t}\n}\n",
    }, module="example.com/pure")
    # No pattern: every module below the directory.
    proc, report = audit_json(tmp_path, "--dir", str(tree))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    names = {(r["package"], r["name"]) for r in report["results"]}
    assert names == {("example.com/app/user", "TestUse"), ("example.com/pure/store", "BenchmarkAdd")}
    use = result_named(report, "TestUse")   # vendored dependency, tests only
    assert use["verdict"] == "cgo-leak" and use["c_leak_bytes_per_op"] == 48.0
    assert any("several -test.count values" in note for note in use["notes"])
    add = result_named(report, "BenchmarkAdd")   # no cgo: still checked for the other causes
    assert add["verdict"] == "go-heap-leak" and add["c_leak_bytes_per_op"] == 0.0
    assert any("no cgo" in note for note in add["notes"])
    assert all(s["c_live_bytes"] is None for s in add["samples"])


def test_results_do_not_depend_on_jobs(tmp_path):
    args = ("--dir", str(FIXTURES), *SIZES, "--bench", "GetValue|CBytes", "./cstring", "./causes")
    def figures(jobs: str) -> list[tuple[str, str, float]]:
        (tmp_path / jobs).mkdir()
        _, report = audit_json(tmp_path / jobs, *args, "-j", jobs)
        return sorted((r["name"], r["verdict"], r["c_leak_bytes_per_op"]) for r in report["results"])

    assert figures("1") == figures("2")
    assert ("BenchmarkCBytesNeverFreed", "cgo-leak", 1024.0) in figures("3")


SKIPPING_TESTS = """
package service

import (
	"os"
	"testing"
)

func BenchmarkNeedsGPU(b *testing.B) {
	b.Skip("needs a GPU")
}

func BenchmarkModes(b *testing.B) {
	b.Run("leaky", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Keep()
		}
	})
	b.Run("remote", func(b *testing.B) {
		if os.Getenv("SERVICE_URL") == "" {
			b.Skip("SERVICE_URL not set")
		}
	})
}
"""

KEEPER = """
package service

/*
#include <stdlib.h>
static void *kept;
*/
import "C"


// Keep leaves 24 bytes of C heap behind on each call.
func Keep() { C.malloc(24) }
"""


def test_benchmarks_that_skip_themselves_are_reported_skipped_not_clean(tmp_path):
    module = write_module(tmp_path / "m", {"service.go": KEEPER, "service_test.go": SKIPPING_TESTS})
    junit = tmp_path / "audit.xml"
    proc, report = audit_json(tmp_path, "--dir", str(module), "--junit", str(junit), *SIZES)
    assert proc.returncode == 1, proc.stdout + proc.stderr   # the leaky sub-benchmark still fails
    by_name = {r["name"]: r for r in report["results"]}
    assert set(by_name) == {"BenchmarkNeedsGPU", "BenchmarkModes/leaky", "BenchmarkModes/remote"}
    assert by_name["BenchmarkNeedsGPU"]["verdict"] == "skipped"
    assert by_name["BenchmarkNeedsGPU"]["skipped"] == "needs a GPU"
    assert by_name["BenchmarkModes/remote"]["skipped"] == "SERVICE_URL not set"
    leaky = by_name["BenchmarkModes/leaky"]
    assert leaky["verdict"] == "cgo-leak" and leaky["c_leak_bytes_per_op"] == 24.0 and leaky["skipped"] is None
    assert "2 skipped themselves" in " ".join(proc.stdout.split())
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("skipped") == "2" and suite.get("failures") == "1"
    skipped = {case.get("name"): case.find("skipped") for case in suite.iter("testcase")}
    assert skipped["BenchmarkNeedsGPU"].get("message") == "needs a GPU"
    assert skipped["BenchmarkModes/leaky"] is None
