"""`cgo-audit init`, tried as a new user would: in a module outside this
repository, it writes the driver, the pytest configuration with a property
test, the baseline and the CI workflow; the user uncomments the TODO, runs
pytest, and Hypothesis shrinks to the input that leaks. It never overwrites
a file. The go-sqlite3 proof needs the Go module proxy (skips without it)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cgo_audit.toolchain.gotool import go_executable

from helpers import REPO, assert_one_line_error, require_published, run_cli, write_module

SQLITE3 = "github.com/mattn/go-sqlite3"
SQLITE3_VERSION = re.search(rf"^require {re.escape(SQLITE3)} (v\S+)$",
                            (REPO / "go_fixtures" / "sqlitemisuse" / "go.mod").read_text(), re.M).group(1)
DRIVER_MAIN = Path("cmd/cgo-audit-driver/main.go")
SCAFFOLD = (DRIVER_MAIN, Path("cgo_audit_tests/test_c_leaks.py"), Path("pytest.ini"),
            Path("cgo-audit-baseline.json"))
WORKFLOW = Path(".github/workflows/cgo-audit.yml")

# A user's package: a key-value store on SQLite whose lookup folds keys in C
# when they are not ASCII, and forgets to free that copy.
KVSTORE = """
    // Package kvstore keeps string values in SQLite (github.com/mattn/go-sqlite3).
    package kvstore

    /*
    #include <stdlib.h>
    #include <ctype.h>

    // fold_key lower-cases a key's ASCII letters in place and leaves other bytes.
    static void fold_key(char *key) {
    	for (; *key; key++) {
    		*key = (char)tolower((unsigned char)*key);
    	}
    }
    */
    import "C"

    import (
    	"database/sql"
    	"sync"
    	"unsafe"

    	_ "github.com/mattn/go-sqlite3"
    )

    var (
    	once    sync.Once
    	db      *sql.DB
    	openErr error
    )

    func store() (*sql.DB, error) {
    	once.Do(func() {
    		db, openErr = sql.Open("sqlite3", "file::memory:?cache=shared")
    		if openErr != nil {
    			return
    		}
    		db.SetMaxOpenConns(1)
    		_, openErr = db.Exec(`CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT);
    			INSERT INTO kv VALUES ('timeout', '30s'), ('retries', '3')`)
    	})
    	return db, openErr
    }

    // Lookup returns the value stored under key, compared without ASCII case.
    func Lookup(key string) (string, error) {
    	folded := asciiLower(key)
    	if !isASCII(key) {
    		// Keys with other bytes are folded by the C routine.
    		ckey := C.CString(key)
    		C.fold_key(ckey)
    		folded = C.GoString(ckey)
    	}
    	conn, err := store()
    	if err != nil {
    		return "", err
    	}
    	var value string
    	err = conn.QueryRow("SELECT v FROM kv WHERE k = ?", folded).Scan(&value)
    	if err == sql.ErrNoRows {
    		return "", nil
    	}
    	return value, err
    }

    func isASCII(s string) bool {
    	for i := 0; i < len(s); i++ {
    		if s[i] >= 0x80 {
    			return false
    		}
    	}
    	return true
    }

    func asciiLower(s string) string {
    	b := []byte(s)
    	for i, c := range b {
    		if 'A' <= c && c <= 'Z' {
    			b[i] = c + 'a' - 'A'
    		}
    	}
    	return string(b)
    }

    var _ = unsafe.Pointer(nil)
