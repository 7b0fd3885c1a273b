"""The cffi declarations of the shim, read from its C headers (never repeated here)."""

from __future__ import annotations

import re
from functools import lru_cache

import cffi

from cgo_audit.sources import csrc_dir

_CDEF_BLOCK = re.compile(r"/\* CDEF-BEGIN \*/(.*?)/\* CDEF-END \*/", re.S)
HEADERS = ("cgo_audit_region.h", "cgo_audit_api.h")


def cdef_text(header: str) -> str:
    """The part of a header between its CDEF markers."""
    text = (csrc_dir() / header).read_text()
    blocks = _CDEF_BLOCK.findall(text)
    if not blocks:
        raise RuntimeError(f"{header} has no CDEF block")
    return "\n".join(blocks)


@lru_cache(maxsize=1)
def shim_ffi() -> cffi.FFI:
    """One FFI for the region layout and the shim's exported functions."""
    ffi = cffi.FFI()
    for header in HEADERS:
        ffi.cdef(cdef_text(header))
    return ffi


@lru_cache(maxsize=None)
def region_constant(name: str) -> int:
    """An integer #define of the region header (cffi's ABI mode keeps none)."""
    match = re.search(rf"^#define {re.escape(name)} (\w+)\s*$", cdef_text("cgo_audit_region.h"), re.M)
    if match is None:
        raise RuntimeError(f"cgo_audit_region.h defines no {name}")
    return int(match.group(1), 0)
