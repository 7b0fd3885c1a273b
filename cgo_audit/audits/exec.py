"""`go test -exec 'cgo-audit exec' ./...`: go test hands us each package's
test binary. We run it as go test asked (its output and exit status pass
through), then audit the package: each benchmark when -test.bench was
given, else each test at several -test.count values."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from cgo_audit.audits.bench import AuditProgress, measure_all
from cgo_audit.errors import AuditError
from cgo_audit.measure.runner import ShimSession
from cgo_audit.measure.targets import BENCHMARK, TEST, BenchSettings, BenchTarget, prepare_package
from cgo_audit.model import AuditReport
from cgo_audit.shim.build import build_shim
from cgo_audit.toolchain.gotool import GoPackage, link_info, list_packages, list_tests

TEST_SIZES = (1, 2, 4, 8)


def test_flag(args: Sequence[str], name: str) -> str | None:
    """The value of -test.NAME (or -NAME) in a test binary's arguments."""
    for i, arg in enumerate(args):
        for prefix in (f"-test.{name}=", f"--test.{name}=", f"-{name}="):
            if arg.startswith(prefix):
                return arg[len(prefix):]
        if arg in (f"-test.{name}", f"-{name}") and i + 1 < len(args):
            return args[i + 1]
    return None


def run_as_asked(binary: Path, args: Sequence[str], shim: Path) -> int:
    """The test binary with go test's arguments, under the shim, output passed through."""
    with ShimSession(shim) as session:
        return subprocess.run([str(binary), *args], env=session.environment()).returncode


def exec_settings(args: Sequence[str], settings: BenchSettings) -> BenchSettings:
    """What go test asked for: benchmarks matching -test.bench, else tests matching -test.run."""
    bench = test_flag(args, "bench")
    if bench and bench != "^$":
        return replace(settings, only=BENCHMARK, bench_regex=bench)
    return replace(settings, only=TEST, bench_regex=test_flag(args, "run") or ".",
                   sizes=settings.sizes or TEST_SIZES)


def given_binary_targets(binary: Path, package: GoPackage, settings: BenchSettings) -> list[BenchTarget]:
    """go test's own binary, when ours would not build: figures at exit."""
    prefix = "Benchmark" if settings.only == BENCHMARK else "Test"
    names = [n for n in list_tests(binary, package.dir, settings.bench_regex) if n.startswith(prefix)]
    link = link_info(binary)
    notes = ["figures taken at exit from go test's binary (ours did not build); go test strips it, "
             "so leak sites show C frames only"]
    return [BenchTarget(package, name, binary, False, settings.only or TEST, list(notes), None, link.dynamic)
            for name in names]


def audit_exec(binary: Path, args: Sequence[str], settings: BenchSettings, progress: AuditProgress,
               workdir: Path) -> tuple[int, AuditReport | None]:
    """go test's exit status for the binary, and the audit of its package.

    The tests run once exactly as go test asked, from its binary. The audit
    then builds the package itself, with the probe and its symbols (go test
    strips the binaries it runs); build flags given on go test's command
    line do not reach an -exec program, so put them in GOFLAGS."""
    shim = build_shim()
    if not binary.is_file():
        raise AuditError(f"no test binary at {binary}")
    status = run_as_asked(binary, args, shim)
    settings = exec_settings(args, settings)
    packages = list_packages(["."], Path.cwd(), settings.tags, settings.go_flags)
    if not packages:
        return status, None
    targets, outcome = prepare_package(packages[0], settings, workdir)
    if outcome.status == "build-failed":
        targets = given_binary_targets(binary, packages[0], settings)
    if not targets:
        return status, None
    results = measure_all(targets, settings, progress)
    return status, AuditReport(results=results, packages=[outcome], settings=settings.as_dict())
