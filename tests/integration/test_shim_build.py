"""The shim as built: no warnings under -Wall -Wextra, no Python inside, and
a region layout that C and cffi agree on byte for byte."""

from __future__ import annotations

import subprocess

from cgo_audit.shim.build import compile_shim
from cgo_audit.shim.cdefs import shim_ffi
from cgo_audit.toolchain.gotool import link_info
from cgo_audit.toolchain.probe import render_settle

from helpers import GO_HELPERS, REPO


def test_shim_builds_without_warnings(tmp_path):
    assert compile_shim(tmp_path / "libcgoaudit.so") == []


def test_shim_is_a_plain_c_library(shim_path):
    needed = subprocess.run(["readelf", "-d", str(shim_path)], capture_output=True, text=True).stdout
    assert "python" not in needed.lower()
    assert link_info(shim_path).is_elf
    exported = subprocess.run(["nm", "-D", "--defined-only", str(shim_path)], capture_output=True,
                              text=True).stdout.split()
    for name in ("malloc", "calloc", "realloc", "reallocarray", "free", "posix_memalign", "aligned_alloc",
                 "memalign", "valloc", "pvalloc", "malloc_usable_size", "cgo_audit_region"):
        assert name in exported


def test_c_and_cffi_agree_on_the_region_layout(tmp_path):
    ffi = shim_ffi()
    checks = []
    for struct in ("cgo_audit_counters", "cgo_audit_stack", "cgo_audit_header", "cgo_audit_region"):
        ctype = ffi.typeof(f"struct {struct}")
        checks.append((f"sizeof(struct {struct})", ffi.sizeof(ctype)))
        for field, _ in ctype.fields:
            checks.append((f"offsetof(struct {struct}, {field})", ffi.offsetof(ctype, field)))
    source = tmp_path / "layout.c"
    source.write_text('#include <stdio.h>\n#include <stddef.h>\n#include "cgo_audit_region.h"\nint main(void) {\n'
                      + "".join(f'    printf("%zu\\n", (size_t){expr});\n' for expr, _ in checks) + "}\n")
    binary = tmp_path / "layout"
    subprocess.run(["cc", "-I", str(REPO / "csrc"), "-o", str(binary), str(source)], check=True)
    printed = [int(line) for line in subprocess.run([str(binary)], capture_output=True, text=True).stdout.split()]
    assert printed == [value for _, value in checks]


def test_driver_settle_code_is_generated_from_the_probe_template():
    generated = (GO_HELPERS / "auditdriver" / "settle_gen.go").read_text()
    assert generated == render_settle("auditdriver", "driver"), "regenerate goaudit/auditdriver/settle_gen.go"
