"""Writes the probe overlay: a _test.go file per test package that wraps each
benchmark (see go/probe_test.go.tmpl), handed to `go test -overlay`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template
from typing import Iterable

from cgo_audit.sources import go_template
from cgo_audit.toolchain.gotool import GoPackage

WRAPPER_PREFIX = "Benchmark_cgoaudit_"
TEST_WRAPPER_PREFIX = "Test_cgoaudit_"
INTERNAL, EXTERNAL = "internal", "external"

# func BenchmarkX(b *testing.B) / func TestX(t *testing.T), however testing is imported.
_TESTING_FUNC = re.compile(r"^func\s+((?:Benchmark|Test)\w*)\s*\(\s*\w+\s+\*\s*(?:\w+\s*\.\s*)?([BT])\s*\)", re.M)
_PACKAGE_CLAUSE = re.compile(r"^package\s+(\w+)", re.M)


def wrapper_name(name: str) -> str:
    """The probe's wrapper for BenchmarkX or TestX."""
    if name.startswith("Benchmark"):
        return WRAPPER_PREFIX + name[len("Benchmark"):]
    return TEST_WRAPPER_PREFIX + name[len("Test"):]


def is_wrapper(name: str) -> bool:
    return name.startswith((WRAPPER_PREFIX, TEST_WRAPPER_PREFIX))


def locate_benchmarks(package: GoPackage) -> dict[str, tuple[str, str]]:
    """Benchmark or test name -> (internal|external, Go package name of its file)."""
    found: dict[str, tuple[str, str]] = {}
    for kind, files in ((INTERNAL, package.test_go_files), (EXTERNAL, package.xtest_go_files)):
        for name in files:
            try:
                text = (package.dir / name).read_text(errors="replace")
            except OSError:
                continue
            clause = _PACKAGE_CLAUSE.search(text)
            if clause is None:
                continue
            for match in _TESTING_FUNC.finditer(text):
                name, letter = match.group(1), match.group(2)
                if (name.startswith("Benchmark") and letter == "B") or (name.startswith("Test") and letter == "T"):
                    found.setdefault(name, (kind, clause.group(1)))
    return found


def _wrapper(name: str) -> str:
    if name.startswith("Benchmark"):
        return (f"func {wrapper_name(name)}(b *cgoAuditTesting.B) {{\n"
                f"\tcgoAuditProbe.wrap(b, {json.dumps(name)}, {name})\n}}\n")
    return (f"func {wrapper_name(name)}(t *cgoAuditTesting.T) {{\n"
            f"\tcgoAuditProbe.wrapTest(t, {json.dumps(name)}, {name})\n}}\n")


def render_probe(go_package: str, names: Iterable[str]) -> str:
    wrappers = "\n".join(_wrapper(name) for name in sorted(names))
    return Template(go_template("probe_test.go.tmpl")).substitute(package=go_package, wrappers=wrappers)


PROBE_PREFIX = "cgoAudit"


def render_settle(go_package: str, prefix: str = PROBE_PREFIX) -> str:
    """The settle code for a package, its functions named prefix+Settle etc.
    (the probe's, or a generated settle_gen.go under another prefix)."""
    return Template(go_template("settle.go.tmpl")).substitute(package=go_package, prefix=prefix)


def write_overlay(package: GoPackage, benchmarks: Iterable[str], workdir: Path) -> Path | None:
    """The overlay JSON that adds probe wrappers for benchmarks, or None when
    none of them could be located in a test file."""
    located = locate_benchmarks(package)
    by_kind: dict[tuple[str, str], list[str]] = {}
    for name in benchmarks:
        if name in located:
            by_kind.setdefault(located[name], []).append(name)
    if not by_kind:
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    replace = {}
    for (kind, go_package), names in by_kind.items():
        suffix = "" if kind == INTERNAL else "_x"
        for part, text in (("probe", render_probe(go_package, names)), ("settle", render_settle(go_package))):
            source = workdir / f"{part}{suffix}_test.go"
            source.write_text(text)
            replace[str(package.dir / f"zz_cgo_audit_{part}{suffix}_test.go")] = str(source)
    overlay = workdir / "overlay.json"
    overlay.write_text(json.dumps({"Replace": replace}, indent=1))
    return overlay
