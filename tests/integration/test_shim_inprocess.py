"""The shim's entry points called in-process through cffi (ffi.dlopen): the
glibc contract on every edge case, exact counts by requested size."""

from __future__ import annotations

import pytest

from cgo_audit.shim.cdefs import shim_ffi
from cgo_audit.shim.region import read_cheap

EINVAL, ENOMEM = 22, 12

LIBC_CDEF = """
void *malloc(size_t); void free(void *); void *calloc(size_t, size_t);
void *realloc(void *, size_t); void *reallocarray(void *, size_t, size_t);
int posix_memalign(void **, size_t, size_t); void *aligned_alloc(size_t, size_t);
void *memalign(size_t, size_t); void *valloc(size_t); void *pvalloc(size_t);
size_t malloc_usable_size(void *);
"""


@pytest.fixture(scope="module")
def shim(shim_path):
    ffi = shim_ffi()
    ffi.cdef(LIBC_CDEF, override=True)
    return ffi, ffi.dlopen(str(shim_path))


@pytest.fixture(scope="module")
def libc():
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(LIBC_CDEF)
    return ffi, ffi.dlopen(None)


def live(shim) -> tuple[int, int]:
    ffi, lib = shim
    cheap = read_cheap(lib.cgo_audit_region())
    return cheap.user_live_bytes, cheap.user_live_allocs


def test_malloc_and_free_count_requested_bytes(shim):
    ffi, lib = shim
    before = live(shim)
    p = lib.malloc(19)
    q = lib.malloc(8)
    assert live(shim) == (before[0] + 27, before[1] + 2)
    lib.free(p)
    lib.free(q)
    assert live(shim) == before


def test_malloc_zero_is_one_allocation_of_zero_bytes(shim):
    ffi, lib = shim
    before = live(shim)
    p = lib.malloc(0)
    assert p != ffi.NULL
    assert live(shim) == (before[0], before[1] + 1)
    lib.free(p)
    assert live(shim) == before


def test_free_null_changes_nothing(shim):
    ffi, lib = shim
    before = live(shim)
    lib.free(ffi.NULL)
    assert live(shim) == before


def test_realloc_null_is_malloc_and_realloc_zero_frees(shim):
    ffi, lib = shim
    before = live(shim)
    p = lib.realloc(ffi.NULL, 100)
    assert live(shim) == (before[0] + 100, before[1] + 1)
    p = lib.realloc(p, 5000)
    assert live(shim) == (before[0] + 5000, before[1] + 1)
    assert lib.realloc(p, 0) == ffi.NULL  # glibc frees and returns NULL
    assert live(shim) == before


def test_calloc_overflow_is_enomem(shim, libc):
    ffi, lib = shim
    before = live(shim)
    ffi.errno = 0
    assert lib.calloc(2**63, 4) == ffi.NULL
    assert ffi.errno == ENOMEM
    assert live(shim) == before
    p = lib.calloc(7, 9)
    assert bytes(ffi.buffer(p, 63)) == b"\0" * 63
    assert live(shim) == (before[0] + 63, before[1] + 1)
    lib.free(p)


def test_reallocarray_overflow_is_enomem_and_keeps_the_block(shim):
    ffi, lib = shim
    before = live(shim)
    p = lib.malloc(32)
    ffi.errno = 0
    assert lib.reallocarray(p, 2**62, 8) == ffi.NULL
    assert ffi.errno == ENOMEM
    assert live(shim) == (before[0] + 32, before[1] + 1)
    p = lib.reallocarray(p, 10, 12)
    assert live(shim) == (before[0] + 120, before[1] + 1)
    lib.free(p)
    assert live(shim) == before


@pytest.mark.parametrize("alignment", [0, 3, 24, 4097])
def test_posix_memalign_bad_alignment_is_einval(shim, libc, alignment):
    ffi, lib = shim
    lffi, llib = libc
    before = live(shim)
    out = ffi.new("void **")
    assert lib.posix_memalign(out, alignment, 64) == EINVAL
    assert llib.posix_memalign(lffi.new("void **"), alignment, 64) == EINVAL
    assert live(shim) == before


@pytest.mark.parametrize("alignment", [16, 64, 4096, 65536])
def test_aligned_family_is_aligned_and_counted(shim, alignment):
    ffi, lib = shim
    before = live(shim)
    out = ffi.new("void **")
    assert lib.posix_memalign(out, alignment, 100) == 0
    blocks = [out[0], lib.aligned_alloc(alignment, alignment * 2), lib.memalign(alignment, 33)]
    for block in blocks:
        assert int(ffi.cast("uintptr_t", block)) % alignment == 0
    assert live(shim) == (before[0] + 100 + alignment * 2 + 33, before[1] + 3)
    for block in blocks:
        lib.free(block)
    assert live(shim) == before


def test_valloc_and_pvalloc_are_page_aligned_and_count_requested_size(shim):
    ffi, lib = shim
    before = live(shim)
    p, q = lib.valloc(10), lib.pvalloc(10)
    for block in (p, q):
        assert int(ffi.cast("uintptr_t", block)) % 4096 == 0
    assert live(shim) == (before[0] + 20, before[1] + 2)
    lib.free(p)
    lib.free(q)
    assert live(shim) == before


def test_aligned_alloc_bad_alignment_follows_glibc(shim, libc):
    ffi, lib = shim
    lffi, llib = libc
    before = live(shim)
    ffi.errno = lffi.errno = 0
    ours = lib.aligned_alloc(3, 64)
    theirs = llib.aligned_alloc(3, 64)
    assert (ours == ffi.NULL) == (theirs == lffi.NULL)
    assert ffi.errno == lffi.errno
    if ours != ffi.NULL:
        assert live(shim) == (before[0] + 64, before[1] + 1)
        lib.free(ours)
        llib.free(theirs)
    assert live(shim) == before


def test_free_of_a_pointer_never_seen_is_ignored(shim, libc):
    ffi, lib = shim
    lffi, llib = libc
    before = live(shim)
    ignored = int(lib.cgo_audit_region().header.ignored_frees)
    foreign = llib.malloc(48)  # straight from glibc: the shim never saw it
    lib.free(ffi.cast("void *", int(lffi.cast("uintptr_t", foreign))))
    assert live(shim) == before
    assert int(lib.cgo_audit_region().header.ignored_frees) == ignored + 1


def test_malloc_usable_size_is_glibcs(shim):
    ffi, lib = shim
    p = lib.malloc(20)
    assert lib.malloc_usable_size(p) >= 20
    lib.free(p)


def test_peak_is_exact_for_one_thread(shim):
    ffi, lib = shim
    region = lib.cgo_audit_region()
    base = int(region.header.peak_live_bytes)
    big = lib.malloc(base + (3 << 20))   # a new peak well above anything before
    small = lib.malloc(1000)
    lib.free(big)
    lib.free(small)
    current = live(shim)[0] + read_cheap(region).thread_start_live_bytes
    assert int(region.header.peak_live_bytes) == current + base + (3 << 20) + 1000


def test_anonymous_region_has_no_path(shim):
    ffi, lib = shim
    buf = ffi.new("char[4096]")
    assert lib.cgo_audit_region_path(buf, 4096) == -1  # CGO_AUDIT_DIR is unset in-process
