#!/usr/bin/env python3
"""What `cgo-audit run` adds before the target runs, and to a whole short
program, as figures against a plain start in the same invocation.

1. Start-up: the time from launching a command to the first line of the
   target's main(), `cgo-audit run --stacks all -- BIN` less plain `BIN`, on a
   small cgo binary and on a generated one of at least 50 MB with DWARF
   (thousands of generated functions, plus embedded data). Each with a cold
   layout cache (a fresh CGO_AUDIT_CACHE) and a warm one. Beside it, what
   reading the runtime's offsets from DWARF first (the old way) takes on
   the same binary.
2. Whole process: `cgo-audit run --stacks off -- cstringloop -n N` against
   plain `cstringloop -n N`, N chosen so the plain run takes about 3 s; the
   ratio of wall times (medians), start-up and exit included. Beside them,
   the loop under LD_PRELOAD of the shim alone (as `run` sets it up, with
   no harness around it): what the shim's counting costs, apart from what
   the harness adds.

Runs alternate between the modes so drift on the machine spreads evenly.

usage: python bench/startup.py [--reps N] [--json FILE] [--min-mb 50]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from cgo_audit.shim.build import build_shim  # noqa: E402
from cgo_audit.toolchain.layout import layout_from_dwarf, read_layout  # noqa: E402

STAMP_MAIN = """package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"os"
	"time"
	"unsafe"
%(imports)s
)

%(data)s

func main() {
	now := time.Now().UnixNano()
	if len(os.Args) > 1 {
		os.WriteFile(os.Args[1], []byte(fmt.Sprint(now)), 0o644)
	}
	p := C.malloc(16)
	C.free(unsafe.Pointer(p))
%(calls)s
}
"""


def go_build(directory: Path, output: Path) -> None:
    env = dict(os.environ, CGO_CFLAGS="-O2 -g -fno-omit-frame-pointer", GOFLAGS="-mod=mod")
    subprocess.run([shutil.which("go") or "go", "build", "-o", str(output), "."], cwd=directory, check=True,
                   env=env)


def small_binary(work: Path) -> Path:
    source = work / "small"
    source.mkdir()
    (source / "go.mod").write_text("module startupsmall\n\ngo 1.21\n")
    (source / "main.go").write_text(STAMP_MAIN % {"imports": "", "data": "", "calls": ""})
    go_build(source, work / "small.bin")
    return work / "small.bin"


def large_binary(work: Path, min_mb: int, packages: int = 40, functions: int = 200) -> Path:
    """A Go program with packages x functions generated functions (DWARF for
    each) and enough embedded data to pass min_mb."""
    source = work / "large"
    source.mkdir()
    (source / "go.mod").write_text("module startuplarge\n\ngo 1.21\n")
    imports, calls = [], []
    for p in range(packages):
        directory = source / f"p{p}"
        directory.mkdir()
        body = [f"package p{p}\n", "type State struct{ A, B, C int; S string; M map[string]int }\n"]
        for f in range(functions):
            body.append(f"func F{f}(s *State, x int) int {{\n\tswitch x % 7 {{\n"
                        + "".join(f"\tcase {c}:\n\t\ts.A += x * {c + f}\n\t\ts.S = fmt.Sprint(s.B, {c})\n"
                                  for c in range(7))
                        + "\t}\n\treturn s.A + s.B\n}\n")
        body.append("func All(x int) int {\n\ts := &State{M: map[string]int{}}\n\tt := 0\n"
                    + "".join(f"\tt += F{f}(s, x)\n" for f in range(functions)) + "\treturn t\n}\n")
        (directory / "gen.go").write_text(body[0] + 'import "fmt"\n' + "".join(body[1:]))
        imports.append(f'\tp{p} "startuplarge/p{p}"')
        calls.append(f"\tif len(os.Args) > 2 {{ fmt.Println(p{p}.All(len(os.Args))) }}")
    (source / "blob.bin").write_bytes(os.urandom(min_mb << 20))
    data = '//go:embed blob.bin\nvar blob []byte'
    calls.append("\tif len(os.Args) > 3 { fmt.Println(blob[len(os.Args)]) }")   # kept by the linker
    main = STAMP_MAIN % {"imports": "\t_ \"embed\"\n" + "\n".join(imports), "data": data, "calls": "\n".join(calls)}
    (source / "main.go").write_text(main)
    go_build(source, work / "large.bin")
    return work / "large.bin"


def time_to_main(argv: list[str], stamp: Path, env: dict[str, str]) -> float:
    """Seconds from launching argv to the target's first line of main()."""
    if stamp.exists():
        stamp.unlink()
    launched = time.time_ns()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (int(stamp.read_text()) - launched) / 1e9


def audit_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "cgo_audit", "run", "--quiet", "--duration", "0", *args]


