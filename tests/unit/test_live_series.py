"""Verdicts on a live program's samples, taken while requests are in flight."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from cgo_audit.audits.run import FLOOR_NEIGHBOURS, analyse_series, checkpoint_indices, floor_picks
from cgo_audit.model import ProgramSample

# What one request of the fixture server holds in C while it reads its
# config: the two C strings, a FILE and its 4 KiB buffer.
IN_FLIGHT = (4594, 4)
SAMPLES = 24
REQUESTS_PER_SAMPLE = 1400


def samples(leak_bytes: int, leak_allocs: int, busy: set[int]) -> list[ProgramSample]:
    """A server sampled every REQUESTS_PER_SAMPLE requests that leaks
    leak_bytes (in leak_allocs blocks) per request, with one request's C
    blocks in flight at the samples in busy."""
    found = []
    for i in range(SAMPLES):
        ops = i * REQUESTS_PER_SAMPLE
        extra_bytes, extra_allocs = IN_FLIGHT if i in busy else (0, 0)
        found.append(ProgramSample(time_s=i * 0.25, ops=ops, c_bytes=leak_bytes * ops + extra_bytes,
                                   c_allocs=leak_allocs * ops + extra_allocs, c_peak_bytes=None,
                                   rss_bytes=50 << 20, fds=8, sockets=4, threads=7, goroutines=None,
                                   go_heap_bytes=None))
    return found


# Work in flight is caught at a sample now and then, never at every sample
# near a checkpoint.
sparse_busy = st.sets(st.integers(0, SAMPLES - 1)).filter(
    lambda busy: not any(all(i + k in busy for k in range(FLOOR_NEIGHBOURS)) for i in range(SAMPLES)))


def test_a_request_in_flight_at_the_last_sample_is_not_growth():
    # Seen in CI: the fixed server read 0 B at 15 samples, then 4594 B in 4
    # blocks at the last, and the run was called undecided.
    growth, verdicts = analyse_series(samples(0, 0, {SAMPLES - 1}), "request")
    assert verdicts.main == "clean", verdicts
    assert growth["c_bytes"].per_op == 0 and growth["c_bytes"].total == 0


@given(busy=sparse_busy)
def test_requests_in_flight_here_and_there_leave_a_fixed_server_clean(busy):
    growth, verdicts = analyse_series(samples(0, 0, busy), "request")
    assert verdicts.main == "clean", (sorted(busy), growth["c_bytes"])


def test_a_leak_keeps_its_exact_slope_between_requests():
    growth, verdicts = analyse_series(samples(26, 2, set()), "request")
    assert verdicts.main == "cgo-leak"
    assert growth["c_bytes"].per_op == 26.0 and growth["c_allocs"].per_op == 2.0


@given(busy=sparse_busy)
def test_a_leak_is_still_named_with_requests_in_flight(busy):
    # A leak lifts every later sample far above a request in flight, so the
    # lowest neighbour is the earliest even when that one is busy: the slope
    # is then off by at most one request's blocks over the tail's span.
    growth, verdicts = analyse_series(samples(26, 2, busy), "request")
    assert verdicts.main == "cgo-leak", (sorted(busy), growth["c_bytes"])
    tail_span = SAMPLES * REQUESTS_PER_SAMPLE / 2
    assert abs(growth["c_bytes"].per_op - 26.0) <= 2 * IN_FLIGHT[0] / tail_span


def test_work_in_flight_at_every_sample_is_not_passed_over():
    # Held at every sample is held: only the lowest of the neighbours is taken.
    growth, verdicts = analyse_series(samples(0, 0, set(range(SAMPLES))), "request")
    assert verdicts.main == "clean" and growth["c_bytes"].total == 0


@given(values=st.lists(st.integers(0, 5), min_size=8, max_size=60), data=st.data())
def test_floor_picks_stay_ordered_and_near_their_checkpoints(values, data):
    # xs that stall now and then (a load that got no answer between samples):
    # the chosen samples' xs still rise strictly, or the fit divides by zero.
    steps = data.draw(st.lists(st.integers(0, 2), min_size=len(values), max_size=len(values)))
    xs = [sum(steps[:i + 1]) for i in range(len(values))]
    picks = checkpoint_indices(xs)
    chosen = floor_picks(picks, xs, values)
    assert len(chosen) == len(picks)
    assert all(xs[a] < xs[b] for a, b in zip(chosen, chosen[1:]))
    for pick, moved in zip(picks[1:], chosen[1:]):
        assert pick - FLOOR_NEIGHBOURS < moved <= pick
        assert values[moved] <= values[pick]


def test_a_load_that_stalls_between_samples_still_gets_a_verdict():
    # Seen under a memory limit: the last samples had no new answers.
    stalled = samples(26, 2, set())
    for i in range(SAMPLES - 4, SAMPLES):
        stalled[i] = replace(stalled[i], ops=stalled[SAMPLES - 5].ops)
    growth, verdicts = analyse_series(stalled, "request")
    assert verdicts.main == "cgo-leak" and growth["c_bytes"].per_op == 26.0