"""
LEAKY_LINE = "\t\tC.fold_key(ckey)\n"
FIXED_LINES = "\t\tdefer C.free(unsafe.Pointer(ckey))\n\t\tC.fold_key(ckey)\n"
TODO_LINE = '\t// auditdriver.Register("kvstore.Lookup", kvstoreLookup)\n'
# The leak message for the final (shrunk) example, as the plugin words it.
LEAK = re.compile(r"CLeakError: kvstore\.Lookup\(\{'key': ('(?:[^'\\]|\\.)*')\}\) "
                  r"left (\d+) B of C heap in (\d+) allocation\(s\); the limit is 0 B")


def user_pytest(module: Path) -> subprocess.CompletedProcess[str]:
    """`pytest` in the user's module, with this checkout's Python (where cgo-audit is installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HYPOTHESIS"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], cwd=module, env=env,
                          capture_output=True, text=True, timeout=1200)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.parts and ".hypothesis" not in p.parts}


@pytest.mark.network
@pytest.mark.slow
def test_new_user_with_go_sqlite3_finds_the_leaking_input_class_and_its_fix(tmp_path):
    # The user's repository, with their module in a subdirectory, outside this checkout.
    repo = tmp_path / "repo"
    module = write_module(repo / "kv", {"kvstore/kvstore.go": KVSTORE}, module="example.com/kv", go_version="1.21")
    assert not module.resolve().is_relative_to(REPO)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    require_published(module, SQLITE3, SQLITE3_VERSION)
    source = module / "kvstore" / "kvstore.go"
    assert LEAKY_LINE in source.read_text()

    proc = run_cli("init", "--goaudit-replace", str(REPO), cwd=module)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for path in SCAFFOLD:
        assert f"wrote {path}" in proc.stdout, proc.stdout
        assert (module / path).is_file()
    # The workflow goes to the repository's root and runs in the module's directory.
    assert (repo / WORKFLOW).is_file() and not (module / WORKFLOW).exists()
    workflow = (repo / WORKFLOW).read_text()
    assert "working-directory: kv" in workflow
    assert "cgo-audit bench --baseline cgo-audit-baseline.json" in workflow and "python -m pytest" in workflow
    # go.mod: goaudit required at this cgo-audit's version, and replaced by this checkout.
    edit = subprocess.run([go_executable(), "mod", "edit", "-json"], cwd=module, capture_output=True, text=True,
                          check=True).stdout
    assert '"Path": "github.com/cgo-audit/cgo-audit/goaudit"' in edit and str(REPO / "goaudit") in edit
    driver = (module / DRIVER_MAIN).read_text()
    assert driver.count(TODO_LINE) == 1 and "TODO(cgo-audit)" in driver

    # Before the TODO is done, pytest says what is missing.
    before = user_pytest(module)
    assert before.returncode == 1 and "no function is registered yet" in before.stdout, before.stdout[-3000:]

    # The user uncomments the TODO's line, nothing else.
    (module / DRIVER_MAIN).write_text(driver.replace(TODO_LINE, TODO_LINE.replace("// ", "", 1)))
    leaky = user_pytest(module)
    assert leaky.returncode == 1, leaky.stdout[-3000:]
    assert "1 failed, 1 passed" in leaky.stdout, leaky.stdout[-3000:]
    leaks = LEAK.findall(leaky.stdout)
    assert leaks, leaky.stdout[-3000:]
    # Hypothesis shrank it to the leaking class, at its smallest: one character that is not ASCII.
    shrunk, leaked_bytes, allocs = leaks[-1]
    key = ast.literal_eval(shrunk)
    assert len(key) == 1 and ord(key) >= 0x80, key
    # The C.CString copy that is never freed: its UTF-8 bytes and the NUL, in one allocation.
    assert int(leaked_bytes) == len(key.encode()) + 1 and int(allocs) == 1
    assert f"Draw 1 (args): {{'key': {shrunk}}}" in leaky.stdout

    # The fix: free the copy. Hypothesis replays the failing example first (its database), then searches.
    source.write_text(source.read_text().replace(LEAKY_LINE, FIXED_LINES))
    fixed = user_pytest(module)
    assert fixed.returncode == 0 and "2 passed" in fixed.stdout, fixed.stdout[-3000:]

    # init again: every file exists, and is left as it is.
    before_files = snapshot(repo)
    again = run_cli("init", "--goaudit-replace", str(REPO), cwd=module)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "wrote" not in again.stdout
    for path in SCAFFOLD:
        assert f"exists, left as is: {path}" in again.stdout, again.stdout
    assert "exists, left as is: go.mod requires github.com/cgo-audit/cgo-audit/goaudit v" in again.stdout
    assert "exists, left as is: go.mod replaces" in again.stdout
    assert f"exists, left as is: {repo / WORKFLOW}" in again.stdout
    assert snapshot(repo) == before_files


