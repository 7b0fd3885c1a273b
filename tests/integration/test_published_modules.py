"""Published Cgo modules audited as a user would: `cgo-audit bench --dir M
MODULE` from a module M that requires them, their own benchmarks as they
are. They come through the Go module proxy: without it these tests skip.
What they taught is checked offline too (a benchmark that fails says why,
under its own name)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cgo_audit.toolchain.gotool import go_executable

from helpers import audit_json, require_published, write_module

NEEDS_PAYLOAD = {
    "f/f.go": """
        package f

        // #include <stdlib.h>
        import "C"

        func F() { C.free(C.malloc(8)) }
    """,
    "f/f_test.go": """
        package f

        import (
        	"os"
        	"testing"
        )

        func BenchmarkNeedsPayload(b *testing.B) {
        	if os.Getenv("PAYLOAD") == "" {
        		b.Fatal("PAYLOAD env was not set")
        	}
        	for i := 0; i < b.N; i++ {
        		F()
        	}
        }
    """,
}


# Fixed sizes; adaptive ones start with a -test.v run, where Go prints the
# message above the --- FAIL line instead of under it.
@pytest.mark.parametrize("sizes", [("--sizes", "10,20,40"), ()], ids=["fixed-sizes", "adaptive"])
def test_benchmark_that_fails_says_why_under_its_own_name(tmp_path, sizes):
    # DataDog/zstd's benchmarks b.Fatal without $PAYLOAD: the error said only
    # "--- FAIL: Benchmark_cgoaudit_Compression", the probe's name, not why.
    module = write_module(tmp_path / "m", NEEDS_PAYLOAD, go_version="1.14")
    proc, report = audit_json(tmp_path, "--dir", str(module), *sizes, "./...")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = report["results"][0]["error"]
    assert "--- FAIL: BenchmarkNeedsPayload: f_test.go:10: PAYLOAD env was not set" in error, error
    assert "cgoaudit" not in error
    # Given its payload, it is audited from the probe and clean.
    proc, report = audit_json(tmp_path, "--dir", str(module), "--sizes", "10,20,40", "./...",
                              env={"PAYLOAD": str(module / "go.mod")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = report["results"][0]
    assert result["verdicts"] == ["clean"] and result["c_leak_bytes_per_op"] == 0
    assert {s["source"] for s in result["samples"]} == {"probe"}


# ---- github.com/DataDog/zstd v1.5.7: go.mod says go 1.14 ------------------------------------------

ZSTD = "github.com/DataDog/zstd"
ZSTD_VERSION = "v1.5.7"
ZSTD_BENCHMARKS = {
    "BenchmarkBulkCompress", "BenchmarkBulkDecompress", "BenchmarkCtxCompression", "BenchmarkCtxDecompression",
    "BenchmarkSmallWriteStreamCompression/all-zeros", "BenchmarkSmallWriteStreamCompression/count",
    "BenchmarkSmallWriteStreamCompression/random", "BenchmarkStreamCompression",
    "BenchmarkStreamDecompression", "BenchmarkCompression", "BenchmarkDecompression"}
# The benchmarks that read the file named by $PAYLOAD (and b.Fatal without it).
ZSTD_NEEDS_PAYLOAD = {"BenchmarkCtxCompression", "BenchmarkCtxDecompression", "BenchmarkStreamCompression",
                      "BenchmarkStreamDecompression", "BenchmarkCompression", "BenchmarkDecompression"}


@pytest.fixture(scope="module")
def zstd_user(tmp_path_factory) -> Path:
    """A user's module that requires DataDog/zstd, fetched through the proxy."""
    module = write_module(tmp_path_factory.mktemp("zstd") / "m", {}, module="example.com/zstduser")
    require_published(module, ZSTD, ZSTD_VERSION)
    return module


def _zstd_source(module: Path) -> Path:
    proc = subprocess.run([go_executable(), "list", "-m", "-json", ZSTD], cwd=module, capture_output=True,
                          text=True, check=True)
    return Path(json.loads(proc.stdout)["Dir"])


