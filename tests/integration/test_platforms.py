"""Where Go services run: linux/arm64 (under qemu-user here), musl, and
statically linked cgo binaries each give the exact figures and the Go line
that x86-64 glibc gives. Each part skips, with its reason, when its tools
are missing (.ci/run installs them)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from cgo_audit.shim.build import SHIM_SOURCES, STATIC_CFLAGS, compile_shim
from cgo_audit.sources import csrc_dir
from cgo_audit.toolchain.platform import HOST_GOARCH, missing_tools

from helpers import FIXTURES, assert_one_line_error, audit_json, result_named, run_cli, source_line

ARM64_MISSING = missing_tools("arm64") if HOST_GOARCH != "arm64" else None
# Other platforms (qemu-user, cross and musl builds): everything, not the fast loop.
pytestmark = pytest.mark.slow

needs_arm64 = pytest.mark.skipif(ARM64_MISSING is not None, reason=ARM64_MISSING or "")
needs_musl = pytest.mark.skipif(shutil.which("musl-gcc") is None,
                                reason="musl-gcc is not installed (Debian: apt-get install musl-tools)")
STATIC_FLAGS = "--go-flags=-ldflags=-extldflags=-static"
CSTRING_LINE = source_line(FIXTURES / "cstring" / "getvalue.go", "C.get_value(C.CString(file), C.CString(key)")


def assert_the_field_guides_leak_exactly(report):
    """26 B/op in 2 allocs in every run, both C.CString calls of line 35
    named apart (18 + 8 bytes), and the fixed version clean."""
    leaky = result_named(report, "BenchmarkGetValueLeaky")
    assert leaky["verdicts"] == ["cgo-leak"], leaky["notes"]
    assert (leaky["c_leak_bytes_per_op"], leaky["c_leak_allocs_per_op"]) == (26.0, 2.0)
    assert len(leaky["samples"]) >= 4
    for sample in leaky["samples"]:
        assert (sample["c_live_bytes"], sample["c_live_allocs"]) == (26 * sample["ops"], 2 * sample["ops"])
    sites = [(s["line"], s["call"], s["bytes_per_op"], s["allocs_per_op"], s["c_function"]) for s in leaky["sites"]]
    assert sites == [(CSTRING_LINE, 1, 18.0, 1.0, "C.CString"), (CSTRING_LINE, 2, 8.0, 1.0, "C.CString")]
    assert all(s["file"].endswith("go_fixtures/cstring/getvalue.go") for s in leaky["sites"])
    fixed = result_named(report, "BenchmarkGetValueFixed")
    assert fixed["verdicts"] == ["clean"]
    assert all((s["c_live_bytes"], s["c_live_allocs"]) == (0, 0) for s in fixed["samples"])
    return leaky


# ---- the shim builds warning-free for every target -------------------------

COMPILERS = {"gcc": None, "musl-gcc": "musl-tools", "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu"}


@pytest.mark.parametrize("cc", sorted(COMPILERS))
def test_the_shim_builds_without_warnings_for_each_target(cc, tmp_path):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed (Debian: apt-get install {COMPILERS[cc]})")
    assert compile_shim(tmp_path / "libcgoaudit.so", cc=cc, extra_flags=("-Wl,--no-undefined",)) == []
    for name in SHIM_SOURCES:  # and as the static archive's objects
        proc = subprocess.run([cc, *STATIC_CFLAGS, "-I", str(csrc_dir()), "-c", "-o", str(tmp_path / "x.o"),
                               str(csrc_dir() / name)], capture_output=True, text=True)
        assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr


# ---- linux/arm64 under qemu-user --------------------------------------------

@pytest.fixture(scope="module")
def arm64_cstring(tmp_path_factory):
    return audit_json(tmp_path_factory.mktemp("arm64"), "--goarch", "arm64", "--dir", str(FIXTURES),
                      "--bench", "GetValue", "./cstring")


@needs_arm64
def test_arm64_finds_the_exact_leak_and_both_cstring_calls(arm64_cstring):
    proc, report = arm64_cstring
    assert proc.returncode == 1, proc.stderr
    assert report["settings"]["goarch"] == "arm64"
    leaky = assert_the_field_guides_leak_exactly(report)
    assert any("qemu-aarch64 (emulated)" in note for note in leaky["notes"])
    # Timings under an emulator are not the hardware's: none is reported.
    assert all(sample["ns_per_op"] is None for sample in leaky["samples"])


@pytest.fixture(scope="module")
def causes_on_both(tmp_path_factory):
    native = audit_json(tmp_path_factory.mktemp("native"), "--dir", str(FIXTURES), "./causes")[1]
    arm64 = audit_json(tmp_path_factory.mktemp("arm64"), "--goarch", "arm64", "--dir", str(FIXTURES), "./causes")[1]
    return native, arm64


@needs_arm64
def test_arm64_gives_the_leak_causes_the_verdicts_amd64_gives(causes_on_both):
    """The main verdict of every fixture, and the leak causes measured
    exactly (C heap, fds, goroutines), agree with the native run. Not
    compared: a growing array's share per op (CHelperStrdup's list doubles,
    so its bytes per op depend on the sizes each run chose), RSS figures (under qemu they include the emulator's own
    memory), Go-heap figures (the compilers differ, so secondary go-heap
    verdicts may too) and timings."""
    native, arm64 = causes_on_both
    assert [r["name"] for r in native["results"]] == [r["name"] for r in arm64["results"]]
    assert len(native["results"]) >= 10
    exact = ("cgo-leak", "fd-leak", "goroutine-leak")
    for ours, theirs in zip(native["results"], arm64["results"]):
        name = ours["name"]
        assert theirs["verdict"] == ours["verdict"], name
        assert [v for v in theirs["verdicts"] if v in exact] == [v for v in ours["verdicts"] if v in exact], name
        assert theirs["c_leak_allocs_per_op"] == ours["c_leak_allocs_per_op"], name
        if ours["c_leak_bytes_per_op"] == int(ours["c_leak_bytes_per_op"]):   # a fixed size per op
            assert theirs["c_leak_bytes_per_op"] == ours["c_leak_bytes_per_op"], name
        else:   # plus an array that doubles: its share per op depends on the sizes run
            assert theirs["c_leak_bytes_per_op"] > 0, name
        assert round(theirs["fds_per_op"] or 0, 1) == round(ours["fds_per_op"] or 0, 1), name
        assert round(theirs["goroutines_per_op"] or 0, 1) == round(ours["goroutines_per_op"] or 0, 1), name
        def whole(result):
            return {(s["line"], s["bytes_per_op"]) for s in result["sites"]
                    if s["bytes_per_op"] == int(s["bytes_per_op"])}
        assert whole(theirs) == whole(ours), name


def test_an_unsupported_goarch_is_a_one_line_error():
    proc = run_cli("bench", "--goarch", "mips64", "--dir", str(FIXTURES), "./cstring")
    assert_one_line_error(proc, "GOARCH=mips64 is not supported")


# ---- musl --------------------------------------------------------------------

@needs_musl
def test_a_musl_test_binary_gives_the_same_figures_and_sites(tmp_path):
    proc, report = audit_json(tmp_path, "--dir", str(FIXTURES), "--bench", "GetValue",
                              "--go-flags=-ldflags=-linkmode=external", "./cstring", env={"CC": "musl-gcc"})
    assert proc.returncode == 1, proc.stderr
    leaky = assert_the_field_guides_leak_exactly(report)
    assert any("linked against musl" in note and "musl-gcc" in note for note in leaky["notes"])


# ---- statically linked cgo binaries -----------------------------------------

def test_a_static_cgo_test_binary_has_the_shim_linked_in_and_gives_exact_sites(tmp_path):
    proc, report = audit_json(tmp_path, "--dir", str(FIXTURES), "--bench", "GetValue", STATIC_FLAGS, "./cstring")
    assert proc.returncode == 1, proc.stderr
    leaky = assert_the_field_guides_leak_exactly(report)
    assert any("statically linked with cgo" in note for note in leaky["notes"])
    assert not any("no cgo" in note for note in leaky["notes"])
    (package,) = report["packages"]
    assert "static, shim linked in" in package["detail"]


def test_run_on_a_static_cgo_binary_says_how_to_rebuild_it(tmp_path):
    binary = tmp_path / "cstring.test"
    subprocess.run(["go", "test", "-c", "-o", str(binary), "-ldflags=-extldflags=-static", "./cstring"],
                   cwd=FIXTURES, check=True, capture_output=True)
    proc = run_cli("run", "--duration", "2", "--", str(binary), "-test.run=^$")
    assert_one_line_error(proc, "cstring.test is statically linked with cgo", "rebuild it dynamically linked")


# ---- the layout table's arm64 entries ----------------------------------------

LAYOUT_PROGRAM = """
package main

