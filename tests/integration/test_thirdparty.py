"""The audit on real third-party Cgo code: github.com/mattn/go-sqlite3, which
bundles SQLite's C sources. Misuses of database/sql get their leak with its
exact size and sites; the correct versions and go-sqlite3's own benchmarks
get no false alarm. The module comes through the Go module proxy: without
it these tests skip."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from cgo_audit.shim.build import cache_dir
from cgo_audit.toolchain.gotool import go_executable

from helpers import FIXTURES, audit_json, downloaded_module, result_named, source_line


def third_party(test):
    """Needs go-sqlite3 from the Go module proxy, and compiles SQLite once."""
    return pytest.mark.network(pytest.mark.slow(test))


MISUSE = FIXTURES / "sqlitemisuse"
MISUSE_GO = MISUSE / "misuse.go"
SQLITE3_MODULE = "github.com/mattn/go-sqlite3"
SQLITE3_VERSION = re.search(rf"^require {re.escape(SQLITE3_MODULE)} (v\S+)$",
                            (MISUSE / "go.mod").read_text(), re.M).group(1)
SIZES = ("--sizes", "100,200,400,800")


@pytest.fixture(scope="module")
def sqlite3_source() -> Path:
    """go-sqlite3's source in the module cache (read-only), fetched if need be."""
    return downloaded_module(SQLITE3_MODULE, SQLITE3_VERSION, "go-sqlite3", cwd=MISUSE)


# ---- database/sql misused, on a real SQLite -----------------------------------

@pytest.fixture(scope="module")
def misuse_audit(sqlite3_source, tmp_path_factory):
    proc, report = audit_json(tmp_path_factory.mktemp("sqlitemisuse"), "--dir", str(MISUSE), *SIZES, "./...")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return report


MISUSES = {
    # benchmark: every verdict it gets, main one first
    "BenchmarkStmtNeverClosed": ["cgo-leak", "go-heap-leak"],
    "BenchmarkRowsNeverClosed": ["cgo-leak", "go-heap-leak"],
    "BenchmarkDBPerCallNeverClosed": ["cgo-leak", "goroutine-leak", "go-heap-leak"],
}
CORRECT_VERSIONS = ("BenchmarkStmtClosed", "BenchmarkRowsClosed", "BenchmarkRowsDrainedNotClosed",
                    "BenchmarkDriverStmtDropped")
# Correct versions that start a short-lived goroutine per call (Tx.awaitDone,
# DB.connectionOpener): the runtime never frees a goroutine's descriptor, so
# the live Go heap steps up with the most goroutines ever alive at once (by
# 100-200 KiB, at random), which the Go-heap fit can take for a leak.
GOROUTINE_CHURN = ("BenchmarkTxStmtNotClosed", "BenchmarkDBPerCallClosed")
# What a wrapper function's own code says where it leaks (the Go line its leak sites should name).
WRAPPER_LINES = {
    "BenchmarkStmtNeverClosed": ("StmtNeverClosed", "unclosedStmt, err := db.Prepare(lookup)"),
    "BenchmarkRowsNeverClosed": ("RowsNeverClosed", "abandonedRows, err := db.Query(twoRows)"),
    "BenchmarkDBPerCallNeverClosed": ("DBPerCallNeverClosed", "return mustScanInt(unclosedDB.QueryRow(lookup, x))"),
}


def sqlite3_go(source: Path) -> Path:
    return source / "sqlite3.go"


@third_party
@pytest.mark.parametrize("name", sorted(MISUSES))
def test_each_misuse_gets_its_verdicts(misuse_audit, name):
    result = result_named(misuse_audit, name)
    assert result["verdicts"] == MISUSES[name], result["growth"]
    assert result["verdict"] == "cgo-leak"


@third_party
@pytest.mark.parametrize("name", CORRECT_VERSIONS)
def test_correct_versions_are_clean(misuse_audit, name):
    result = result_named(misuse_audit, name)
    assert result["verdicts"] == ["clean"], result["growth"]
    assert result["c_leak_bytes_per_op"] == 0.0 and result["c_leak_allocs_per_op"] == 0.0


@third_party
@pytest.mark.parametrize("name", GOROUTINE_CHURN)
def test_correct_versions_with_goroutine_churn_leak_no_c_memory(misuse_audit, name):
    result = result_named(misuse_audit, name)
    assert set(result["verdicts"]) <= {"clean", "go-heap-leak"}, result["growth"]
    assert result["c_leak_bytes_per_op"] == 0.0 and result["c_leak_allocs_per_op"] == 0.0
    assert result["growth"]["c_bytes"]["total"] == 0 and result["growth"]["goroutines"]["shape"] == "flat"


