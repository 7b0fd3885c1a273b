"""`cgo-audit bench` on the bundled fixtures: the seed's leak at exactly
26 B/op in 2 allocs/op with the Go heap flat, its fix clean."""

from __future__ import annotations

import json
import shutil

import pytest

from helpers import CSTRING_PACKAGE, FIXTURES, audit_json, result_named, run_cli, write_module

BASELINE = FIXTURES / "cgo-audit-baseline.json"


@pytest.fixture(scope="module")
def cstring_audit(tmp_path_factory):
    return audit_json(tmp_path_factory.mktemp("audit"), "--dir", str(FIXTURES), "./cstring")


def test_leaky_benchmark_leaks_exactly_26_bytes_in_2_allocs_per_op(cstring_audit):
    proc, report = cstring_audit
    leaky = result_named(report, "BenchmarkGetValueLeaky")
    assert leaky["package"] == CSTRING_PACKAGE
    assert leaky["verdict"] == "cgo-leak" and leaky["verdicts"] == ["cgo-leak"]
    assert leaky["c_leak_bytes_per_op"] == 26.0
    assert leaky["c_leak_allocs_per_op"] == 2.0
    assert abs(leaky["go_heap_growth_bytes_per_op"]) < 16
    assert leaky["growth"]["c_bytes"]["shape"] == "linear"
    samples = leaky["samples"]
    assert len(samples) >= 4 and all(s["source"] == "probe" for s in samples)
    for sample in samples:  # every run, not just the fit: 26 bytes per operation
        assert sample["c_live_bytes"] == 26 * sample["ops"]
        assert sample["c_live_allocs"] == 2 * sample["ops"]


def test_fixed_benchmark_is_clean(cstring_audit):
    proc, report = cstring_audit
    fixed = result_named(report, "BenchmarkGetValueFixed")
    assert fixed["verdict"] == "clean" and fixed["verdicts"] == ["clean"]
    assert fixed["c_leak_bytes_per_op"] == 0.0 and fixed["c_leak_allocs_per_op"] == 0.0
    assert all(s["c_live_bytes"] == 0 for s in fixed["samples"])


def test_terminal_report_reads_like_benchmem_and_says_pprof_is_blind(cstring_audit):
    proc, report = cstring_audit
    assert proc.returncode == 1 and report["exit_status"] == 1  # a leak, and no baseline
    lines = proc.stdout.splitlines()
    at = next(i for i, text in enumerate(lines) if text.startswith("BenchmarkGetValueLeaky"))
    row = " ".join(lines[at:at + 2])   # the figures sit under the name when the row passes 80 columns
    assert "26.00 C-B/op" in row and "2.00 C-allocs/op" in row and "cgo-leak" in row
    assert all(len(line) <= 80 for line in lines if not line.startswith("pkg:"))
    assert "go tool pprof cannot see this leak" in " ".join(proc.stdout.split())
    assert "Traceback" not in proc.stderr


def test_json_keeps_its_field_names(cstring_audit):
    _, report = cstring_audit
    for result in report["results"]:
        for field in ("package", "name", "verdict", "c_leak_bytes_per_op", "c_leak_allocs_per_op",
                      "rss_growth_bytes_per_op", "go_heap_growth_bytes_per_op", "samples"):
            assert field in result
            assert isinstance(result[field], (str, float, list))


@pytest.mark.slow
def test_baseline_accepts_the_known_leak(tmp_path):
    proc, report = audit_json(tmp_path, "--dir", str(FIXTURES), "--baseline", str(BASELINE),
                              "--sizes", "100,200,400,800", "./cstring")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result_named(report, "BenchmarkGetValueLeaky")["accepted_by_baseline"] is True


@pytest.mark.slow
def test_baseline_fails_a_leak_that_grew(tmp_path):
    tight = tmp_path / "tight.json"
    data = json.loads(BASELINE.read_text())
    data["accepted"][0]["max_c_leak_bytes_per_op"] = 20
    tight.write_text(json.dumps(data))
    proc, report = audit_json(tmp_path, "--dir", str(FIXTURES), "--baseline", str(tight),
                              "--sizes", "100,200,400", "./cstring")
    assert proc.returncode == 1
    assert result_named(report, "BenchmarkGetValueLeaky")["accepted_by_baseline"] is False


