#!/usr/bin/env python3
"""The shim's overhead, as ratios against a plain run in the same invocation.

Workloads:
  cstringloop  the cgo loop of the field guide's fix: two C.CString and two
               C.free per iteration, no I/O (bench/cstringloop)
  cmalloc      a C loop of malloc(19), malloc(8) and two frees: the shim's
               cost per call with no cgo around it (bench/cmalloc.c)

Each mode runs once per repetition, in a shuffled order, so drift on the
machine spreads evenly; a ratio is median(mode) / median(plain). The loops
time themselves, so process start-up is left out.

With --baseline-shim FILE, another build of the shim (an older commit's:
`cgo-audit build-shim --output FILE` there) counts beside this one, in the
same shuffled runs: a change to the shim's cost, measured against its own
before.

usage: python bench/overhead.py [--reps N] [--iterations N] [--baseline-shim FILE] [--json FILE]
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
sys.path.insert(0, str(HERE.parent))

from cgo_audit.shim.build import build_shim  # noqa: E402
from cgo_audit.toolchain.layout import read_layout  # noqa: E402


def build_workloads(workdir: Path) -> dict[str, Path]:
    loop = workdir / "cstringloop"
    # Built as the audit builds: C with frame pointers, for the stack walk.
    env = dict(os.environ, CGO_CFLAGS="-O2 -g -fno-omit-frame-pointer")
    subprocess.run(["go", "build", "-o", str(loop), "."], cwd=HERE / "cstringloop", check=True, env=env)
    cmalloc = workdir / "cmalloc"
    subprocess.run(["cc", "-O2", "-fno-builtin", "-o", str(cmalloc), str(HERE / "cmalloc.c")], check=True)
    return {"cstringloop": loop, "cmalloc": cmalloc}


def modes(shim: Path, regions: Path, go_binary: Path, baseline: Path | None = None) -> dict[str, dict[str, object]]:
    """Mode name -> how to run a workload in it (argv prefix, environment).
    The stack modes walk the goroutine too, given the Go binary's layout."""
    preload = {"LD_PRELOAD": str(shim), "CGO_AUDIT_DIR": str(regions),
               "CGO_AUDIT_GO_LAYOUT": read_layout(go_binary).environment_value()}
    found = {
        "plain": {"prefix": [], "env": {}},
        "shim: counting": {"prefix": [], "env": dict(preload)},
        **({"shim: counting (baseline build)": {"prefix": [], "env": {**preload, "LD_PRELOAD": str(baseline)}}}
           if baseline else {}),
        "shim: stacks, every allocation": {"prefix": [], "env": {**preload, "CGO_AUDIT_STACKS": "all"}},
        "shim: stacks, sampled 512 KiB": {"prefix": [], "env": {**preload, "CGO_AUDIT_STACKS": "sampled"}},
    }
    heaptrack = shutil.which("heaptrack")
    if heaptrack:
        found["heaptrack"] = {"prefix": [heaptrack, "-o", str(regions / "heaptrack")], "env": {}}
    return found


def run_once(binary: Path, iterations: int, mode: dict[str, object], cpu: int | None) -> float:
    env = dict(os.environ)
    env.update(mode["env"])  # type: ignore[arg-type]
    argv = [*mode["prefix"], str(binary), "-n", str(iterations)]  # type: ignore[misc]
    if cpu is not None:
        # One CPU for every mode: the scheduler moving threads is the largest noise here.
        argv = ["taskset", "-c", str(cpu), *argv]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    # The loop prints its own wall time in ns on a line of its own (heaptrack
    # adds lines of its own around it).
    timing = [line for line in proc.stdout.splitlines() if line.strip().isdigit()]
    return float(timing[-1]) / iterations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=2_000_000)
    parser.add_argument("--workloads", default="cstringloop,cmalloc")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "overhead.json")
    parser.add_argument("--cpu", type=int, default=(os.cpu_count() or 1) - 1,
                        help="pin every run to this CPU (-1: do not pin)")
    parser.add_argument("--baseline-shim", type=Path, metavar="FILE",
                        help="another build of the shim to count beside this one (its cost before a change)")
    parser.add_argument("--modes", help="only these modes, comma-separated (plain is always run)")
    args = parser.parse_args()
    if args.baseline_shim is not None and not args.baseline_shim.is_file():
        parser.error(f"--baseline-shim: no such file: {args.baseline_shim}")
    shim = build_shim()
    with tempfile.TemporaryDirectory(prefix="cgo-audit-bench-") as work:
        workdir = Path(work)
        binaries = build_workloads(workdir)
        table = modes(shim, workdir, binaries["cstringloop"], args.baseline_shim)
        if args.modes:
            wanted = {"plain", *(name.strip() for name in args.modes.split(","))}
            unknown = wanted - set(table)
            if unknown:
                parser.error(f"--modes: no such mode: {', '.join(sorted(unknown))} (modes: {', '.join(table)})")
            table = {name: mode for name, mode in table.items() if name in wanted}
        results: dict[str, dict[str, list[float]]] = {}
        started = time.monotonic()
        for workload in args.workloads.split(","):
            samples: dict[str, list[float]] = {name: [] for name in table}
            for _ in range(args.reps):
                order = list(table)
                random.shuffle(order)
                for name in order:
                    samples[name].append(run_once(binaries[workload], args.iterations, table[name],
                                                  args.cpu if args.cpu >= 0 and shutil.which("taskset") else None))
            results[workload] = samples
    summary = report(results, args, time.monotonic() - started)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n(written to {args.json})")
    return 0


def report(results: dict[str, dict[str, list[float]]], args: argparse.Namespace, seconds: float) -> dict:
    command = f"python bench/overhead.py --reps {args.reps} --iterations {args.iterations} --cpu {args.cpu}" \
        + (f" --workloads {args.workloads}" if args.workloads != "cstringloop,cmalloc" else "") \
        + (f" --baseline-shim {args.baseline_shim}" if args.baseline_shim else "") \
        + (f" --modes '{args.modes}'" if args.modes else "")
    print(f"$ {command}    ({os.cpu_count()} CPUs, {seconds:.0f}s)")
    summary: dict[str, object] = {"command": command, "cpus": os.cpu_count(), "workloads": {}}
    for workload, samples in results.items():
        base = statistics.median(samples["plain"])
        print(f"\n{workload}: {args.iterations} iterations x {args.reps} repetitions")
        print(f"  {'mode':34} {'ns/iter':>9} {'ratio':>7} {'ratio IQR':>15}")
        rows = {}
        for name, values in samples.items():
            median = statistics.median(values)
            ratios = sorted(v / base for v in values)
            q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
            rows[name] = {"ns_per_iteration": median, "ratio": median / base, "ratio_q1": q1, "ratio_q3": q3}
            print(f"  {name:34} {median:9.1f} {median / base:6.3f}x {q1:6.3f}..{q3:.3f}x")
        summary["workloads"][workload] = rows  # type: ignore[index]
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