@third_party
def test_unclosed_statement_leaks_one_sqlite3_stmt_per_call(misuse_audit, sqlite3_source):
    result = result_named(misuse_audit, "BenchmarkStmtNeverClosed")
    # The Vdbe (312 B), its 42-slot opcode array (1008 B), the column-name
    # cells (2 x 56 B), the SQL text (16 B) and the column name (8 B), each
    # with SQLite's 8-byte size header; plus go-sqlite3's 40-byte row buffer.
    assert result["c_leak_bytes_per_op"] == 1536.0
    assert result["c_leak_allocs_per_op"] == 6.0
    # Named at the wrapper's lines (the audited module), through go-sqlite3's cgo calls.
    prepare_call = source_line(MISUSE_GO, "unclosedStmt, err := db.Prepare(lookup)")
    query_call = source_line(MISUSE_GO, "return mustScanInt(unclosedStmt.QueryRow(x))")
    sites = [(s["bytes_per_op"], s["allocs_per_op"], s["c_function"], s["line"]) for s in result["sites"]]
    assert sites == [(1496.0, 5.0, "C._sqlite3_prepare_v2_internal", prepare_call),
                     (40.0, 1.0, "C.malloc", query_call)]
    assert all(site["file"] == str(MISUSE_GO) for site in result["sites"])
    source = sqlite3_go(sqlite3_source)
    prepare_line = source_line(source, "C._sqlite3_prepare_v2_internal(c.db, pquery")
    row_buffer_line = source_line(source, "s.colvals = (*C.sqlite3_go_col)(C.malloc(")
    prepare, row_buffer = result["sites"]
    assert prepare["via"].startswith(f"{SQLITE3_MODULE}.(*SQLiteConn).prepare")
    assert row_buffer["via"] == f"{SQLITE3_MODULE}.(*SQLiteRows).bindAndFirstStepLocked"
    assert any(f"sqlite3.go:{prepare_line}" in frame for frame in prepare["stack"])
    assert any(f"sqlite3.go:{row_buffer_line}" in frame for frame in row_buffer["stack"])


@third_party
@pytest.mark.parametrize("name", ["BenchmarkRowsNeverClosed", "BenchmarkDBPerCallNeverClosed"])
def test_pinned_or_forgotten_connection_leaks_a_whole_sqlite3_connection(misuse_audit, sqlite3_source, name):
    result = result_named(misuse_audit, name)
    # One sqlite3_open_v2 per call, never closed: the 48,000-byte lookaside
    # buffer, the in-memory database's first page, the pager, the sqlite3
    # handle (784 B) and 96 smaller blocks, with SQLite's 8-byte headers.
    assert result["c_leak_bytes_per_op"] == 65797.0
    assert result["c_leak_allocs_per_op"] == 100.0
    sites = result["sites"]
    assert sum(s["bytes_per_op"] for s in sites) == 65797.0
    assert sum(s["allocs_per_op"] for s in sites) == 100.0
    source = sqlite3_go(sqlite3_source)
    open_line = source_line(source, "rv := C._sqlite3_open_v2(name, &db,")
    assert source.read_text().splitlines()[open_line + 1].strip() == "vfs)"  # the call spans three lines
    largest = sites[0]
    assert (largest["bytes_per_op"], largest["allocs_per_op"], largest["c_function"]) == \
        (60400.0, 71.0, "C._sqlite3_open_v2")
    assert largest["via"].startswith(f"{SQLITE3_MODULE}.(*SQLiteDriver).Open")
    assert any(f"sqlite3.go:{line}" in frame for frame in largest["stack"] for line in range(open_line, open_line + 3))
    # Every site is named at the wrapper's own line: the user's code that reached the connection.
    function, needle = WRAPPER_LINES[name]
    assert {(s["function"].rsplit("/", 1)[-1], s["line"]) for s in sites} == \
        {(f"sqlitemisuse.{function}", source_line(MISUSE_GO, needle))}


