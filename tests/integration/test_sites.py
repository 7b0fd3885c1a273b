"""Leak sites: the Go line behind a C leak, across the cgo boundary."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from cgo_audit.toolchain.layout import LAYOUT_TABLE, STRUCT_FIELDS, layout_from_dwarf, read_layout, release_of
from cgo_audit.toolchain.platform import HOST_GOARCH

from helpers import FIXTURES, audit_json, result_named, source_line, write_module

SIZES = ("--sizes", "100,200,400,800")


@pytest.fixture(scope="module")
def sites_audit(tmp_path_factory):
    work = tmp_path_factory.mktemp("sites")
    proc, report = audit_json(work, "--dir", str(FIXTURES), *SIZES, "--pprof", str(work / "leak.pb.gz"),
                              "--bench", "GetValueLeaky|CHelperStrdup|CStringInGoroutine|CParserNeverFreed",
                              "./cstring", "./causes")
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc, report, work / "leak.pb.gz"


def sites_of(report, name):
    return result_named(report, name)["sites"]


def test_seed_leak_is_named_at_its_line_split_over_the_two_cstrings(sites_audit):
    _, report, _ = sites_audit
    line = source_line(FIXTURES / "cstring" / "getvalue.go", "C.get_value(C.CString(file), C.CString(key)")
    sites = sites_of(report, "BenchmarkGetValueLeaky")
    assert [(s["line"], s["call"], s["bytes_per_op"], s["allocs_per_op"], s["c_function"]) for s in sites] == [
        (line, 1, 18.0, 1.0, "C.CString"),   # "testdata/app.conf" + NUL
        (line, 2, 8.0, 1.0, "C.CString"),    # "timeout" + NUL
    ]
    for site in sites:
        assert site["function"].endswith("/cstring.GetValueLeaky")
        assert site["file"].endswith("go_fixtures/cstring/getvalue.go")
    assert int(sites[0]["call_pc"], 16) < int(sites[1]["call_pc"], 16)


def test_a_c_helper_that_strdups_names_the_helper_and_its_go_caller(sites_audit):
    _, report, _ = sites_audit
    line = source_line(FIXTURES / "causes" / "causes.go", "C.remember(cs)")
    strdup = [s for s in sites_of(report, "BenchmarkCHelperStrdup") if "strdup" in s["c_stack"]]
    assert len(strdup) == 1
    site = strdup[0]
    assert site["function"].endswith("/causes.RememberInC") and site["line"] == line
    assert site["c_function"] == "C.remember"
    assert site["bytes_per_op"] == 14.0 and site["allocs_per_op"] == 1.0   # "session-token" + NUL


def test_c_frames_inside_a_c_library_are_named(sites_audit):
    _, report, _ = sites_audit
    line = source_line(FIXTURES / "causes" / "causes.go", "p := C.parser_new(cname)")
    sites = {(s["c_function"], tuple(s["c_stack"])): s for s in sites_of(report, "BenchmarkCParserNeverFreed")}
    assert sites[("C.parser_new", ())]["bytes_per_op"] == 64.0      # the struct, calloc'd in parser_new
    assert sites[("C.parser_new", ("strdup",))]["bytes_per_op"] == 5.0  # its copy of "conn"
    assert all(s["line"] == line for s in sites.values())


def test_a_leak_in_a_goroutine_names_the_goroutines_function(sites_audit):
    _, report, _ = sites_audit
    leak_line = source_line(FIXTURES / "causes" / "causes.go", "_ = C.CString(s)")
    go_line = leak_line - 1  # the go func() { that starts it
    (site,) = sites_of(report, "BenchmarkCStringInGoroutine")
    assert site["function"].endswith("/causes.CStringInGoroutine.func1")
    assert site["line"] == leak_line and site["bytes_per_op"] == 8.0
    assert site["created_by"] == f"causes.CStringInGoroutine causes.go:{go_line}"


def test_runtime_allocations_are_never_user_sites(sites_audit):
    _, report, _ = sites_audit
    for result in report["results"]:
        for site in result["sites"]:
            assert not site["function"].startswith(("runtime.", "x_cgo", "_cgo_", "testing."))
            assert "gcc_" not in site["file"] and "/runtime/" not in site["file"]


def test_terminal_shows_the_sites(sites_audit):
    proc, _, _ = sites_audit
    text = " ".join(proc.stdout.split())
    line = source_line(FIXTURES / "cstring" / "getvalue.go", "C.get_value(C.CString(file), C.CString(key)")
    assert f"18.00 B/op 1.00 allocs/op cstring.GetValueLeaky getvalue.go:{line} (call 1) C.CString" in text
    assert "causes.RememberInC causes.go" in text and "C.remember -> strdup" in text


def test_pprof_profile_shows_the_leaking_go_function(sites_audit):
    _, _, profile = sites_audit
    top = subprocess.run([shutil.which("go") or "go", "tool", "pprof", "-top", "-nodecount=40", str(profile)],
                         capture_output=True, text=True, check=True).stdout
    assert "cstring.GetValueLeaky" in top and "C.CString" in top
    assert "causes.RememberInC" in top and "causes.CStringInGoroutine.func1" in top


def _installed_release() -> str:
    version = subprocess.run([shutil.which("go") or "go", "env", "GOVERSION"], capture_output=True,
                             text=True, check=True).stdout.strip()
    return release_of(version)


@pytest.mark.slow
def test_layout_table_matches_the_installed_go_runtime(tmp_path):
    """The table is generated data: for the Go installed here, it must equal
    what that runtime's own DWARF says."""
    release = _installed_release()
    table = json.loads(LAYOUT_TABLE.read_text())[HOST_GOARCH]
    if release not in table:
        pytest.skip(f"{release} is not in the layout table: python scripts/go_layout_table.py {release}.0")
    module = write_module(tmp_path / "m", {"main.go": LAYOUT_PROGRAM})
    go = shutil.which("go") or "go"
    subprocess.run([go, "build", "-o", "full", "."], cwd=module, check=True, capture_output=True)
    for name, flags in (("stripped", "-s -w"), ("no-dwarf", "-w")):
        subprocess.run([go, "build", f"-ldflags={flags}", "-o", name, "."], cwd=module, check=True,
                       capture_output=True)
    full = layout_from_dwarf(module / "full")
    stripped, no_dwarf = (read_layout(module / name) for name in ("stripped", "no-dwarf"))
    assert full.source == "dwarf" and stripped.source == no_dwarf.source == release
    assert full.dwarf and not stripped.dwarf and not no_dwarf.dwarf
    # The fast path (table, raw symbols, cache) gives the DWARF's layout for a full binary too.
    assert read_layout(module / "full").environment_value() == full.environment_value()
    assert {name: getattr(full, name) for name in STRUCT_FIELDS} == table[release]
    # tls_g too: g alone in the TLS block is where its symbol says.
    assert stripped.environment_value().split(",")[:7] == full.environment_value().split(",")[:7]
    # With symbols but no DWARF, the runtime's thread-start code is still found.
    assert no_dwarf.environment_value() == full.environment_value()