# ---- offline: the adapters for JSON-typed signatures, under an old go.mod --------------------------

SHAPES = """
    package shapes

    /*
    #include <stdlib.h>
    #include <string.h>
    static size_t c_len(const char *s) { return strlen(s); }
    */
    import "C"

    import (
    	"context"
    	"unsafe"
    )

    // Thing is a handle the driver cannot build from JSON.
    type Thing struct{ n int }

    // Len is how long s is, counted in C.
    func Len(s string) int {
    	cs := C.CString(s)
    	defer C.free(unsafe.Pointer(cs))
    	return int(C.c_len(cs))
    }

    // Sum adds xs.
    func Sum(xs []int64, scale float64, neg bool) (float64, error) {
    	total := 0.0
    	for _, x := range xs {
    		total += float64(x) * scale
    	}
    	if neg {
    		total = -total
    	}
    	return total, nil
    }

    // Join copies data through the C heap and back; counts are per name.
    func Join(ctx context.Context, data []byte, counts map[string]uint8, names ...string) ([]byte, int, *Thing) {
    	p := C.CBytes(data)
    	defer C.free(p)
    	return C.GoBytes(p, C.int(len(data))), len(counts) + len(names), nil
    }

    // Touch takes nothing and returns nothing.
    func Touch() {}

    // NewThing returns a handle.
    func NewThing() *Thing { return &Thing{} }

    // Use takes a handle: no JSON for it.
    func Use(t *Thing) error { return nil }

    func unexported(s string) {}
"""


