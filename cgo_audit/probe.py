"""Writes the probe overlay: a _test.go file per test package that wraps each
benchmark (see go/probe_test.go.tmpl), handed to `go test -overlay`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template
from typing import Iterable

from cgo_audit.gotool import GoPackage
from cgo_audit.sources import go_template

WRAPPER_PREFIX = "Benchmark_cgoaudit_"
INTERNAL, EXTERNAL = "internal", "external"

# func BenchmarkX(b *testing.B) — however the testing package is imported.
_BENCH_FUNC = re.compile(r"^func\s+(Benchmark\w*)\s*\(\s*\w+\s+\*\s*(?:\w+\s*\.\s*)?B\s*\)", re.M)
_PACKAGE_CLAUSE = re.compile(r"^package\s+(\w+)", re.M)


def wrapper_name(benchmark: str) -> str:
    return WRAPPER_PREFIX + benchmark[len("Benchmark"):]


def original_name(listed: str) -> str:
    """The user's benchmark a listed name stands for (wrappers map back)."""
    if listed.startswith(WRAPPER_PREFIX):
        return "Benchmark" + listed[len(WRAPPER_PREFIX):]
    return listed


def locate_benchmarks(package: GoPackage) -> dict[str, tuple[str, str]]:
    """Benchmark name -> (internal|external, Go package name of its file)."""
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
            for match in _BENCH_FUNC.finditer(text):
                found.setdefault(match.group(1), (kind, clause.group(1)))
    return found


def render_probe(go_package: str, benchmarks: Iterable[str]) -> str:
    wrappers = "\n".join(
        f"func {wrapper_name(name)}(b *cgoAuditTesting.B) {{\n"
        f"\tcgoAuditProbe.wrap(b, {json.dumps(name)}, {name})\n}}\n"
        for name in sorted(benchmarks))
    return Template(go_template("probe_test.go.tmpl")).substitute(package=go_package, wrappers=wrappers)


def render_settle(go_package: str) -> str:
    """The settle code for a package (also the driver's settle_gen.go)."""
    return Template(go_template("settle.go.tmpl")).substitute(package=go_package)


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