LAYOUT_PROGRAM = """
package main

// #include <stdlib.h>
import "C"
import "unsafe"

func main() { C.free(unsafe.Pointer(C.CString("x"))) }
"""


@pytest.mark.slow
def test_binary_without_dwarf_still_names_the_go_line(tmp_path):
    """-ldflags='-s -w' drops DWARF and symbols: the walk's offsets come from
    the table and the Go frames from the pclntab, which stays."""
    release = _installed_release()
    if release not in json.loads(LAYOUT_TABLE.read_text())[HOST_GOARCH]:
        pytest.skip(f"{release} is not in the layout table")
    proc, report = audit_json(tmp_path, "--dir", str(FIXTURES), *SIZES, "--bench", "GetValueLeaky",
                              "--go-flags=-ldflags='-s -w'", "./cstring")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    leaky = result_named(report, "BenchmarkGetValueLeaky")
    line = source_line(FIXTURES / "cstring" / "getvalue.go", "C.get_value(C.CString(file), C.CString(key)")
    assert [(s["function"].rsplit("/", 1)[-1], s["line"], s["call"], s["bytes_per_op"], s["c_function"])
            for s in leaky["sites"]] == [("cstring.GetValueLeaky", line, 1, 18.0, "C.CString"),
                                         ("cstring.GetValueLeaky", line, 2, 8.0, "C.CString")]
    assert any(f"{release}'s, from cgo-audit's table" in note for note in leaky["notes"])


THREAD_LOCAL_C = """
package tls

/*
#include <stdlib.h>
#include <string.h>
static __thread int calls;   // a C thread-local beside Go's g in the TLS block
static char *keep(const char *s) { calls++; return strdup(s); }
*/
import "C"
import "unsafe"

func Keep(s string) {
	cs := C.CString(s)
	C.keep(cs) // the strdup'd copy is never freed
	C.free(unsafe.Pointer(cs))
}
"""

THREAD_LOCAL_BENCH = """
package tls

import "testing"

func BenchmarkKeep(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Keep("fifteen bytes!")
	}
}
"""


@pytest.mark.slow
def test_stripped_binary_with_c_thread_locals_degrades_to_c_frames_with_one_warning(tmp_path):
    """With C thread-locals beside it, only the symbol table says which TLS
    slot is g: without it the walk is off, and the report says so once."""
    module = write_module(tmp_path / "m", {"tls.go": THREAD_LOCAL_C, "tls_test.go": THREAD_LOCAL_BENCH})
    proc, report = audit_json(tmp_path, "--dir", str(module), *SIZES, "--go-flags=-ldflags='-s -w'")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    keep = result_named(report, "BenchmarkKeep")
    assert keep["c_leak_bytes_per_op"] == 15.0  # the counts do not need symbols
    warnings = [n for n in keep["notes"] if "Go frames cannot be named" in n]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "g's slot is unknown" in warnings[0]
    assert sum("Go frames cannot be named" in line for line in proc.stdout.splitlines()) == 1
