#!/usr/bin/env python3
"""The churn loop's speed after `cgo-audit attach`, against the same loop
under LD_PRELOAD, as ratios in the same invocation.

Workload: bench/cstringloop (two C.CString and two C.free per iteration),
started with -wait: it waits on stdin, the shim is attached (or was
preloaded), then the loop runs and times itself, so the injection and
process start-up are left out. Modes run in a shuffled order in each
repetition; a ratio is median(mode) / median(baseline).

Target (issue 10): attach within 1.15x of LD_PRELOAD.

usage: python bench/attach_overhead.py [--reps N] [--iterations N] [--json FILE]
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

from cgo_audit.audits.attach import attached  # noqa: E402
from cgo_audit.shim.build import build_shim  # noqa: E402
from cgo_audit.toolchain.layout import read_layout  # noqa: E402

MODES = ("plain", "preload: counting", "attach: counting", "preload: stacks sampled", "attach: stacks sampled")


def build_loop(workdir: Path) -> Path:
    loop = workdir / "cstringloop"
    env = dict(os.environ, CGO_CFLAGS="-O2 -g -fno-omit-frame-pointer")
    subprocess.run(["go", "build", "-o", str(loop), "."], cwd=HERE / "cstringloop", check=True, env=env)
    return loop


def run_once(loop: Path, iterations: int, mode: str, shim: Path, regions: Path, cpu: int | None) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "CGO_AUDIT_DIR")}
    stacks = "sampled" if "sampled" in mode else "off"
    if mode.startswith("preload"):
        env.update(LD_PRELOAD=str(shim), CGO_AUDIT_DIR=str(regions),
                   CGO_AUDIT_GO_LAYOUT=read_layout(loop).environment_value())
        if stacks != "off":
            env.update(CGO_AUDIT_STACKS=stacks, CGO_AUDIT_SAMPLE_BYTES=str(512 * 1024))
    argv = [str(loop), "-wait", "-n", str(iterations)]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        if mode.startswith("attach"):
            with attached(proc.pid, stacks, 512 * 1024):
                proc.stdin.write("go\n")
                proc.stdin.flush()
                timing = proc.stdout.readline()
        else:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            timing = proc.stdout.readline()
        if proc.wait(timeout=600) != 0:
            raise RuntimeError(f"{mode}: the loop failed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return float(timing.strip()) / iterations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--iterations", type=int, default=2_000_000)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "attach_overhead.json")
    parser.add_argument("--cpu", type=int, default=(os.cpu_count() or 1) - 1,
                        help="pin every run to this CPU (-1: do not pin)")
    args = parser.parse_args()
    shim = build_shim()
    cpu = args.cpu if args.cpu >= 0 and shutil.which("taskset") else None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cgo-audit-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None) \
            as work:
        workdir = Path(work)
        loop = build_loop(workdir)
        samples: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.reps):
            order = list(MODES)
            random.shuffle(order)
            for mode in order:
                regions = Path(tempfile.mkdtemp(dir=workdir))
                samples[mode].append(run_once(loop, args.iterations, mode, shim, regions, cpu))
                shutil.rmtree(regions, ignore_errors=True)
    command = f"python bench/attach_overhead.py --reps {args.reps} --iterations {args.iterations} --cpu {args.cpu}"
    print(f"$ {command}    ({os.cpu_count()} CPUs, {time.monotonic() - started:.0f}s)")
    print(f"\ncstringloop: {args.iterations} iterations x {args.reps} repetitions")
    print(f"  {'mode':26} {'ns/iter':>9} {'vs plain':>9} {'vs preload':>11}")
    rows = {}
    plain = statistics.median(samples["plain"])
    for mode in MODES:
        median = statistics.median(samples[mode])
        kind = mode.split(": ", 1)[-1]
        preload = statistics.median(samples[f"preload: {kind}"]) if mode != "plain" else None
        against = median / preload if preload else None
        rows[mode] = {"ns_per_iteration": median, "ratio_vs_plain": median / plain, "ratio_vs_preload": against}
        print(f"  {mode:26} {median:9.1f} {median / plain:8.3f}x " + (f"{against:10.3f}x" if against else ""))
    summary = {"command": command, "cpus": os.cpu_count(), "modes": rows, "target_attach_vs_preload": 1.15}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n(written to {args.json})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
