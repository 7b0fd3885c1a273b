#!/usr/bin/env python3
"""What one scrape of goaudit/cheap's C-heap profile costs, in a process that
holds 1,000,000 live C blocks from 4,096 distinct stacks (under the shim,
every allocation's stack recorded), against Go's own heap profile
(runtime/pprof) taken in the same process: the ratio is median / median.

The target's claim: at most 100 ms of CPU per scrape. The first scrape also
names each return address once (cached for the life of the process) and
reads the executable's symbol table; later ones reuse that.

usage: python bench/cheap_scrape.py [--blocks N] [--bits B] [--scrapes N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cgo_audit.shim.build import build_shim  # noqa: E402
from cgo_audit.toolchain.layout import read_layout  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1_000_000)
    parser.add_argument("--bits", type=int, default=12, help="2^bits distinct stacks")
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cheap-scrape-") as work:
        binary = Path(work) / "cheapscrape"
        env = dict(os.environ, CGO_CFLAGS="-O2 -g -fno-omit-frame-pointer")
        subprocess.run(["go", "build", "-o", str(binary), "."], cwd=HERE / "cheapscrape", check=True, env=env)
        env.update(LD_PRELOAD=str(build_shim()), CGO_AUDIT_STACKS="all",
                   CGO_AUDIT_GO_LAYOUT=read_layout(binary).environment_value())
        proc = subprocess.run([str(binary), "-blocks", str(args.blocks), "-bits", str(args.bits),
                               "-scrapes", str(args.scrapes)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return 1
    result = json.loads(proc.stdout)
    first, warm, base = result["first_scrape"], result["scrape_median"], result["go_heap_profile_median"]
    print(f"{result['blocks']:,} live C blocks from {result['stacks']:,} stacks; "
          f"profile {result['profile_bytes']:,} B gzipped")
    print(f"  first scrape:           {first['CPUms']:7.1f} ms CPU  {first['WallMs']:7.1f} ms wall")
    print(f"  scrape (median of {args.scrapes}):  {warm['CPUms']:7.1f} ms CPU  {warm['WallMs']:7.1f} ms wall")
    print(f"  Go heap profile (median): {base['CPUms']:5.1f} ms CPU  {base['WallMs']:7.1f} ms wall")
    print(f"  ratio to Go's heap profile: {result['cpu_ratio_to_go_heap_profile']:.2f}x CPU")
    print(f"  idle, handler linked:   {result['idle_cpu_ms_per_s']:.2f} ms CPU per s, "
          f"{result['goroutines_added_by_handler']} goroutine(s) added")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
