"""Regenerates cgo_audit/toolchain/go/layouts.json: the runtime struct offsets the
shim's stack walk needs, per GOARCH and Go release, for binaries that carry
no DWARF (built with -ldflags='-s -w'). Each toolchain comes through the Go
module proxy (GOTOOLCHAIN=goX.Y.Z), builds a small cgo program with DWARF
for each GOARCH (another architecture with its C cross-compiler, see
cgo_audit/toolchain/platform.py), and the offsets are read from it exactly as from a
user's binary.

usage: python scripts/go_layout_table.py [--goarch amd64,arm64] go1.21.0 go1.22.0 ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cgo_audit.toolchain.layout import LAYOUT_TABLE, STRUCT_FIELDS, read_layout, release_of  # noqa: E402
from cgo_audit.toolchain.platform import for_goarch  # noqa: E402

PROGRAM = """package main

// #include <stdlib.h>
import "C"
import "unsafe"

func main() { C.free(unsafe.Pointer(C.CString("x"))) }
"""


def offsets_for(version: str, goarch: str, workdir: Path) -> dict[str, int]:
    source = workdir / f"{version}-{goarch}"
    source.mkdir()
    (source / "go.mod").write_text("module layoutprobe\n\ngo 1.21\n")
    (source / "main.go").write_text(PROGRAM)
    binary = source / "probe"
    env = {**os.environ, "GOTOOLCHAIN": version, "CGO_ENABLED": "1", "GOFLAGS": "", "GOARCH": goarch,
           **for_goarch(goarch).build_env()}
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=source, env=env, check=True)
    layout = read_layout(binary)
    return {name: getattr(layout, name) for name in STRUCT_FIELDS}


def _release_key(release: str) -> list[int]:
    return [int(part) for part in release[2:].split(".")]


def write_table(table: dict[str, dict[str, dict[str, int]]]) -> None:
    lines = []
    for goarch in sorted(table):
        releases = sorted(table[goarch].items(), key=lambda item: _release_key(item[0]))
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in releases)
        lines.append(f" {json.dumps(goarch)}: {{\n{body}\n }}")
    LAYOUT_TABLE.write_text("{\n" + ",\n".join(lines) + "\n}\n")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goarch", default="amd64,arm64", help="comma-separated GOARCH values")
    parser.add_argument("versions", nargs="+", help="toolchains, e.g. go1.26.0")
    args = parser.parse_args(argv)
    table = json.loads(LAYOUT_TABLE.read_text()) if LAYOUT_TABLE.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for version in args.versions:
            for goarch in args.goarch.split(","):
                offsets = offsets_for(version, goarch, Path(tmp))
                table.setdefault(goarch, {})[release_of(version)] = offsets
                print(version, goarch, offsets, flush=True)
    write_table(table)


if __name__ == "__main__":
    main(sys.argv[1:])