@third_party
def test_finalizers_free_what_nothing_references(misuse_audit):
    # A statement dropped at the driver level, and the statement of abandoned
    # rows, are finalized by go-sqlite3's runtime.SetFinalizer after a GC: one
    # finalizer per call. What database/sql still references never is.
    for name in ("BenchmarkDriverStmtDropped", "BenchmarkRowsNeverClosed"):
        samples = result_named(misuse_audit, name)["samples"]
        assert [s["finalizers_run"] for s in samples] == [s["ops"] for s in samples]
    samples = result_named(misuse_audit, "BenchmarkStmtNeverClosed")["samples"]
    assert all(s["finalizers_run"] == 0 for s in samples)


@third_party
def test_goroutine_of_a_forgotten_db_is_counted(misuse_audit):
    # sql.Open starts connectionOpener, which holds the *sql.DB until Close.
    assert result_named(misuse_audit, "BenchmarkDBPerCallNeverClosed")["goroutines_per_op"] == 1.0


@third_party
@pytest.mark.parametrize("name", sorted(WRAPPER_LINES))
def test_largest_leak_site_names_the_wrappers_line(misuse_audit, name):
    # Anchored in the audited module, with go-sqlite3's cgo call as the route.
    function, needle = WRAPPER_LINES[name]
    largest = result_named(misuse_audit, name)["sites"][0]
    assert largest["function"].endswith(f"/sqlitemisuse.{function}")
    assert largest["line"] == source_line(MISUSE_GO, needle)
    assert "go-sqlite3" in (largest["via"] or "")


def test_the_fixture_stays_out_of_the_offline_fixtures_module():
    listed = subprocess.run([go_executable(), "list", "./..."], cwd=FIXTURES, capture_output=True, text=True,
                            check=True).stdout.split()
    assert listed and not any("sqlitemisuse" in path for path in listed)


# ---- go-sqlite3's own benchmarks ----------------------------------------------

OWN_BENCHMARKS = {
    "BenchmarkStmtCache": ("off", "size4_keys1_hit", "size4_keys4_hit", "size4_keys8_evict", "size16_keys8_hit",
                           "size16_keys32_evict"),
    "BenchmarkCustomFunctions": (),
    "BenchmarkSuite": ("BenchmarkExec", "BenchmarkQuery", "BenchmarkParams", "BenchmarkStmt", "BenchmarkRows",
                       "BenchmarkStmtRows", "BenchmarkQueryParallel"),
}


@pytest.fixture(scope="module")
def own_benchmarks_audit(sqlite3_source, tmp_path_factory):
    """go-sqlite3 audited as a user would a dependency: by its module path,
    from a module that requires it (its source is read-only in the module
    cache, so the audit builds it from a writable copy, with the probe)."""
    proc, report = audit_json(tmp_path_factory.mktemp("go-sqlite3"), "--dir", str(MISUSE),
                              "--bench", f"^({'|'.join(OWN_BENCHMARKS)})$", "--sizes", "250,500,1000,2000",
                              SQLITE3_MODULE)
    return proc, report


@third_party
def test_own_benchmarks_are_audited_one_sub_benchmark_at_a_time(own_benchmarks_audit):
    _, report = own_benchmarks_audit
    expected = {"/".join((top, *([sub] if sub else []))) for top, subs in OWN_BENCHMARKS.items()
                for sub in (subs or (None,))}
    assert {r["name"] for r in report["results"]} == expected


@third_party
def test_a_dependency_in_the_read_only_module_cache_is_audited_with_the_probe(own_benchmarks_audit, sqlite3_source):
    _, report = own_benchmarks_audit
    [package] = report["packages"]
    assert package["package"] == SQLITE3_MODULE and package["status"] == "audited"
    assert f"writable copy of the module cache's source at {cache_dir()}" in package["detail"]
    for result in report["results"]:
        assert {s["source"] for s in result["samples"]} == {"probe"}, result["name"]
        assert not any("taken at exit" in note for note in result["notes"]), result["notes"]


@third_party
def test_own_benchmarks_get_no_false_alarm(own_benchmarks_audit):
    proc, report = own_benchmarks_audit
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for result in report["results"]:
        assert result["verdicts"] == ["clean"], (result["name"], result["growth"])
        assert result["c_leak_bytes_per_op"] == 0.0 and result["c_leak_allocs_per_op"] == 0.0, result["name"]
        # Not vacuous: every operation calls into SQLite.
        largest = max(result["samples"], key=lambda s: s["ops"])
        assert largest["cgo_calls"] >= largest["ops"], result["name"]
