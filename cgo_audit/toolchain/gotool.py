"""The Go toolchain as the harness uses it: list packages, build test
binaries, list their benchmarks, and tell whether LD_PRELOAD can reach them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from cgo_audit.errors import AuditError
from cgo_audit.toolchain.elfheaders import PT_INTERP, NotElf, open_headers

LIST_FIELDS = ("ImportPath,Dir,Name,Module,GoFiles,CgoFiles,TestGoFiles,XTestGoFiles,"
               "Error,DepsErrors,Incomplete,Standard")


@dataclass(frozen=True)
class GoPackage:
    """One package as `go list` sees it."""

    import_path: str
    dir: Path
    name: str
    module_path: str | None
    module_dir: Path | None
    go_files: tuple[str, ...]
    cgo_files: tuple[str, ...]
    test_go_files: tuple[str, ...]
    xtest_go_files: tuple[str, ...]
    error: str | None

    @property
    def uses_cgo(self) -> bool:
        return bool(self.cgo_files)

    @property
    def has_tests(self) -> bool:
        return bool(self.test_go_files or self.xtest_go_files)


class GoBuildError(AuditError):
    """go build/test -c failed; the message carries Go's own first error."""


def go_executable() -> str:
    go = os.environ.get("GO", "go")
    path = shutil.which(go)
    if path is None:
        raise AuditError(f"the Go toolchain is not installed ('{go}' is not on PATH)")
    return path


def _first_error(text: str, limit: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith("#") and "warning: " not in line]
    return "; ".join(lines[:limit]) or "unknown error"