@pytest.mark.slow
def test_without_the_probe_exit_figures_are_still_exact(tmp_path):
    proc, report = audit_json(tmp_path, "--dir", str(FIXTURES), "--no-probe", "--sizes", "100,300,900",
                              "--bench", "Leaky", "./cstring")
    leaky = result_named(report, "BenchmarkGetValueLeaky")
    assert all(s["source"] == "exit" for s in leaky["samples"])
    assert leaky["c_leak_bytes_per_op"] == 26.0 and leaky["c_leak_allocs_per_op"] == 2.0
    assert proc.returncode == 1


def test_python_dash_m_and_help_work():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "bench" in proc.stdout


CXX_LIBRARY = {
    "widget.h": """
        #ifdef __cplusplus
        extern "C" {
        #endif
        void *widget_new(const char *name);
        void widget_free(void *w);
        unsigned long widget_heap_bytes(const char *name);
        #ifdef __cplusplus
        }
        #endif
        """,
    "widget.cpp": """
        #include <cstring>
        #include <string>
        #include <vector>
        #include "widget.h"

        struct Widget {
            std::string name;
            std::vector<int> data;
        };

        extern "C" void *widget_new(const char *name) { return new Widget{name, std::vector<int>(8)}; }
        extern "C" void widget_free(void *w) { delete static_cast<Widget *>(w); }

        // What widget_new puts on the heap for a name too long for the
        // small-string buffer: the object, the string's copy, the vector.
        extern "C" unsigned long widget_heap_bytes(const char *name) {
            return sizeof(Widget) + std::strlen(name) + 1 + 8 * sizeof(int);
        }
        """,
    "widget.go": """
        package widget

        // #include <stdlib.h>
        // #include "widget.h"
        import "C"
        import "unsafe"

        const Name = "a widget name longer than the small-string buffer"

        func HeapBytes() int {
            cs := C.CString(Name)
            defer C.free(unsafe.Pointer(cs))
            return int(C.widget_heap_bytes(cs))
        }

        func MakeLeaky() {
            cs := C.CString(Name)
            defer C.free(unsafe.Pointer(cs))
            C.widget_new(cs) // the C++ object is never deleted
        }

        func MakeFixed() {
            cs := C.CString(Name)
            defer C.free(unsafe.Pointer(cs))
            C.widget_free(C.widget_new(cs))
        }
        """,
    "widget_test.go": """
        package widget

        import (
            "os"
            "strconv"
            "testing"
        )

        func TestMain(m *testing.M) {
            os.WriteFile("heap_bytes.txt", []byte(strconv.Itoa(HeapBytes())), 0o644)
            os.Exit(m.Run())
        }

        func BenchmarkLeakyLoop(b *testing.B) {
            for b.Loop() {
                MakeLeaky()
            }
        }

        func BenchmarkLeakyParallel(b *testing.B) {
            b.RunParallel(func(pb *testing.PB) {
                for pb.Next() {
                    MakeLeaky()
                }
            })
        }

        func BenchmarkFixed(b *testing.B) {
            for i := 0; i < b.N; i++ {
                MakeFixed()
            }
        }
        """,
}


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None, reason="no C++ compiler")
@pytest.mark.slow
def test_cxx_objects_never_deleted_leak_their_exact_size_in_loop_and_parallel_benchmarks(tmp_path):
    module = write_module(tmp_path / "m", CXX_LIBRARY, module="example.com/widget")
    proc, report = audit_json(tmp_path, "--dir", str(module), "--sizes", "200,400,800,1600")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    per_widget = int((module / "heap_bytes.txt").read_text())   # sizeof and lengths, from the C++ side
    for name in ("BenchmarkLeakyLoop", "BenchmarkLeakyParallel"):   # b.Loop, and many goroutines
        leaky = result_named(report, name)
        assert leaky["verdict"] == "cgo-leak"
        assert (leaky["c_leak_bytes_per_op"], leaky["c_leak_allocs_per_op"]) == (per_widget, 3.0)
        assert len(leaky["sites"]) == 1, (name, leaky["sites"], leaky.get("notes"), leaky["samples"])
        [site] = leaky["sites"]
        assert site["function"] == "example.com/widget.MakeLeaky" and site["file"].endswith("/m/widget.go")
        assert "widget_new" in site["c_function"] and site["bytes_per_op"] == per_widget
    assert result_named(report, "BenchmarkFixed")["verdict"] == "clean"
