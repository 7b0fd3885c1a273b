"""The platform a test binary is built for and run on: the host itself, or
another Linux architecture (linux/arm64 on an x86-64 host) built with a C
cross-compiler and run under qemu-user. The shim is built for the target
too and preloaded into the guest; qemu-user runs the guest in the host
process, so the shim's region file, /proc and the probe's pipes are the
host's, read as for a native run."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cgo_audit.errors import AuditError

# os.uname(), not the platform module (what platform.machine() reads): that
# module costs every run 10 ms of start-up.
_MACHINE = os.uname().machine.lower()
HOST_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(_MACHINE, _MACHINE)


@dataclass(frozen=True)
class CrossTools:
    cc: str               # the C cross-compiler cgo and the shim are built with
    emulator: str         # the qemu-user binary that runs the guest
    sysroot: str          # the guest's libraries (qemu -L, QEMU_LD_PREFIX)
    packages: str         # the Debian packages that provide them


CROSS = {
    "arm64": CrossTools("aarch64-linux-gnu-gcc", "qemu-aarch64", "/usr/aarch64-linux-gnu",
                        "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"),
    "amd64": CrossTools("x86_64-linux-gnu-gcc", "qemu-x86_64", "/usr/x86_64-linux-gnu",
                        "gcc-x86-64-linux-gnu libc6-dev-amd64-cross qemu-user"),
}


@dataclass(frozen=True)
class Platform:
    goarch: str
    tools: CrossTools | None = None   # None: the host's own compiler, run natively

    @property
    def emulated(self) -> bool:
        return self.tools is not None

    @property
    def shim_cc(self) -> str | None:
        """The compiler the shim must be built with (None: the host's)."""
        return self.tools.cc if self.tools else None

    def build_env(self) -> dict[str, str]:
        """What go test -c needs to build for this platform."""
        if self.tools is None:
            return {}
        return {"GOARCH": self.goarch, "CGO_ENABLED": "1", "CC": self.tools.cc}

    def launcher(self) -> list[str]:
        """The prefix that runs one of its binaries here (empty: natively)."""
        if self.tools is None:
            return []
        return [self.tools.emulator, "-L", self.tools.sysroot]

    def command(self, argv: Sequence[str], preload: Path | None = None) -> list[str]:
        """argv run on this platform, with preload (the shim) preloaded into
        the guest only: in the host's LD_PRELOAD, the host's loader would try
        it on qemu itself. qemu -E splits its value on commas."""
        if self.tools is None:
            return list(argv)
        extra = ["-E", f"LD_PRELOAD={preload}"] if preload is not None else []
        if preload is not None and "," in str(preload):
            raise AuditError(f"the shim's path has a comma, which qemu-user cannot pass on: {preload}")
        return [*self.launcher(), *extra, *argv]

    def note(self) -> str | None:
        """What a report must say about runs on this platform."""
        if self.tools is None:
            return None
        return (f"linux/{self.goarch} under {self.tools.emulator} (emulated): C-heap figures and sites are exact; "
                "RSS includes the emulator's own memory and timings are not the hardware's")


NATIVE = Platform(HOST_GOARCH)

# The C compiler that builds a shim for a binary loaded by musl's loader,
# per architecture: a glibc shim would pull glibc into a musl process.
MUSL_CC = {"amd64": "musl-gcc", "arm64": "aarch64-linux-musl-gcc"}


def is_musl(interpreter: str) -> bool:
    return "ld-musl" in interpreter


def shim_compiler_for(platform: Platform, interpreter: str) -> str | None:
    """The compiler of the shim that a binary with this dynamic loader can
    preload (None: the platform's default); AuditError when it is missing."""
    if not is_musl(interpreter):
        return platform.shim_cc
    cc = MUSL_CC.get(platform.goarch, "musl-gcc")
    if shutil.which(cc) is None:
        raise AuditError(f"the test binary is linked against musl ({interpreter}), so the shim must be built "
                         f"with {cc}, which is not on PATH (Debian: apt-get install musl-tools)")
    return cc


def missing_tools(goarch: str) -> str | None:
    """Why goarch's binaries cannot be built and run here, or None."""
    if goarch == HOST_GOARCH:
        return None
    tools = CROSS.get(goarch)
    if tools is None:
        return f"GOARCH={goarch} is not supported (supported: {', '.join(sorted({HOST_GOARCH, *CROSS}))})"
    absent = [name for name in (tools.cc, tools.emulator) if shutil.which(name) is None]
    if not Path(tools.sysroot).is_dir():
        absent.append(tools.sysroot)
    if absent:
        return (f"GOARCH={goarch} needs {' and '.join(absent)} (Debian: apt-get install {tools.packages})")
    return None


def for_goarch(goarch: str | None) -> Platform:
    """The platform for GOARCH (None: the host's); AuditError when its
    cross tools are missing."""
    if goarch is None or goarch == HOST_GOARCH:
        return NATIVE
    reason = missing_tools(goarch)
    if reason is not None:
        raise AuditError(reason)
    return Platform(goarch, CROSS[goarch])
