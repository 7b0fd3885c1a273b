"""The pytest plugin (cgo_audit.pytest_plugin) as users get it: their test
file run by pytest in a subprocess, the plugin loaded through its entry
point, calling the real cstring driver under the real shim."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path
from typing import Callable

import pytest

from cgo_audit.toolchain.gotool import go_executable

from helpers import FIXTURES, GO_HELPERS, write_module

pytest_plugins = ["pytester"]

INI = f"""
[pytest]
cgo_audit_go_dir = {FIXTURES}
cgo_audit_driver = ./cmd/cstring-driver
cgo_audit_driver_cwd = {FIXTURES / "cstring"}
"""

# The README's example, as users write it.
GET_VALUE_TEST = '''
import pytest
from hypothesis import given, settings, strategies as st

# Arguments travel as JSON: any text but lone surrogates.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


@pytest.mark.limit_c_leaks("0 B")
@settings(deadline=None)  # each call settles the Go heap before and after: tens of ms
@given(file=TEXT, key=TEXT)
def test_get_value_leaves_nothing(cgo_audit, file, key):
    cgo_audit.call("{func}", {{"file": file, "key": key}})
'''

# Each test runs a user's pytest session against a real Go driver.
pytestmark = pytest.mark.slow

LEAK_MESSAGE = re.compile(r"\w+\(.*\)(?:, called \d+ times,)? left .* of C heap in \d+ allocation\(s\); "
                          r"the limit is .*")


@pytest.fixture(scope="session")
def user_caches(shim_path: Path) -> dict[str, str]:
    """The shim and Go's build cache, found before pytester points HOME at a
    temporary directory: without them each run would rebuild both."""
    gocache = subprocess.run([go_executable(), "env", "GOCACHE"], capture_output=True, text=True,
                             check=True).stdout.strip()
    return {"CGO_AUDIT_SHIM": str(shim_path), "GOCACHE": gocache}


@pytest.fixture
def run_user_tests(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                   user_caches: dict[str, str]) -> Callable[..., pytest.RunResult]:
    """Writes the user's test file (and ini) and runs pytest on it as they would."""
    for name, value in user_caches.items():
        monkeypatch.setenv(name, value)

    def run(source: str, ini: str = INI, **files: str) -> pytest.RunResult:
        pytester.makeini(ini)
        pytester.makepyfile(test_user=textwrap.dedent(source), **files)
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", timeout=600)

    return run


def outcome_of(result: pytest.RunResult, test: str) -> str:
    """PASSED / FAILED / ERROR of one test, from the -rA summary."""
    found = {match.group(1) for match in
             re.finditer(rf"^(PASSED|FAILED|ERROR|SKIPPED) test_user\.py::{test}\b", result.stdout.str(), re.M)}
    assert len(found) == 1, (test, found, result.stdout.str())
    return found.pop()


def leak_messages(result: pytest.RunResult) -> set[str]:
    return {match.group(0) for match in LEAK_MESSAGE.finditer(result.stdout.str())}


def test_a_leak_fails_with_the_minimal_example(run_user_tests):
    result = run_user_tests(GET_VALUE_TEST.format(func="GetValueLeaky"))
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert re.search(r"^plugins:.*\bcgo-audit\b", output, re.M), "the plugin did not load from its entry point"
    # Hypothesis reports the smallest leaking input: both strings empty,
    # which still leave their two NUL terminators behind.
    assert re.search(r"(Falsifying example|Failing test case): test_get_value_leaves_nothing\("
                     r".*?\bfile='',.*?\bkey='',", output, re.S), output
    assert leak_messages(result) == {
        "GetValueLeaky({'file': '', 'key': ''}) left 2 B of C heap in 2 allocation(s); the limit is 0 B"}
    assert "CLeakError" in output


def test_the_fix_passes(run_user_tests):
    result = run_user_tests(GET_VALUE_TEST.format(func="GetValueFixed"))
    result.assert_outcomes(passed=1)
    assert not leak_messages(result)


