"""The reader refuses a region written by a shim of another layout (a shim
from another cgo-audit version) with one line, instead of reading it with the
wrong offsets: before the check, a smaller region was silently skipped and
the leaky benchmark came out `clean`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from cgo_audit.measure.runner import ShimSession
from cgo_audit.shim.build import compile_shim
from cgo_audit.shim.cdefs import region_constant, shim_ffi
from cgo_audit.shim.region import MAGIC, latest_region_of
from cgo_audit.sources import csrc_dir

from helpers import assert_one_line_error, copy_cstring_module, run_cli


def shim_with(tmp_path, old: str, new: str):
    """A real shim built from a copy of the sources whose header says `new` instead of `old`."""
    src = tmp_path / "csrc"
    shutil.copytree(csrc_dir(), src)
    header = src / "cgo_audit_region.h"
    text = header.read_text()
    assert old in text
    header.write_text(text.replace(old, new))
    shim = tmp_path / "libcgoaudit-other.so"
    assert compile_shim(shim, src) == []
    return shim


VERSION = region_constant("CGO_AUDIT_LAYOUT_VERSION")
SLOTS = region_constant("CGO_AUDIT_MAX_SLOTS")
SLOT_SIZE = shim_ffi().sizeof("struct cgo_audit_counters")
REGION_SIZE = shim_ffi().sizeof("struct cgo_audit_region")


@pytest.mark.parametrize("old,new,needle", [
    (f"#define CGO_AUDIT_LAYOUT_VERSION {VERSION}", f"#define CGO_AUDIT_LAYOUT_VERSION {VERSION - 1}",
     f"region layout {VERSION - 1} "),
    (f"#define CGO_AUDIT_MAX_SLOTS {SLOTS}", f"#define CGO_AUDIT_MAX_SLOTS {SLOTS // 2}",
     f"{REGION_SIZE - SLOTS // 2 * SLOT_SIZE}-byte region"),
], ids=["older-version", "smaller-region"])
def test_a_region_of_another_layout_is_refused_in_one_line(tmp_path, old, new, needle):
    shim = shim_with(tmp_path, old, new)
    module = copy_cstring_module(tmp_path / "cstring")
    proc = run_cli("bench", "--dir", str(module), "--sizes", "100,200,300", env={"CGO_AUDIT_SHIM": str(shim)})
    assert_one_line_error(proc, needle, f"this cgo-audit reads layout {VERSION} ", "another cgo-audit version")


def test_watch_refuses_a_program_started_under_an_older_shim(tmp_path):
    shim = shim_with(tmp_path, f"#define CGO_AUDIT_LAYOUT_VERSION {VERSION}",
                     f"#define CGO_AUDIT_LAYOUT_VERSION {VERSION - 1}")
    with ShimSession(shim) as session:
        sleeper = subprocess.Popen(["sleep", "60"], env=session.environment())
        try:
            deadline = time.monotonic() + 60
            while not published(session.directory, sleeper.pid):   # the shim publishes as the program starts
                assert time.monotonic() < deadline and sleeper.poll() is None, "no region was published"
                time.sleep(0.05)
            proc = run_cli("watch", str(sleeper.pid), "--duration", "1")
        finally:
            sleeper.kill()
            sleeper.wait()
    assert_one_line_error(proc, f"region layout {VERSION - 1} ", "another cgo-audit version")


def published(directory, pid: int) -> bool:
    path = latest_region_of(directory, pid)
    if path is None:
        return False
    with open(path, "rb") as stream:
        return stream.read(8) == MAGIC.to_bytes(8, sys.byteorder)
