"""che.stats: exact permutation and sign-flip tests, bootstrap intervals, Holm's adjustment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from che.stats import (
    bootstrap_difference_ci,
    bootstrap_mean_ci,
    holm,
    permutation_p_value,
    sign_flip_p_value,
    smallest_p_value,
)


def test_the_permutation_test_is_exact():
    # 3 vs 3 fully separated: 2 of the C(6, 3) = 20 splits are as extreme (the split and its mirror)
    assert permutation_p_value([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert permutation_p_value([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert permutation_p_value([1, 5, 3], [2, 4, 3]) == 1.0   # equal means
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 30), rng.normal(0, 1, 30)       # Monte Carlo branch: p in (0, 1]
    assert 0 < permutation_p_value(a, b) <= 1


def test_the_sign_flip_test_over_tasks_is_exact():
    # all 5 differences positive: 2 of the 2^5 sign patterns (all +, all -) are as extreme
    assert sign_flip_p_value([1, 2, 3, 4, 5]) == pytest.approx(2 / 32)
    assert sign_flip_p_value([1, -1, 2, -2]) == 1.0
    # 15 tasks, all one way: p = 2 / 2^15, what 3 seeds per cell can reach across the benchmark
    assert sign_flip_p_value(np.arange(1, 16)) == pytest.approx(2 / 2**15)


def test_the_bootstrap_difference_interval_brackets_the_difference():
    low, high = bootstrap_difference_ci([60, 62, 64], [50, 51, 52])
    assert 8 < low < 11 < high < 14
    assert bootstrap_difference_ci([0.6, 0.6], [0.5, 0.5]) == pytest.approx((0.1, 0.1))
    assert all(math.isnan(v) for v in bootstrap_difference_ci([0.7], [0.5, 0.6]))  # one run: no spread known


def test_the_bootstrap_interval_covers_the_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(200):
        sample = rng.normal(50, 10, 30)
        low, high = bootstrap_mean_ci(sample, samples=2000, seed=trial)
        covered += low <= 50 <= high
    assert 0.88 <= covered / 200 <= 0.99
    assert bootstrap_mean_ci([0.7]) == (0.7, 0.7)
    assert not math.isnan(bootstrap_mean_ci([0.1, 0.9])[0])


def test_holm_adjusts_step_down_and_stays_monotone():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.2]) == [0.2]


def test_holm_leaves_untested_tasks_out_of_the_family():
    from che.stats import holm

    adjusted = holm([0.01, float("nan"), 0.04])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)


def test_one_sided_permutation_p_by_hand():
    """3 runs against 3, every run of A above every run of B: 1 of the 20 splits is as extreme in
    A's favour (p = 0.05); two-sided the mirror split counts too (0.1); against B, p = 1."""
    a, b = [3.0, 4.0, 5.0], [0.0, 1.0, 2.0]
    assert permutation_p_value(a, b, alternative="greater") == pytest.approx(1 / 20)
    assert permutation_p_value(a, b) == pytest.approx(2 / 20)
    assert permutation_p_value(a, b, alternative="less") == pytest.approx(1.0)
    assert smallest_p_value(3, 3, "greater") == pytest.approx(1 / 20) and smallest_p_value(3, 3) == pytest.approx(0.1)


def test_one_sided_sign_flip_p_by_hand():
    """Three positive per-task differences: 1 of the 8 sign patterns has a mean as large (p = 1/8);
    two-sided, the all-negative one as well (2/8)."""
    assert sign_flip_p_value([1.0, 2.0, 3.0], alternative="greater") == pytest.approx(1 / 8)
    assert sign_flip_p_value([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    assert sign_flip_p_value([1.0, 2.0, 3.0], alternative="less") == pytest.approx(1.0)