LIMITS_TEST = '''
import pytest
from hypothesis import given, settings, strategies as st

CONF = {"file": "testdata/app.conf", "key": "timeout"}   # 18 + 8 = 26 bytes per leaky call
SHORT = st.text(alphabet="abc", max_size=15)              # at most 16 + 16 = 32 bytes
ANY_LENGTH = st.text(alphabet="abc")


def test_without_a_limit_the_call_returns_what_it_left(cgo_audit):
    delta = cgo_audit.call("GetValueLeaky", CONF, count=4)
    assert (delta.calls, delta.errors, delta.c_bytes, delta.c_allocs, delta.result) == (4, 0, 104, 8, "30s")


@pytest.mark.limit_c_leaks("64 B")
def test_under_the_limit(cgo_audit):
    assert cgo_audit.call("GetValueLeaky", CONF).c_bytes == 26


@pytest.mark.limit_c_leaks("16 B")
def test_over_the_limit(cgo_audit):
    cgo_audit.call("GetValueLeaky", CONF, count=3)


@pytest.mark.limit_c_leaks("1 KiB")
def test_up_to_a_kibibyte(cgo_audit):
    assert cgo_audit.call("GetValueLeaky", CONF, count=39).c_bytes == 1014


@pytest.mark.limit_c_leaks("1 KiB")
def test_past_a_kibibyte(cgo_audit):
    cgo_audit.call("GetValueLeaky", CONF, count=40)


@pytest.mark.limit_c_leaks("32 B")
@settings(deadline=None)
@given(file=SHORT, key=SHORT)
def test_every_example_fits(cgo_audit, file, key):
    cgo_audit.call("GetValueLeaky", {"file": file, "key": key})


@pytest.mark.limit_c_leaks("20 B")
@settings(deadline=None)
@given(file=ANY_LENGTH, key=ANY_LENGTH)
def test_long_examples_leak_too_much(cgo_audit, file, key):
    cgo_audit.call("GetValueLeaky", {"file": file, "key": key})


def test_an_unknown_function(cgo_audit):
    cgo_audit.call("GetValueNowhere", CONF)
'''


def test_limits(run_user_tests):
    result = run_user_tests(LIMITS_TEST)
    outcomes = {name: outcome_of(result, name) for name in (
        "test_without_a_limit_the_call_returns_what_it_left", "test_under_the_limit", "test_over_the_limit",
        "test_up_to_a_kibibyte", "test_past_a_kibibyte", "test_every_example_fits",
        "test_long_examples_leak_too_much", "test_an_unknown_function")}
    assert outcomes == {
        "test_without_a_limit_the_call_returns_what_it_left": "PASSED", "test_under_the_limit": "PASSED",
        "test_over_the_limit": "FAILED", "test_up_to_a_kibibyte": "PASSED", "test_past_a_kibibyte": "FAILED",
        "test_every_example_fits": "PASSED", "test_long_examples_leak_too_much": "FAILED",
        "test_an_unknown_function": "FAILED"}, result.stdout.str()
    messages = leak_messages(result)
    shrunk = [message for message in messages if message.endswith("the limit is 20 B")]
    assert messages - set(shrunk) == {
        "GetValueLeaky({'file': 'testdata/app.conf', 'key': 'timeout'}), called 3 times, "
        "left 78 B of C heap in 6 allocation(s); the limit is 16 B",
        "GetValueLeaky({'file': 'testdata/app.conf', 'key': 'timeout'}), called 40 times, "
        "left 1040 B (1.0 KiB) of C heap in 80 allocation(s); the limit is 1024 B (1.0 KiB)"}
    # Shrunk to the shortest arguments that pass 20 B: 19 characters and two NULs.
    assert len(shrunk) == 1, messages
    found = re.fullmatch(r"GetValueLeaky\(\{'file': '(a*)', 'key': '(a*)'\}\) left 21 B of C heap in "
                         r"2 allocation\(s\); the limit is 20 B", shrunk[0])
    assert found and len(found.group(1) + found.group(2)) == 19, shrunk
    result.stdout.fnmatch_lines(["*the driver has no function named 'GetValueNowhere' "
                                 "(it registers: GetValueFixed, GetValueLeaky)*"])


