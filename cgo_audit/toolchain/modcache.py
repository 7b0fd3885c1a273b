"""Dependencies audited by module path (`cgo-audit bench github.com/x/y`):
their source sits read-only in Go's module cache, where `go build -overlay`
refuses to add files, so the probe could not be compiled in. A writable copy
of the module, at a fixed path (Go's build cache keys cgo objects on the
directory, so a second audit compiles no C again), takes its place."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

from cgo_audit.shim.build import cache_dir
from cgo_audit.toolchain.gotool import GoPackage, go_executable


@functools.lru_cache(maxsize=None)
def module_cache_root() -> Path | None:
    """GOMODCACHE, or None when go cannot say."""
    proc = subprocess.run([go_executable(), "env", "GOMODCACHE"], capture_output=True, text=True)
    value = proc.stdout.strip()
    return Path(value).resolve() if proc.returncode == 0 and value else None


def in_module_cache(package: GoPackage) -> bool:
    root = module_cache_root()
    module_dir = package.module_dir
    return root is not None and module_dir is not None and module_dir.resolve().is_relative_to(root)


def writable_copy(package: GoPackage) -> GoPackage:
    """The package as found in a writable copy of its module (made on first use)."""
    assert package.module_dir is not None
    root = module_cache_root()
    assert root is not None
    module_dir = package.module_dir.resolve()
    target = cache_dir() / "modules" / module_dir.relative_to(root)
    if not (target / "go.mod").is_file():
        _stage(module_dir, target, package.module_path or "")
    return replace(package, dir=target / package.dir.resolve().relative_to(module_dir), module_dir=target)


def _stage(source: Path, target: Path, module_path: str) -> None:
    """Copies source to target all at once: a concurrent audit sees either
    nothing or the whole copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True, copy_function=shutil.copyfile, symlinks=True)
        for directory, dirs, files in os.walk(staging):
            for entry in (*dirs, *files):
                path = Path(directory) / entry
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode | 0o200)
        if not (staging / "go.mod").is_file():
            # A module from before go.mod: Go synthesizes one in the cache.
            (staging / "go.mod").write_text(f"module {module_path}\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / "go.mod").is_file():   # not another audit's finished copy
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
