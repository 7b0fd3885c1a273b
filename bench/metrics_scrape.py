#!/usr/bin/env python3
"""What a Prometheus scrape of `run`/`watch --metrics-addr` costs the
auditor, as the samples pile up: the collector fits the slopes and the
verdict over every sample of the current start at each scrape.

Baseline, in the same run: a scrape of prometheus_client's default registry
(the process, platform and GC collectors every Python exporter serves).
CPU time per scrape, median of --reps scrapes, for a program sampled once a
second for a minute, an hour and a day (samples grow linearly, so other
intervals scale: a day at --interval 15 is 5,760 samples).

usage: python bench/metrics_scrape.py [--reps N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from cgo_audit.audits.metrics import LiveFigures, ProgramCollector
from cgo_audit.model import ProgramSample

SPANS = (("1 minute", 60), ("1 hour", 3600), ("1 day", 86400))


def leaking_program(samples: int) -> LiveFigures:
    """A program leaking 26 B of C heap a second, sampled once a second."""
    figures = LiveFigures(["server"], "second")
    for i in range(samples):
        figures.add(ProgramSample(time_s=float(i), ops=None, c_bytes=4096 + 26 * i, c_allocs=100 + 2 * i,
                                  c_peak_bytes=4096 + 26 * i, rss_bytes=(12 << 20) + 64 * i, fds=9, sockets=3,
                                  threads=7, goroutines=6, go_heap_bytes=300_000 + (i % 7) * 1000,
                                  go_stamp=float(i), pid=4242))
    return figures


def cpu_per_scrape(registry: CollectorRegistry, reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.process_time()
        generate_latest(registry)
        times.append(time.process_time() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    baseline = cpu_per_scrape(REGISTRY, args.reps)
    print(f"CPU per scrape, median of {args.reps}")
    print(f"  {'what':38} {'ms':>9} {'ratio':>9}")
    print(f"  {'baseline: default registry':38} {baseline * 1e3:9.3f} {1:8.1f}x")
    for label, samples in SPANS:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ProgramCollector(leaking_program(samples)))
        text = generate_latest(registry).decode()
        assert 'cgo_audit_verdict{pid="4242",program="server",verdict="cgo-leak"} 1.0' in text, text
        cost = cpu_per_scrape(registry, args.reps)
        print(f"  {f'{samples:,} samples ({label} at 1s)':38} {cost * 1e3:9.3f} {cost / baseline:8.1f}x")


if __name__ == "__main__":
    main()
