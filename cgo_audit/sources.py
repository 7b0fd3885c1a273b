"""Where the files the package ships beside its Python code are: the shim's C
sources and the Go probe template."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def csrc_dir() -> Path:
    """The shim's C sources: the checkout's csrc/, or the copy a wheel carries."""
    override = os.environ.get("CGO_AUDIT_CSRC")
    candidates = [Path(override)] if override else []
    candidates += [PACKAGE_DIR.parent / "csrc", PACKAGE_DIR / "_csrc"]
    for candidate in candidates:
        if (candidate / "shim.c").is_file():
            return candidate
    raise FileNotFoundError("the shim's C sources (csrc/shim.c) are not installed")


def go_template(name: str) -> str:
    return (PACKAGE_DIR / "toolchain" / "go" / name).read_text()