@pytest.mark.network
@pytest.mark.slow
def test_datadog_zstd_own_benchmarks(zstd_user, tmp_path):
    source = _zstd_source(zstd_user)
    # The old language version that once kept the probe from building ("predeclared any").
    assert "\ngo 1.14\n" in (source / "go.mod").read_text()
    payload = source / "zstd.go"   # any file: the benchmarks compress it
    proc, report = audit_json(tmp_path, "--dir", str(zstd_user), "-j", "1", ZSTD,
                              env={"PAYLOAD": str(payload)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {r["name"] for r in report["results"]} == ZSTD_BENCHMARKS
    for result in report["results"]:
        # Figures from the probe (finalizers settled, the Go heap measured), not from the exit.
        assert {s["source"] for s in result["samples"]} == {"probe"}, result["name"]
        # Its own benchmarks free what they allocate: no false alarm.
        assert result["verdicts"] == ["clean"], (result["name"], result["verdicts"])
        assert result["c_leak_bytes_per_op"] == 0 and result["c_leak_allocs_per_op"] == 0, result["name"]
        # Yet the C heap was really used: zstd's contexts live in it while they work.
        assert max(s["c_peak_bytes"] for s in result["samples"]) > 0, result["name"]


@pytest.mark.network
@pytest.mark.slow
def test_datadog_zstd_without_its_payload_says_what_it_needs(zstd_user, tmp_path):
    proc, report = audit_json(tmp_path, "--dir", str(zstd_user), "-j", "1", "--bench", "Compression$", ZSTD,
                              env={"PAYLOAD": ""})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = {r["name"]: r["error"] for r in report["results"] if r["error"]}
    assert set(errors) == {"BenchmarkCtxCompression", "BenchmarkStreamCompression", "BenchmarkCompression"}
    for name, error in errors.items():
        assert f"--- FAIL: {name}: " in error and "PAYLOAD env was not set" in error, error


SLOW_OP = {
    "slow/slow.go": """
        package slow

        /*
        #include <stdlib.h>
        void *slow_kept[4096]; // visible, so the compiler cannot drop the malloc
        int slow_next;
        // One op keeps 100 bytes for good: a leak of exactly 100 B/op.
        static void keep100(void) { slow_kept[slow_next++ % 4096] = malloc(100); }
        */
        import "C"

        import "time"

        // Step is one slow operation, as DuckDB's BenchmarkTypes is (5 s under the shim).
        func Step() {
        	C.keep100()
        	time.Sleep(time.Second)
        }
    """,
    "slow/slow_test.go": """
        package slow

        import "testing"

        func BenchmarkSlowStep(b *testing.B) {
        	for i := 0; i < b.N; i++ {
        		Step()
        	}
        }
    """,
}


@pytest.mark.slow
def test_benchmark_of_a_second_per_op_is_sized_to_the_timeout(tmp_path):
    # DuckDB's BenchmarkTypes: 64 ops for calibration took longer than --timeout,
    # so the benchmark was an error. Sizes now follow the time one op takes.
    module = write_module(tmp_path / "m", SLOW_OP)
    proc, report = audit_json(tmp_path, "--dir", str(module), "--timeout", "24", "./...")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = report["results"][0]
    assert result["error"] is None and result["verdicts"] == ["cgo-leak"], result
    assert result["c_leak_bytes_per_op"] == pytest.approx(100) and result["c_leak_allocs_per_op"] == pytest.approx(1)
    runs = [s for s in result["samples"] if s["source"] == "probe"]
    assert len(runs) >= 3 and all(s["status"] == "exited with status 0" for s in result["samples"])
    # No run was planned past half the timeout: at 1 s per op, 12 ops.
    assert max(s["n"] for s in result["samples"]) <= 12
    for run in runs:
        assert run["c_live_bytes"] == 100 * run["ops"], run


# ---- github.com/valyala/gozstd v1.27.0: go.mod says go 1.12, libzstd as a static archive ----------

GOZSTD = "github.com/valyala/gozstd"
GOZSTD_VERSION = "v1.27.0"


@pytest.mark.network
@pytest.mark.slow
def test_valyala_gozstd_compress_is_clean_from_the_probe(tmp_path):
    module = write_module(tmp_path / "m", {}, module="example.com/gozstduser")
    require_published(module, GOZSTD, GOZSTD_VERSION)
    proc, report = audit_json(tmp_path, "--dir", str(module), "-j", "1",
                              "--bench", "^BenchmarkCompress$/^blockSize_1000$", GOZSTD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = sorted(r["name"] for r in report["results"])
    assert names == [f"BenchmarkCompress/blockSize_1000/level_{level}" for level in (10, 3, 5)]
    for result in report["results"]:
        assert {s["source"] for s in result["samples"]} == {"probe"}, result["name"]
        assert result["verdicts"] == ["clean"] and result["c_leak_bytes_per_op"] == 0, result["name"]
        # Compression contexts live in the C heap while they work, and are all given back.
        assert max(s["c_peak_bytes"] for s in result["samples"]) > 0


# ---- github.com/uber/h3-go/v4 v4.1.0: the H3 C library bundled ------------------------------------

H3 = "github.com/uber/h3-go/v4"
H3_VERSION = "v4.1.0"
# Its quick benchmarks (BenchmarkPolyfill takes minutes per op, even without the shim).
H3_BENCHMARKS = ("BenchmarkToString", "BenchmarkFromString", "BenchmarkToGeoRes15", "BenchmarkFromGeoRes15",
                 "BenchmarkToGeoBndryRes15", "BenchmarkHexRange")


@pytest.mark.network
@pytest.mark.slow
def test_uber_h3_quick_benchmarks_are_clean(tmp_path):
    module = write_module(tmp_path / "m", {}, module="example.com/h3user")
    require_published(module, H3, H3_VERSION)
    proc, report = audit_json(tmp_path, "--dir", str(module), "-j", "1",
                              "--bench", f"^({'|'.join(H3_BENCHMARKS)})$", H3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(r["name"] for r in report["results"]) == sorted(H3_BENCHMARKS)
    for result in report["results"]:
        assert {s["source"] for s in result["samples"]} == {"probe"}, result["name"]
        assert result["verdicts"] == ["clean"] and result["c_leak_bytes_per_op"] == 0, result["name"]
