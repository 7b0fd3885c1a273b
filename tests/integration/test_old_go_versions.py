"""Modules as they are published: a go.mod that declares an old language
version (go 1.14, as github.com/DataDog/zstd does) still gets the probe, so
finalizer-freed C memory is settled before it is counted and the Go heap is
measured."""

from __future__ import annotations

import pytest

from helpers import audit_json, result_named, write_module

# Builds the probe under old Go language versions.
pytestmark = pytest.mark.slow

OLD_MODULE = {
    "oldlang/oldlang.go": """
        package oldlang

        // #include <stdlib.h>
        import "C"

        import (
        	"runtime"
        	"unsafe"
        )

        type Buffer struct{ ptr unsafe.Pointer }

        // NewBuffer owns C memory that its finalizer frees: a look-alike, not a leak.
        func NewBuffer(size int) *Buffer {
        	b := &Buffer{ptr: C.malloc(C.size_t(size))}
        	runtime.SetFinalizer(b, func(b *Buffer) { C.free(b.ptr) })
        	return b
        }

        // Leak copies s to the C heap and never frees it: len(s)+1 bytes.
        func Leak(s string) { C.CString(s) }
        """,
    "oldlang/oldlang_test.go": """
        package oldlang

        import "testing"

        var sink *Buffer

        func BenchmarkFinalizerFreesC(b *testing.B) {
        	for i := 0; i < b.N; i++ {
        		sink = NewBuffer(256)
        	}
        	sink = nil
        }

        func BenchmarkCStringLeak(b *testing.B) {
        	for i := 0; i < b.N; i++ {
        		Leak("abcdef")
        	}
        }
        """,
}


@pytest.mark.parametrize("go_version", ["1.14", "1.16"])
def test_probe_builds_under_an_old_language_version(tmp_path, go_version):
    module = write_module(tmp_path / "m", OLD_MODULE, go_version=go_version)
    proc, report = audit_json(tmp_path, "--dir", str(module), "--sizes", "100,200,400,800", "./oldlang")
    assert report, proc.stdout + proc.stderr
    for name in ("BenchmarkFinalizerFreesC", "BenchmarkCStringLeak"):
        result = result_named(report, name)
        assert not any("probe" in note for note in result.get("notes", [])), result.get("notes")
        assert all(sample["source"] == "probe" for sample in result["samples"]), result["samples"]
    lookalike = result_named(report, "BenchmarkFinalizerFreesC")
    assert lookalike["verdict"] == "clean", lookalike
    assert all(sample["c_live_bytes"] == 0 for sample in lookalike["samples"])
    leak = result_named(report, "BenchmarkCStringLeak")
    assert leak["verdict"] == "cgo-leak" and leak["c_leak_bytes_per_op"] == 7.0


def test_a_probe_that_does_not_build_says_why(tmp_path):
    # A test file that only compiles without the probe: it declares a name the
    # probe also declares. The note must carry Go's own error.
    files = dict(OLD_MODULE)
    files["oldlang/clash_test.go"] = """
        package oldlang

        var cgoAuditProbe int
        """
    module = write_module(tmp_path / "m", files, go_version="1.14")
    proc, report = audit_json(tmp_path, "--dir", str(module), "--sizes", "100,200,400", "./oldlang")
    leak = result_named(report, "BenchmarkCStringLeak")
    notes = " ".join(leak.get("notes", []))
    assert "the probe did not build" in notes and "cgoAuditProbe redeclared" in notes, notes
