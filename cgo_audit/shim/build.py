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

SHIM_SOURCES = ("shim.c", "pointer_map.c", "stacks.c", "attach.c", "export.c")
SHIM_HEADERS = ("cgo_audit_region.h", "cgo_audit_api.h", "shim_internal.h", "pointer_map.h", "spinlock.h",
                "arch.h", "arch_x86_64.h", "arch_arm64.h", "static_link.h")
CFLAGS = ["-O2", "-g", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall", "-Wextra",
          "-fno-omit-frame-pointer"]
LIBS = ["-ldl", "-lpthread"]
LIBRARY_NAME = "libcgoaudit.so"
# The static shim (for statically linked test binaries): objects, not a
# shared library; the code stays in one section so the linker can bound it.
STATIC_ARCHIVE_NAME = "libcgoaudit_static.a"
STATIC_CFLAGS = ["-O2", "-g", "-DCGO_AUDIT_STATIC", "-Wall", "-Wextra", "-fno-omit-frame-pointer",
                 "-fno-reorder-functions", "-fno-reorder-blocks-and-partition"]
STATIC_SECTION = "cgo_audit_text"   # static_link.h: __start_/__stop_ bound the shim's code
# Every entry point the shim defines, each linked with ld --wrap.
STATIC_WRAPPED = ("malloc", "free", "calloc", "realloc", "reallocarray", "aligned_alloc", "memalign", "valloc",
                  "pvalloc", "posix_memalign", "malloc_usable_size", "pthread_create")


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


def build_shim(cross_cc: str | None = None) -> Path:
    """The path of a built shim for the current sources, building it if
    needed; with cross_cc, built by that compiler (for another platform)."""
    override = os.environ.get("CGO_AUDIT_SHIM")
    if override and cross_cc is None:
        if not Path(override).is_file():
            raise AuditError(f"CGO_AUDIT_SHIM names a file that does not exist: {override}")
        return Path(override)
    try:
        src = csrc_dir()
    except FileNotFoundError as exc:
        raise AuditError(str(exc)) from None
    cc = compiler() if cross_cc is None else cross_cc
    if shutil.which(cc) is None:
        raise AuditError(f"no C compiler: '{cc}' is not on PATH")
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


def _binutil(cc: str, name: str) -> str:
    """The binutils program (objcopy, ar) that goes with compiler cc."""
    proc = subprocess.run([cc, f"-print-prog-name={name}"], capture_output=True, text=True)
    found = proc.stdout.strip() if proc.returncode == 0 else ""
    return found if found and shutil.which(found) else name


def _checked(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        first = next((line for line in lines if "error" in line), lines[-1] if lines else "unknown error")
        raise AuditError(f"the static shim failed to {what}: {first.strip()}")
    return proc


def build_static_shim(cc: str) -> Path:
    """An archive of the shim to link into a static executable built with cc
    (the compiler cgo uses: its libc must be the executable's), built once
    per source version and compiler. Link it with static_link_flags()."""
    if shutil.which(cc) is None:
        raise AuditError(f"no C compiler: '{cc}' is not on PATH")
    src = csrc_dir()
    digest = hashlib.sha256(" ".join([cc, *STATIC_CFLAGS, STATIC_SECTION]).encode())
    digest.update(source_digest(src, cc).encode())
    target = cache_dir() / f"static-{digest.hexdigest()[:16]}" / STATIC_ARCHIVE_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        objects = []
        for name in SHIM_SOURCES:
            obj = Path(tmp) / (Path(name).stem + ".o")
            _checked([cc, *STATIC_CFLAGS, "-I", str(src), "-c", "-o", str(obj), str(src / name)], "build")
            sections = _checked([_binutil(cc, "readelf"), "-SW", str(obj)], "be read").stdout
            # .text only, normally (STATIC_CFLAGS keep code out of .text.startup and .text.unlikely)
            renames = sorted({word for word in sections.split() if word == ".text" or word.startswith(".text.")})
            _checked([_binutil(cc, "objcopy"), *(f"--rename-section={s}={STATIC_SECTION}" for s in renames),
                      str(obj)], "be prepared")
            objects.append(str(obj))
        archive = Path(tmp) / STATIC_ARCHIVE_NAME
        _checked([_binutil(cc, "ar"), "rcs", str(archive), *objects], "be archived")
        os.replace(archive, target)
    return target


def static_link_flags(archive: Path) -> str:
    """CGO_LDFLAGS that link the static shim in: every entry point wrapped.
    The archive is pulled in by the first wrapped call, wherever it sits."""
    return f"-Wl,{','.join('--wrap=' + name for name in STATIC_WRAPPED)} {archive}"
