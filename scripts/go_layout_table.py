"""Regenerates cgo_audit/toolchain/go/layouts.json: the runtime struct offsets the
shim's stack walk needs, per Go release, for binaries that carry no DWARF
(built with -ldflags='-s -w'). Each toolchain comes through the Go module
proxy (GOTOOLCHAIN=goX.Y.Z), builds a small cgo program with DWARF, and the
offsets are read from it exactly as from a user's binary.

usage: python scripts/go_layout_table.py go1.21.0 go1.22.0 ...
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cgo_audit.toolchain.layout import LAYOUT_TABLE, STRUCT_FIELDS, read_layout, release_of  # noqa: E402

PROGRAM = """package main

// #include <stdlib.h>
import "C"
import "unsafe"

func main() { C.free(unsafe.Pointer(C.CString("x"))) }
"""


def offsets_for(version: str, workdir: Path) -> dict[str, int]:
    source = workdir / version
    source.mkdir()
    (source / "go.mod").write_text("module layoutprobe\n\ngo 1.21\n")
    (source / "main.go").write_text(PROGRAM)
    binary = source / "probe"
    env = {**os.environ, "GOTOOLCHAIN": version, "CGO_ENABLED": "1", "GOFLAGS": ""}
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=source, env=env, check=True)
    layout = read_layout(binary)
    return {name: getattr(layout, name) for name in STRUCT_FIELDS}


def main(versions: list[str]) -> None:
    table = json.loads(LAYOUT_TABLE.read_text()) if LAYOUT_TABLE.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for version in versions:
            table[release_of(version)] = offsets_for(version, Path(tmp))
            print(version, table[release_of(version)])
    ordered = dict(sorted(table.items(), key=lambda item: [int(p) for p in item[0][2:].split(".")]))
    LAYOUT_TABLE.write_text("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in ordered.items())
                            + "\n}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