// #include <stdlib.h>
import "C"
import "unsafe"

func main() { C.free(unsafe.Pointer(C.CString("x"))) }
"""


@needs_arm64
def test_arm64_layout_table_matches_the_installed_go_runtime(tmp_path):
    """For the Go installed here, the table's arm64 entry equals what the
    arm64 runtime's own DWARF says, and g's TLS slot is found without
    symbols (runtime.tls_g after the 16-byte TCB)."""
    import os

    from cgo_audit.toolchain.layout import STRUCT_FIELDS, layout_from_dwarf, load_table, read_layout, release_of
    from cgo_audit.toolchain.platform import for_goarch

    from helpers import write_module

    version = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    release = release_of(version)
    table = load_table().get("arm64", {})
    if release not in table:
        pytest.skip(f"{release} has no arm64 entry: python scripts/go_layout_table.py --goarch arm64 {version}")
    module = write_module(tmp_path / "m", {"main.go": LAYOUT_PROGRAM})
    env = {**os.environ, **for_goarch("arm64").build_env()}
    for name, flags in (("full", ""), ("stripped", "-s -w")):
        subprocess.run(["go", "build", f"-ldflags={flags}", "-o", name, "."], cwd=module, env=env, check=True,
                       capture_output=True)
    full, stripped = layout_from_dwarf(module / "full"), read_layout(module / "stripped")
    assert full.source == "dwarf" and stripped.source == release
    # The fast path (table, raw symbols, cache) gives the DWARF's layout for a full binary too.
    assert read_layout(module / "full").environment_value() == full.environment_value()
    assert full.tls_g == 16   # runtime.tls_g, first in the TLS block, after the TCB
    assert {name: getattr(full, name) for name in STRUCT_FIELDS} == table[release]
    assert stripped.environment_value().split(",")[:7] == full.environment_value().split(",")[:7]


@needs_musl
def test_a_static_musl_cgo_test_binary_as_alpine_builds_them_gives_exact_sites(tmp_path):
    """musl's static libc.a has no pvalloc: the shim's weak __real_pvalloc
    must leave the link whole."""
    proc, report = audit_json(tmp_path, "--dir", str(FIXTURES), "--bench", "GetValue",
                              "--go-flags=-ldflags='-linkmode=external -extldflags=-static'", "./cstring",
                              env={"CC": "musl-gcc"})
    assert proc.returncode == 1, proc.stderr
    leaky = assert_the_field_guides_leak_exactly(report)
    assert any("statically linked with cgo" in note for note in leaky["notes"])


PURE_GO_MMAP = {
    "mm/mm.go": """
        package mm

        import "syscall"

        var kept [][]byte

        // Map maps and touches 64 KiB that it never unmaps.
        func Map() {
            b, err := syscall.Mmap(-1, 0, 64<<10, syscall.PROT_READ|syscall.PROT_WRITE,
                syscall.MAP_PRIVATE|syscall.MAP_ANON)
            if err != nil {
                panic(err)
            }
            for i := 0; i < len(b); i += 4096 {
                b[i] = 1
            }
            kept = append(kept, b[:1])
        }
    """,
    "mm/mm_test.go": """
        package mm

        import "testing"

        func BenchmarkMap(b *testing.B) {
            for i := 0; i < b.N; i++ {
                Map()
            }
        }
    """,
}


def test_an_unmeasured_c_heap_is_never_called_flat(tmp_path):
    """A static binary without cgo: RSS grows, and the sentence that
    explains it names only what was measured."""
    from helpers import write_module

    module = write_module(tmp_path / "m", PURE_GO_MMAP)
    proc = run_cli("bench", "--dir", str(module), "--sizes", "200,400,800,1600", "./mm")
    text = " ".join(proc.stdout.split())
    assert "rss-growth-unexplained" in text, proc.stdout + proc.stderr
    assert "while Go heap, goroutines and fds stay flat (the C heap was not measured)" in text, text
    assert "the C heap, Go heap" not in text