def startup(binaries: dict[str, Path], reps: int, work: Path) -> dict[str, dict[str, float]]:
    stamp = work / "stamp"
    results: dict[str, dict[str, float]] = {}
    for name, binary in binaries.items():
        samples: dict[str, list[float]] = {"plain": [], "run, cold cache": [], "run, warm cache": []}
        cache = work / f"cache-{name}"
        env = dict(os.environ, CGO_AUDIT_CACHE=str(cache))
        # Builds the shim into it. (A program this short is `inconclusive`, exit 2: not an error here.)
        subprocess.run(audit_argv("--", str(binary), str(stamp)), env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(reps):
            modes = list(samples)
            random.shuffle(modes)
            for mode in modes:
                if mode == "plain":
                    argv = [str(binary), str(stamp)]
                else:
                    if mode == "run, cold cache":   # the shim stays built: only the layout is read again
                        shutil.rmtree(cache / "layouts", ignore_errors=True)
                    argv = audit_argv("--stacks", "all", "--", str(binary), str(stamp))
                samples[mode].append(time_to_main(argv, stamp, env))
        started = time.monotonic()
        layout_from_dwarf(binary)
        dwarf_s = time.monotonic() - started
        os.environ["CGO_AUDIT_CACHE"] = str(work / f"cache-inprocess-{name}")   # cold: nothing cached yet
        started = time.monotonic()
        read_layout(binary)
        table_s = time.monotonic() - started
        del os.environ["CGO_AUDIT_CACHE"]
        plain = statistics.median(samples["plain"])
        results[name] = {
            "size_mb": binary.stat().st_size / (1 << 20),
            "plain_to_main_s": plain,
            "added_cold_s": statistics.median(samples["run, cold cache"]) - plain,
            "added_warm_s": statistics.median(samples["run, warm cache"]) - plain,
            "dwarf_first_layout_s": dwarf_s,
            "table_first_layout_cold_s": table_s,
        }
    return results


def whole_process(reps: int, work: Path, seconds: float) -> dict[str, float]:
    loop = work / "cstringloop"
    go_build(HERE / "cstringloop", loop)
    probe = subprocess.run([str(loop), "-n", "1000000"], capture_output=True, text=True, check=True)
    iterations = int(1_000_000 * seconds * 1e9 / float(probe.stdout.split()[-1]))
    argv = {"plain": [str(loop), "-n", str(iterations)],
            "shim alone": [str(loop), "-n", str(iterations)],
            "run --stacks off": audit_argv("--stacks", "off", "--", str(loop), "-n", str(iterations))}
    regions = work / "regions"
    regions.mkdir()
    # What `run --stacks off` gives the target: the shim, a region directory and the runtime's layout.
    preload = dict(os.environ, LD_PRELOAD=str(build_shim()), CGO_AUDIT_DIR=str(regions),
                   CGO_AUDIT_GO_LAYOUT=read_layout(loop).environment_value())
    env = {"plain": None, "shim alone": preload, "run --stacks off": None}
    walls: dict[str, list[float]] = {name: [] for name in argv}
    for _ in range(reps):
        order = list(argv)
        random.shuffle(order)
        for name in order:
            started = time.monotonic()
            # A 3 s program gives too few samples for a verdict: `inconclusive`, exit 2, is expected.
            subprocess.run(argv[name], env=env[name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            walls[name].append(time.monotonic() - started)
        for leftover in regions.iterdir():
            leftover.unlink()
    plain = statistics.median(walls["plain"])
    alone = statistics.median(walls["shim alone"])
    audited = statistics.median(walls["run --stacks off"])
    return {"iterations": iterations, "plain_s": plain, "shim_alone_s": alone, "shim_alone_ratio": alone / plain,
            "run_stacks_off_s": audited, "ratio": audited / plain}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--min-mb", type=int, default=50, help="size of the generated binary (default 50)")
    parser.add_argument("--seconds", type=float, default=3.0, help="plain length of the whole-process loop")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "startup.json")
    args = parser.parse_args()
    build_shim()
    with tempfile.TemporaryDirectory(prefix="cgo-audit-startup-") as tmp:
        work = Path(tmp)
        binaries = {"small": small_binary(work), "large": large_binary(work, args.min_mb)}
        found = startup(binaries, args.reps, work)
        whole = whole_process(args.reps, work, args.seconds)
    command = f"python bench/startup.py --reps {args.reps} --min-mb {args.min_mb} --seconds {args.seconds:g}"
    print(f"$ {command}    ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})\n")
    print("  added: launch to the target's main() under `run`, less plain; layout: reading the runtime's")
    print("  offsets in-process, the old way (DWARF first) and the new (table first, cold cache)\n")
    print(f"  {'binary':8} {'size':>8} {'added, cold':>12} {'added, warm':>12} {'layout, DWARF':>14} "
          f"{'layout, table':>14} {'ratio':>7}")
    for name, row in found.items():
        ratio = row["dwarf_first_layout_s"] / max(row["table_first_layout_cold_s"], 1e-6)
        print(f"  {name:8} {row['size_mb']:6.1f}MB {row['added_cold_s']:11.3f}s {row['added_warm_s']:11.3f}s "
              f"{row['dwarf_first_layout_s']:13.3f}s {row['table_first_layout_cold_s']:13.4f}s {ratio:6.0f}x")
    print(f"\n  whole process, cstringloop -n {whole['iterations']}: plain {whole['plain_s']:.2f}s, "
          f"shim alone {whole['shim_alone_s']:.2f}s ({whole['shim_alone_ratio']:.3f}x), "
          f"run --stacks off {whole['run_stacks_off_s']:.2f}s, ratio {whole['ratio']:.3f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"command": command, "startup": found, "whole_process": whole}, indent=2) + "\n")
    print(f"\n(written to {args.json})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
