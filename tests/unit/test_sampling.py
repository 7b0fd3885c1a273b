"""The interval printed beside a leak site estimated from sampled stacks."""

from __future__ import annotations

import math
import random

from cgo_audit.verdicts.sites import sampling_error


def test_the_sampling_interval_covers_the_truth_about_95_times_in_100():
    # n blocks of `size` bytes, each sampled with Go's probability for the
    # period, scaled back up as the sites are: the printed interval holds
    # the true total in about 95% of trials (binomial, normal approximation).
    rng = random.Random(1)
    period = 16 * 1024
    for size, n in ((32, 4000), (600, 500), (4096, 200)):
        p = 1 - math.exp(-size / period)
        covered = 0
        for _ in range(2000):
            k = sum(1 for _ in range(n) if rng.random() < p)
            estimate = k * size / p
            if abs(estimate - n * size) <= sampling_error(estimate, k, size, period):
                covered += 1
        assert 0.92 <= covered / 2000 <= 0.98, (size, n, covered)


def test_a_figure_no_sampled_block_supports_is_all_error():
    assert sampling_error(12.5, 0, 32, 16 * 1024) == 12.5