def test_marker_misuse_is_a_usage_error(run_user_tests):
    result = run_user_tests('''
        import pytest

        @pytest.mark.limit_c_leaks("0 B")
        def test_without_the_fixture():
            pass

        @pytest.mark.limit_c_leaks("ten bytes")
        def test_with_a_size_that_is_not_one(cgo_audit):
            pass
    ''')
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        "cgo-audit: test_without_the_fixture uses @pytest.mark.limit_c_leaks but not the cgo_audit fixture: "
        "the limit applies to cgo_audit.call(...); add cgo_audit to its arguments",
        "cgo-audit: test_with_a_size_that_is_not_one: @pytest.mark.limit_c_leaks: 'ten bytes' is not a size: "
        "write it like '64 B', '1 KiB' or '256MiB'"])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize("ini, env, reason", [
    (INI.replace("./cmd/cstring-driver", "./cmd/no-such-driver"), {},
     "cgo-audit: cannot build ./cmd/no-such-driver: *no-such-driver: directory not found*"),
    (INI, {"GO": "/nonexistent/go"}, "cgo-audit: the Go toolchain is not installed ('/nonexistent/go' is not on PATH)"),
    ("[pytest]\n", {}, "cgo-audit: no driver: set cgo_audit_driver *"),
], ids=["build-error", "no-go", "not-configured"])
def test_a_driver_that_cannot_be_built_fails_each_test_in_one_line(run_user_tests, monkeypatch, ini, env, reason):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = run_user_tests('''
        def test_one(cgo_audit):
            cgo_audit.call("GetValueFixed")

        def test_two(cgo_audit):
            cgo_audit.call("GetValueFixed")
    ''', ini=ini)
    result.assert_outcomes(errors=2)
    output = result.stdout.str()
    # Each test's report is the reason alone: no traceback, no frame of the plugin.
    result.stdout.fnmatch_lines(["*ERROR at setup of test_one*", reason, "*ERROR at setup of test_two*", reason])
    assert "Traceback" not in output and "pytest_plugin.py" not in output, output


def test_a_conftest_may_supply_its_own_driver(run_user_tests, cstring_driver):
    # No ini options: the conftest's fixture says what to run, and where.
    result = run_user_tests('''
        import pytest

        @pytest.mark.limit_c_leaks("0 B")
        def test_fixed(cgo_audit):
            assert cgo_audit.call("GetValueFixed", {"file": "testdata/app.conf", "key": "port"}).result == "8305"
    ''', ini="[pytest]\n", conftest=f'''
import pytest

@pytest.fixture(scope="session")
def cgo_audit_driver_command():
    return [{str(cstring_driver)!r}], {str(FIXTURES / "cstring")!r}
''')
    result.assert_outcomes(passed=1)


CRASHING_DRIVER = {
    "main.go": '''
        // Command crashdriver aborts in C from a given argument on.
        package main

        /*
        #include <stdlib.h>
        static void abort_from(int n, int first) { if (n >= first) abort(); }
        */
        import "C"

        import (
            "encoding/json"

            "github.com/cgo-audit/cgo-audit/goaudit/auditdriver"
        )

        func main() {
            auditdriver.Register("AbortFrom7", func(raw json.RawMessage) (any, error) {
                var n int
                if err := json.Unmarshal(raw, &n); err != nil {
                    return nil, err
                }
                C.abort_from(C.int(n), 7)
                return n, nil
            })
            auditdriver.Main()
        }
    ''',
}


def test_a_crash_is_shrunk_too(run_user_tests, pytester):
    # Each example after a crash gets a new driver, so Hypothesis can shrink
    # the crash to its smallest input like any other failure.
    module = write_module(pytester.path / "crashdriver", CRASHING_DRIVER, module="example.com/crashdriver")
    with (module / "go.mod").open("a") as go_mod:
        go_mod.write(f"\nrequire github.com/cgo-audit/cgo-audit/goaudit v0.0.0\n"
                     f"replace github.com/cgo-audit/cgo-audit/goaudit => {GO_HELPERS}\n")
    result = run_user_tests('''
        from hypothesis import given, settings, strategies as st

        @settings(deadline=None)
        @given(n=st.integers(min_value=0, max_value=1000))
        def test_abort(cgo_audit, n):
            cgo_audit.call("AbortFrom7", n)
    ''', ini=f"[pytest]\ncgo_audit_go_dir = {module}\ncgo_audit_driver = .\n")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert re.search(r"(Falsifying example|Failing test case): test_abort\(.*?\bn=7,", output, re.S), output
    assert re.search(r"DriverError: AbortFrom7\(7\): driver (exited with status|killed by signal) \d+ while answering",
                     output), output
