"""Builds the shim: a plain C shared library, never linked to Python, since it
is preloaded into Go programs. Built once per source version and cached."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cgo_audit.errors import AuditError
from cgo_audit.sources import csrc_dir

SHIM_SOURCES = ("shim.c", "pointer_map.c", "stacks.c")
SHIM_HEADERS = ("cgo_audit_region.h", "cgo_audit_api.h", "shim_internal.h", "pointer_map.h", "spinlock.h")
CFLAGS = ["-O2", "-g", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall", "-Wextra",
          "-fno-omit-frame-pointer"]
LIBS = ["-ldl", "-lpthread"]
LIBRARY_NAME = "libcgoaudit.so"


def compiler() -> str:
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise AuditError(f"no C compiler: '{cc}' is not on PATH (install gcc, or set CC)")
    return cc


def cache_dir() -> Path:
    root = os.environ.get("CGO_AUDIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cgo-audit")
    return Path(root)


def source_digest(src: Path, cc: str) -> str:
    digest = hashlib.sha256(" ".join([cc, *CFLAGS, *LIBS]).encode())
    for name in (*SHIM_SOURCES, *SHIM_HEADERS):
        digest.update(name.encode())
        digest.update((src / name).read_bytes())
    return digest.hexdigest()[:16]


def compile_shim(output: Path, src: Path | None = None, cc: str | None = None,
                 extra_flags: tuple[str, ...] = ()) -> list[str]:
    """Compiles the shim to output; returns the compiler's warnings (lines)."""
    src = src or csrc_dir()
    cc = cc or compiler()
    cmd = [cc, *CFLAGS, *extra_flags, "-I", str(src), "-o", str(output),
           *(str(src / name) for name in SHIM_SOURCES), *LIBS]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        first = next((line for line in proc.stderr.splitlines() if "error" in line),
                     proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "unknown error")
        raise AuditError(f"the shim failed to build: {first.strip()}")
    return [line for line in proc.stderr.splitlines() if "warning:" in line]


def build_shim() -> Path:
    """The path of a built shim for the current sources, building it if needed."""
    override = os.environ.get("CGO_AUDIT_SHIM")
    if override:
        if not Path(override).is_file():
            raise AuditError(f"CGO_AUDIT_SHIM names a file that does not exist: {override}")
        return Path(override)
    try:
        src = csrc_dir()
    except FileNotFoundError as exc:
        raise AuditError(str(exc)) from None
    cc = compiler()
    target = cache_dir() / f"shim-{source_digest(src, cc)}" / LIBRARY_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: parallel audits never see half a file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        compile_shim(Path(tmp), src, cc)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
