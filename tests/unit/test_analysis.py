"""Growth shapes and verdicts on known numbers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cgo_audit.verdicts import analysis
from cgo_audit.verdicts.analysis import C_BYTES, GO_HEAP, GOROUTINES, RSS, Growth, classify, decide

SIZES = [100, 1000, 2000, 4000, 8000]


@given(intercept=st.integers(-10_000, 10_000), per_op=st.integers(1, 100_000))
def test_exact_linear_growth_is_a_leak_with_its_exact_slope(intercept, per_op):
    growth = classify(C_BYTES, SIZES, [intercept + per_op * n for n in SIZES])
    assert growth.shape == analysis.LINEAR
    assert growth.per_op == growth.fitted_per_op == float(per_op)


def test_one_byte_per_op_is_a_leak():
    assert classify(C_BYTES, SIZES, [5 + n for n in SIZES]).shape == analysis.LINEAR


@given(per_op=st.integers(1, 1000), capacity_ops=st.integers(100, 1999), base=st.integers(0, 5000))
def test_growth_that_stops_is_a_plateau_not_a_leak(per_op, capacity_ops, base):
    # A cache that holds capacity_ops entries: full before the last two sizes.
    ys = [base + per_op * min(n, capacity_ops) for n in SIZES]
    growth = classify(C_BYTES, SIZES, ys)
    if per_op * (min(SIZES[1], capacity_ops) - SIZES[0]) >= C_BYTES.floor:
        assert growth.shape == analysis.PLATEAU
        assert growth.per_op == 0.0
    assert not growth.leaking


def test_nothing_and_noise_below_the_floor_are_flat():
    assert classify(C_BYTES, SIZES, [0] * 5).shape == analysis.FLAT
    assert classify(C_BYTES, SIZES, [0, 16, -8, 24, 8]).shape == analysis.FLAT
    assert classify(GO_HEAP, SIZES, [1500, 7000, 2000, 9000, 4000]).shape == analysis.FLAT


def test_noise_above_the_floor_is_not_a_leak():
    growth = classify(RSS, SIZES, [0, 30 << 20, 2 << 20, 25 << 20, 1 << 20])
    assert growth.shape in (analysis.NOISY, analysis.GROWING)
    assert not growth.leaking


def test_fewer_than_three_sizes_cannot_decide():
    assert classify(C_BYTES, [100, 200], [100, 10_000]).shape == analysis.INSUFFICIENT
    assert classify(C_BYTES, [100], [100]).shape == analysis.INSUFFICIENT


def grown(key: str, shape: str) -> Growth:
    return Growth(key, shape, 1.0, 1.0, 100.0, 1.0, (1.0, 1.0))


def test_verdicts_name_every_cause_and_pick_the_most_specific():
    verdicts = decide({"c_bytes": grown("c_bytes", analysis.LINEAR),
                       "goroutines": grown("goroutines", analysis.LINEAR),
                       "go_heap_bytes": grown("go_heap_bytes", analysis.LINEAR),
                       "rss_bytes": grown("rss_bytes", analysis.LINEAR)})
    assert verdicts.main == analysis.CGO_LEAK
    assert verdicts.all == (analysis.CGO_LEAK, analysis.GOROUTINE_LEAK, analysis.GO_HEAP_LEAK)


def test_rss_growth_alone_is_unexplained():
    verdicts = decide({"c_bytes": grown("c_bytes", analysis.FLAT), "rss_bytes": grown("rss_bytes", analysis.LINEAR),
                       GOROUTINES.key: grown(GOROUTINES.key, analysis.FLAT)})
    assert verdicts.all == (analysis.RSS_UNEXPLAINED,)


def test_clean_when_nothing_grows():
    verdicts = decide({"c_bytes": grown("c_bytes", analysis.PLATEAU), "fds": grown("fds", analysis.FLAT)})
    assert verdicts.main == analysis.CLEAN and verdicts.undecided == ()