def test_adapters_for_json_signatures_build_under_go_1_14_and_pass(tmp_path):
    # go 1.14: the driver must compile without `any` or generics under the module's -lang.
    module = write_module(tmp_path / "m", {"shapes/shapes.go": SHAPES}, module="example.com/m", go_version="1.14")
    funcs = ("shapes.Len", "Sum", "example.com/m/shapes.Join", "shapes.Touch")
    proc = run_cli("init", "--goaudit-replace", str(REPO / "goaudit"), "--dir", str(module),
                   *(arg for name in funcs for arg in ("--func", name)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "registering shapes.Len, shapes.Sum, shapes.Join, shapes.Touch" in proc.stdout
    assert not (module / WORKFLOW).exists() or (module / WORKFLOW).is_file()  # no git: beside go.mod
    driver = (module / DRIVER_MAIN).read_text()
    assert "TODO" not in driver and " any" not in driver
    for name in ("Len", "Sum", "Join", "Touch"):
        assert f'auditdriver.Register("shapes.{name}", shapes{name})' in driver
    # The handle is not JSON: Join's *Thing result is dropped, NewThing and Use are not offered.
    assert "r0, r1, _ := shapes.Join(context.Background(), a.Arg1, a.Arg2, a.Arg3...)" in driver
    assert "NewThing" not in driver and "shapes.Use" not in driver
    tests = (module / "cgo_audit_tests" / "test_c_leaks.py").read_text()
    assert ('"shapes.Join": st.fixed_dictionaries({"data": BYTES, "counts": st.dictionaries(TEXT, '
            'st.integers(0, 2 ** 8 - 1), max_size=8), "names": st.lists(TEXT, max_size=8)}),') in tests
    # Every registered function is called with generated arguments and leaves nothing.
    result = user_pytest(module)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "5 passed" in result.stdout, result.stdout[-3000:]


def test_todo_lists_what_can_be_called_and_says_why_not_for_the_rest(tmp_path):
    module = write_module(tmp_path / "m", {"shapes/shapes.go": SHAPES}, module="example.com/m", go_version="1.14")
    proc = run_cli("init", "--goaudit-replace", str(REPO), "--dir", str(module))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    driver = (module / DRIVER_MAIN).read_text()
    for name in ("Len", "Sum", "Join", "Touch", "NewThing"):
        assert f'\t// auditdriver.Register("shapes.{name}", shapes{name})\n' in driver
    assert "// shapes.Use: its parameter t *Thing is not a JSON value: write its adapter yourself." in driver
    assert "unexported" not in driver
    # Nothing registered yet, and it still builds: the adapters are compiled, only the calls are commented.
    build = subprocess.run([go_executable(), "build", "-o", str(tmp_path / "driver"), f"./{DRIVER_MAIN.parent}"],
                           cwd=module, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    # goaudit declares the oldest language version it compiles under, so a go
    # 1.14 module can require it without moving its own go line.
    assert "\ngo 1.14\n" in (module / "go.mod").read_text()


def test_existing_pytest_configuration_is_left_alone(tmp_path):
    module = write_module(tmp_path / "m", {"shapes/shapes.go": SHAPES,
                                           "pyproject.toml": "[tool.pytest.ini_options]\naddopts = \"-q\"\n"})
    before = (module / "pyproject.toml").read_text()
    proc = run_cli("init", "--goaudit-replace", str(REPO), "--dir", str(module))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (module / "pytest.ini").exists() and (module / "pyproject.toml").read_text() == before
    assert ("exists, left as is: pyproject.toml; add to its pytest section: cgo_audit_go_dir = . and "
            "cgo_audit_driver = ./cmd/cgo-audit-driver") in proc.stdout


def test_bad_input_is_one_line(tmp_path):
    assert_one_line_error(run_cli("init", "--dir", str(tmp_path)), "not inside a Go module")
    module = write_module(tmp_path / "m", {"shapes/shapes.go": SHAPES})
    assert_one_line_error(run_cli("init", "--dir", str(module), "--func", "shapes.Nope"),
                          "--func shapes.Nope: no such exported function", "shapes.Len")
    assert_one_line_error(run_cli("init", "--dir", str(module), "--func", "Use"),
                          "cannot call it with generated arguments", "t *Thing")
    assert_one_line_error(run_cli("init", "--dir", str(module), "--goaudit-replace", str(tmp_path)),
                          "--goaudit-replace", "github.com/cgo-audit/cgo-audit/goaudit")
    # Nothing was written by the refused runs.
    assert sorted(p.name for p in module.iterdir()) == ["go.mod", "shapes"]


def test_driver_stays_up_when_a_result_is_not_json():
    # A generated adapter hands back its function's results as they are (a
    # float64 may be +Inf): goaudit/auditdriver's own Go test checks the answer.
    proc = subprocess.run([go_executable(), "test", "-count=1", "-run", "^TestUnencodableResultIsAnErrorNotTheEnd$",
                           "./auditdriver"], cwd=REPO / "goaudit", capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


def test_vendoring_module_is_told_to_vendor_and_then_builds(tmp_path):
    module = write_module(tmp_path / "m", {"shapes/shapes.go": SHAPES, "vendor/modules.txt": "# no dependencies\n"},
                          go_version="1.14")
    proc = run_cli("init", "--goaudit-replace", str(REPO), "--dir", str(module), "--func", "shapes.Len")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "note: this module vendors its dependencies: run go mod vendor before building the driver" in proc.stdout
    subprocess.run([go_executable(), "mod", "vendor"], cwd=module, check=True, capture_output=True)
    build = subprocess.run([go_executable(), "build", "-o", str(tmp_path / "driver"), f"./{DRIVER_MAIN.parent}"],
                           cwd=module, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
