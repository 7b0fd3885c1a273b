"""What a new user reads on code of their own: a rare leak keeps its
significant digits, a leak inside an inlined closure is named after the
function the user wrote, marked as inlined the way go tool pprof marks it."""

from __future__ import annotations

import pytest

from helpers import audit_json, result_named, source_line, write_module

RARE = {
    "rare.go": """
        package rare

        /*
        #include <stdlib.h>
        void *rare_last; // visible, so the compiler cannot drop the malloc
        static void rare_step(int i) { if (i % 1000 == 999) rare_last = malloc(16); }
        */
        import "C"

        var calls int

        // Step leaks 16 bytes once every 1000 calls.
        func Step() {
            C.rare_step(C.int(calls)) // leaks here
            calls++
        }

        // Checksum copies data into C and never frees it; cgo wraps the
        // C.CBytes call in a closure that the compiler inlines.
        func Checksum(data []byte) byte {
            p := C.CBytes(data) // leaks here too
            return *(*byte)(p)
        }
        """,
    "rare_test.go": """
        package rare

        import "testing"

        func BenchmarkRare(b *testing.B) {
            for i := 0; i < b.N; i++ {
                Step()
            }
        }

        func BenchmarkParallelChecksum(b *testing.B) {
            data := []byte("0123456789abcdef")
            b.RunParallel(func(pb *testing.PB) {
                for pb.Next() {
                    Checksum(data)
                }
            })
        }
        """,
}


@pytest.fixture(scope="module")
def rare_audit(tmp_path_factory):
    work = tmp_path_factory.mktemp("rare")
    module = write_module(work / "m", RARE, module="example.com/rare")
    proc, report = audit_json(work, "--dir", str(module), "--sizes", "4000,8000,16000,32000")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return module, proc, report


def test_a_leak_once_every_1000_calls_keeps_its_significant_digits(rare_audit):
    module, proc, report = rare_audit
    rare = result_named(report, "BenchmarkRare")
    assert rare["verdict"] == "cgo-leak"
    assert rare["c_leak_bytes_per_op"] == pytest.approx(0.016, rel=0.01)
    assert rare["c_leak_allocs_per_op"] == pytest.approx(0.001, rel=0.01)
    text = " ".join(proc.stdout.split())
    assert "0.016 C-B/op 0.001 C-allocs/op" in text, proc.stdout
    assert " 0 C-allocs/op" not in text and "0.02 C-B/op" not in text and " 0 allocs/op" not in text
    assert "C heap grows 0.016 B/op in 0.001 allocs/op" in text
    line = source_line(module / "rare.go", "C.rare_step(C.int(calls))")
    assert f"0.016 B/op 0.001 allocs/op rare.Step rare.go:{line} (inlined into rare.BenchmarkRare) C.rare_step" in text


def test_a_cbytes_leak_in_a_closure_is_named_after_the_function_written(rare_audit):
    module, proc, report = rare_audit
    parallel = result_named(report, "BenchmarkParallelChecksum")
    assert (parallel["verdict"], parallel["c_leak_bytes_per_op"], parallel["c_leak_allocs_per_op"]) \
        == ("cgo-leak", 16.0, 1.0)
    [site] = parallel["sites"]
    line = source_line(module / "rare.go", "// leaks here too")
    assert (site["function"], site["line"], site["c_function"]) == ("example.com/rare.Checksum", line, "C.CBytes")
    assert f"rare.Checksum rare.go:{line}  C.CBytes" in proc.stdout
    assert ".func" not in proc.stdout.split("BenchmarkParallelChecksum", 1)[1].split("C heap grows")[0]
