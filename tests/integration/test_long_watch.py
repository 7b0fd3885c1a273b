"""Watches that last: the harness keeps a bounded, evenly thinned series of
samples whatever the length of the watch, and the fit over it stays exact."""

from __future__ import annotations

import os
import subprocess
import threading
import tracemalloc

import pytest

from cgo_audit.audits.run import RunSettings, _sampler, analyse_series
from cgo_audit.measure.load import HttpLoad
from cgo_audit.measure.runner import ShimSession
from cgo_audit.measure.sampler import ProcessSample
from cgo_audit.measure.series import BoundedSeries
from cgo_audit.model import ProgramSample
from cgo_audit.shim.region import CHeap
from cgo_audit.verdicts import analysis

from helpers import SERVER_CWD, audit_json, free_port

pytestmark = pytest.mark.slow

SAMPLES = 100_000
CAPACITY = 512


class CountingLoad:
    """Stands in for --load: requests completed so far."""

    completed = 0


def test_series_keeps_first_latest_and_an_even_stride():
    series: BoundedSeries[int] = BoundedSeries(8)
    for value in range(1000):
        series.append(value)
        kept = series.items()
        assert len(kept) <= 9 and kept[0] == 0 and kept[-1] == value
        strides = {b - a for a, b in zip(kept, kept[1:-1])}
        assert strides <= {series.stride}
    assert series.seen == 1000 and series.stride == 128


def test_a_hundred_thousand_samples_through_the_sampling_and_fitting_path(shim_path):
    """26 B and 2 allocations leaked per request, 25 requests between samples,
    under noise in RSS: 100,000 samples go through the run's sample hook into
    its bounded series, and the fit comes out exact."""
    settings = RunSettings(argv=["service"], stacks="off", max_samples=CAPACITY)
    samples: BoundedSeries[ProgramSample] = BoundedSeries(settings.max_samples)
    early: dict[str, object] = {}
    load = CountingLoad()
    # A session no program writes to: the hook falls back to the counters it is handed.
    with ShimSession(shim_path) as session:
        hook = _sampler(session, settings, load, None, samples, early, threading.Lock(),  # type: ignore[arg-type]
                        lambda _: None, 0.0, 0)
        peak = _push_samples(hook, load)
    assert samples.seen == SAMPLES
    assert len(samples) <= CAPACITY + 1
    # A day of samples held in well under a few megabytes.
    assert peak < 4 << 20, peak
    kept = samples.items()
    assert kept[0].ops == 0 and kept[-1].ops == 25 * (SAMPLES - 1)
    growth, verdicts = analyse_series(kept, "request", early.get("limits"))  # type: ignore[arg-type]
    assert verdicts.main == analysis.CGO_LEAK
    assert growth["c_bytes"].shape == analysis.LINEAR and growth["c_bytes"].per_op == 26.0
    assert growth["c_allocs"].per_op == 2.0
    assert growth["fds"].shape == analysis.FLAT and growth["rss_bytes"].shape != analysis.LINEAR


def test_run_keeps_its_samples_bounded_and_says_so(tmp_path, leakyserver):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc, report = audit_json(tmp_path, "--duration", "5", "--interval", "0.05", "--max-samples", "16",
                              "--load", f"{base}/value", "--cwd", str(SERVER_CWD), "--", str(leakyserver),
                              "-addr", f"127.0.0.1:{port}", "-mode", "leaky", command="run")
    program = report["program"]
    assert proc.returncode == 1 and program["verdict"] == "cgo-leak", proc.stdout + proc.stderr
    assert program["samples_seen"] > 32 and len(program["samples"]) <= 17
    assert program["c_leak_bytes_per_op"] == pytest.approx(26.0, rel=0.01)
    assert any("kept, evenly spread" in note for note in program["notes"])


def test_watch_keeps_its_samples_bounded(tmp_path, shim_path, leakyserver):
    port = free_port()
    with ShimSession(shim_path) as session:
        server = subprocess.Popen([str(leakyserver), "-addr", f"127.0.0.1:{port}"], cwd=SERVER_CWD,
                                  env=session.environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load = HttpLoad([f"http://127.0.0.1:{port}/value"])
        try:
            assert load.wait_ready(20)
            load.start()
            proc, report = audit_json(tmp_path, str(server.pid), "--duration", "4", "--interval", "0.05",
                                      "--max-samples", "16", command="watch")
        finally:
            load.stop()
            server.kill()
            server.wait()
    program = report["program"]
    # Per second, the verdict follows the load's pace, which a busy machine
    # makes uneven (the run test above checks the figures per request); here:
    # the C heap measured, and the samples bounded.
    assert program["c_leak_bytes_per_op"] is not None, proc.stdout
    assert program["samples_seen"] > 32 and len(program["samples"]) <= 17


def _push_samples(hook, load: CountingLoad) -> int:
    """Feeds SAMPLES readings to the hook; the Python heap's peak meanwhile."""
    tracemalloc.start()
    for i in range(SAMPLES):
        load.completed = 25 * i
        live = 1_000_000 + 26 * load.completed
        process = ProcessSample(time_s=i * 1.0, rss_bytes=(40 << 20) + (i * 7919) % (1 << 20),
                                shim_rss_bytes=0, num_fds=12, num_sockets=3, num_threads=9)
        cheap = CHeap(live_bytes=live, live_allocs=2 * load.completed, total_allocs=0, total_frees=0,
                      total_alloc_bytes=0, total_free_bytes=0, thread_start_live_bytes=0,
                      thread_start_live_allocs=0, peak_live_bytes=live, ignored_frees=0, failed_allocs=0,
                      untracked_allocs=0, shim_table_bytes=0)
        hook(process, cheap, os.getpid())   # type: ignore[arg-type]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak
