"""leakcheck.VerifyNone (goaudit/leakcheck), the Go-side check: `go test`
on its example tests (go_fixtures/verifynone) under the real shim, and without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Mapping

import pytest

from cgo_audit.measure.runner import ShimSession
from cgo_audit.toolchain.gotool import go_executable
from cgo_audit.toolchain.probe import render_settle

from helpers import FIXTURES, GO_HELPERS, REPO

LEAKCHECK = GO_HELPERS / "leakcheck"
NOT_UNDER_SHIM = ("leakcheck: not running under the cgo-audit shim; "
                  "run with LD_PRELOAD=$(cgo-audit build-shim)")
LEAKY_TEST, FIXED_TEST = "TestGetValueLeakyLeavesCHeap", "TestGetValueFixedLeavesNoCHeap"


def go_test(run: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([go_executable(), "test", "-count=1", "-v", "-run", f"^{run}$", "./verifynone"],
                          cwd=FIXTURES, env=dict(env), capture_output=True, text=True, timeout=600)


@pytest.fixture
def shim_env(shim_path: Path) -> Iterator[Mapping[str, str]]:
    """The environment ShimSession gives a target: LD_PRELOAD and CGO_AUDIT_DIR."""
    with ShimSession(shim_path) as session:
        yield session.environment()


def plain_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return env


def test_leaky_call_fails_with_its_exact_leak(shim_env):
    proc = go_test(LEAKY_TEST, {**shim_env, "LEAKCHECK_EXPECT_FAILURE": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "leakcheck: f left 26 B of C heap in 2 allocation(s)" in proc.stdout, proc.stdout
    assert f"--- FAIL: {LEAKY_TEST}" in proc.stdout


def test_fixed_call_passes(shim_env):
    proc = go_test(FIXED_TEST, shim_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"--- PASS: {FIXED_TEST}" in proc.stdout
    assert "leakcheck:" not in proc.stdout


def test_without_the_shim_the_check_is_skipped_and_says_why():
    proc = go_test(f"{FIXED_TEST}|{LEAKY_TEST}", {**plain_env(), "LEAKCHECK_EXPECT_FAILURE": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in (FIXED_TEST, LEAKY_TEST):
        assert f"--- SKIP: {name}" in proc.stdout
    assert proc.stdout.count(NOT_UNDER_SHIM) == 2, proc.stdout


def test_the_failing_example_stays_out_of_plain_runs(shim_env):
    proc = go_test(LEAKY_TEST, {k: v for k, v in shim_env.items() if k != "LEAKCHECK_EXPECT_FAILURE"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"--- SKIP: {LEAKY_TEST}" in proc.stdout
    assert "LEAKCHECK_EXPECT_FAILURE=1" in proc.stdout


def test_copied_sources_match_their_originals():
    # leakcheck carries its own copies so that a module importing it needs
    # nothing outside the goaudit module.
    assert (LEAKCHECK / "cgo_audit_region.h").read_text() == (REPO / "csrc" / "cgo_audit_region.h").read_text(), \
        "copy csrc/cgo_audit_region.h to goaudit/leakcheck/"
    assert (LEAKCHECK / "settle_gen.go").read_text() == render_settle("leakcheck", "leakCheck"), \
        "regenerate goaudit/leakcheck/settle_gen.go (cgo_audit.toolchain.probe.render_settle)"


def test_a_tolerance_covers_a_leak_no_larger_than_itself(shim_env):
    proc = go_test("TestToleranceCoversASmallLeak|TestToleranceBelowTheLeakFails",
                   {**shim_env, "LEAKCHECK_EXPECT_FAILURE": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "--- PASS: TestToleranceCoversASmallLeak" in proc.stdout       # Tolerance(26): 26 B left
    assert "--- FAIL: TestToleranceBelowTheLeakFails" in proc.stdout      # Tolerance(25)
    assert "leakcheck: f left 26 B of C heap in 2 allocation(s) (tolerance 25 B)" in proc.stdout


def test_retries_wait_for_memory_freed_late(shim_env):
    # 4096 B freed by the last of 25 chained finalizers: one settling runs at
    # most ten collections, so only retries see it freed.
    proc = go_test("TestRetriesWaitForMemoryFreedLate|TestWithoutRetriesMemoryFreedLateFails",
                   {**shim_env, "LEAKCHECK_EXPECT_FAILURE": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "--- PASS: TestRetriesWaitForMemoryFreedLate" in proc.stdout
    assert "--- FAIL: TestWithoutRetriesMemoryFreedLateFails" in proc.stdout
    assert "leakcheck: f left 4096 B (4.0 KiB) of C heap in 1 allocation(s)" in proc.stdout


def test_the_go_module_has_the_python_package_version():
    import cgo_audit

    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_goaudit_version.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f'const Version = "v{cgo_audit.__version__}"' in (GO_HELPERS / "version.go").read_text()