def go_env(directory: Path) -> dict[str, str]:
    proc = subprocess.run([go_executable(), "env", "-json"], cwd=directory, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AuditError(f"go env failed: {_first_error(proc.stderr)}")
    return json.loads(proc.stdout)


def list_packages(patterns: Sequence[str], directory: Path, tags: Sequence[str] = (),
                  go_flags: Sequence[str] = ()) -> list[GoPackage]:
    """The packages patterns match inside directory (a module, or under one)."""
    if not directory.is_dir():
        raise AuditError(f"no such directory: {directory}")
    where = subprocess.run([go_executable(), "env", "GOMOD", "GOWORK"], cwd=directory, capture_output=True,
                           text=True)
    gomod, _, gowork = where.stdout.partition("\n")
    if where.returncode == 0 and gomod.strip() in ("", os.devnull) and gowork.strip() in ("", "off"):
        raise AuditError(f"{directory} is not inside a Go module (no go.mod here or above it)")
    cmd = [go_executable(), "list", "-e", f"-json={LIST_FIELDS}", *_build_flags(tags, go_flags), *patterns]
    proc = subprocess.run(cmd, cwd=directory, capture_output=True, text=True)
    if proc.returncode != 0 and not proc.stdout.strip():
        message = _first_error(proc.stderr, limit=1)
        if "go.mod file not found" in message or "cannot find main module" in message:
            raise AuditError(f"{directory} is not inside a Go module (no go.mod): {message}")
        raise AuditError(f"go list failed in {directory}: {message}")
    packages = []
    decoder = json.JSONDecoder()
    text, pos = proc.stdout, 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        item, pos = decoder.raw_decode(text, pos)
        packages.append(_package(item))
    return packages


def _package(item: Mapping[str, object]) -> GoPackage:
    module = item.get("Module") or {}
    assert isinstance(module, dict)
    error = item.get("Error")
    message = error.get("Err") if isinstance(error, dict) else None
    if not message and item.get("DepsErrors"):
        deps = item["DepsErrors"]
        assert isinstance(deps, list)
        message = "; ".join(str(d.get("Err")) for d in deps[:2])
    return GoPackage(
        import_path=str(item.get("ImportPath", "")), dir=Path(str(item.get("Dir", "."))),
        name=str(item.get("Name", "")), module_path=module.get("Path"),
        module_dir=Path(module["Dir"]) if module.get("Dir") else None,
        go_files=_names(item, "GoFiles"), cgo_files=_names(item, "CgoFiles"),
        test_go_files=_names(item, "TestGoFiles"), xtest_go_files=_names(item, "XTestGoFiles"), error=message)


def _names(item: Mapping[str, object], key: str) -> tuple[str, ...]:
    """A list of file names from `go list -json` (absent when empty)."""
    value = item.get(key)
    return tuple(str(name) for name in value) if isinstance(value, list) else ()


def _build_flags(tags: Sequence[str], go_flags: Sequence[str]) -> list[str]:
    flags = list(go_flags)
    if tags:
        flags.append("-tags=" + ",".join(tags))
    return flags


def build_test_binary(package: GoPackage, output: Path, *, overlay: Path | None = None,
                      tags: Sequence[str] = (), go_flags: Sequence[str] = (),
                      env: Mapping[str, str] | None = None, timeout_s: float = 900.0) -> Path:
    """go test -c for one package; raises GoBuildError with Go's message."""
    cmd = [go_executable(), "test", "-c", "-o", str(output), *_build_flags(tags, go_flags)]
    if overlay is not None:
        cmd.append(f"-overlay={overlay}")
    cmd.append(package.import_path)
    build_env = dict(os.environ)
    build_env.update(env or {})
    try:
        proc = subprocess.run(cmd, cwd=package.dir, capture_output=True, text=True, env=build_env,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise GoBuildError(f"building {package.import_path} took longer than {timeout_s:.0f}s") from None
    if proc.returncode != 0 or not output.is_file():
        raise GoBuildError(f"{package.import_path} does not build: {_first_error(proc.stderr + proc.stdout)}")
    return output


def list_tests(binary: Path, cwd: Path, pattern: str = "^Benchmark", timeout_s: float = 120.0,
               launcher: Sequence[str] = ()) -> list[str]:
    """Names the test binary lists for pattern (top-level tests or benchmarks);
    launcher runs it on another platform (qemu-user)."""
    try:
        proc = subprocess.run([*launcher, str(binary), f"-test.list={pattern}"], cwd=cwd, capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise AuditError(f"{binary.name} -test.list did not finish in {timeout_s:.0f}s") from None
    if proc.returncode != 0:
        raise AuditError(f"{binary.name} -test.list failed: {_first_error(proc.stderr + proc.stdout)}")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip() and " " not in line.strip()]


@dataclass(frozen=True)
class LinkInfo:
    """How an executable is linked, as far as LD_PRELOAD cares."""

    is_elf: bool
    dynamic: bool          # has an interpreter (PT_INTERP): LD_PRELOAD applies
    needs_libc: bool
    interpreter: str = ""  # its dynamic loader: /lib64/ld-linux-x86-64.so.2, /lib/ld-musl-x86_64.so.1


def link_info(path: Path) -> LinkInfo:
    # Raw headers, not pyelftools: run reads this before it starts the target.
    try:
        stream, elf = open_headers(path)
    except (NotElf, OSError):
        return LinkInfo(False, False, False)
    with stream:
        interp = elf.segment(PT_INTERP)
        name = ""
        if interp is not None:
            stream.seek(interp.offset)
            name = stream.read(interp.filesz).split(b"\0", 1)[0].decode(errors="replace")
        return LinkInfo(True, interp is not None, any(lib.startswith("libc.") for lib in elf.needed()), name)


CGO_SYMBOLS = ("x_cgo_init", "_cgo_sys_thread_start")   # runtime/cgo's C code: only in cgo binaries


def has_cgo(path: Path) -> bool:
    """Whether an executable contains C code through cgo: runtime/cgo's C
    functions in its symbols, or, stripped, CGO_ENABLED=1 in its build info
    (which a binary without any cgo package also says, hence symbols first)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as stream:
            elf = ELFFile(stream)
            symtab = elf.get_section_by_name(".symtab")
            if symtab is not None and hasattr(symtab, "get_symbol_by_name"):
                return any(symtab.get_symbol_by_name(name) for name in CGO_SYMBOLS)
    except (ELFError, OSError):
        return False
    try:
        proc = subprocess.run([go_executable(), "version", "-m", str(path)], capture_output=True, text=True,
                              timeout=60)
    except (AuditError, OSError, subprocess.TimeoutExpired):
        return False
    return any(line.split() == ["build", "CGO_ENABLED=1"] for line in proc.stdout.splitlines())


def cgo_compiler(directory: Path, env: Mapping[str, str] | None = None) -> str:
    """The C compiler cgo uses in directory with env (CC, or go env CC)."""
    merged = {**os.environ, **(env or {})}
    proc = subprocess.run([go_executable(), "env", "CC"], cwd=directory, capture_output=True, text=True, env=merged)
    cc = proc.stdout.strip().split()
    return cc[0] if proc.returncode == 0 and cc else merged.get("CC", "gcc")


def has_linked_shim(path: Path) -> bool:
    """Whether the shim is linked into the executable (bench's static builds)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as stream:
            symtab = ELFFile(stream).get_section_by_name(".symtab")
            lookup = getattr(symtab, "get_symbol_by_name", lambda _: None)
            return symtab is not None and bool(lookup("cgo_audit_region"))
    except (ELFError, OSError):
        return False


def unreachable_static_cgo(path: Path) -> str | None:
    """Why the shim cannot measure path's C heap when it is a statically
    linked executable with cgo (LD_PRELOAD does not apply to it), with how
    to rebuild it for the audit; None for any other file, and for a static
    executable that has the shim linked in."""
    link = link_info(path)
    if not link.is_elf or link.dynamic or not has_cgo(path) or has_linked_shim(path):
        return None
    return (f"{path.name} is statically linked with cgo, so LD_PRELOAD cannot reach its C heap: rebuild it "
            "dynamically linked for the audit (go build without -extldflags=-static in -ldflags), or audit its "
            "package with `cgo-audit bench --go-flags=...`, which links the shim into static test binaries")
