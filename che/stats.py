"""The statistics of comparisons over runs, on scipy.stats: bootstrap confidence intervals, exact
permutation tests, and Holm's adjustment for testing many tasks at once.

Runs (seeds, learning rates) are the unit: a cell's score varies from run to run, and the papers'
"max over runs" hides how much. With a handful of runs per PE these tools are honest about it: a
permutation test of 3 runs against 3 cannot give p below 0.1 (2 of the 20 ways to split six
scores), however far apart they are. Across tasks the unit is the task (Demšar, JMLR 2006): a
sign-flip test of the per-task differences asks whether A beats B on average over the benchmark.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 10_000
EXACT_UP_TO = 100_000        # permutations enumerated exactly; beyond, a Monte Carlo test (p never 0)
# The alternative hypothesis of a test about A - B: that it is not 0, that it is > 0 (A better), < 0.
ALTERNATIVES = ("two-sided", "greater", "less")


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _mean_difference(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _absolute_mean_difference(x, y, axis=-1):
    return np.abs(_mean_difference(x, y, axis))


def _absolute_mean(x, axis=-1):
    return np.abs(np.mean(x, axis=axis))


def _percentile_interval(data, statistic, confidence, samples, seed) -> tuple[float, float]:
    result = stats.bootstrap(data, statistic, n_resamples=samples, confidence_level=confidence,
                             method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_mean_ci(values, confidence: float = CONFIDENCE, samples: int = BOOTSTRAP_SAMPLES,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over runs (resampling runs with replacement).
    One run gives (value, value): there is nothing to resample."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.all(values == values[0]):
        return float(values[0]), float(values[0])
    return _percentile_interval((values,), _mean, confidence, samples, seed)


def bootstrap_difference_ci(a, b, confidence: float = CONFIDENCE, samples: int = BOOTSTRAP_SAMPLES,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b), resampling the runs of each side; (nan,
    nan) when a side has one run (its spread is unknown, an interval would ignore it)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(len(a), len(b)) < 2:
        return math.nan, math.nan
    if (len(a) < 2 or np.all(a == a[0])) and (len(b) < 2 or np.all(b == b[0])):
        return (float(a.mean() - b.mean()),) * 2
    return _percentile_interval((a, b), _mean_difference, confidence, samples, seed)


def permutation_p_value(a, b, seed: int = 0, alternative: str = "two-sided") -> float:
    """Permutation test of equal means: the share of the ways to split the pooled runs into groups of
    len(a) and len(b) whose difference of means is at least as extreme as the observed one: in
    absolute value (two-sided), or as large (`greater`: the alternative that A's mean is larger) or as
    small (`less`). Exact (every split) when there are at most EXACT_UP_TO splits, else Monte Carlo.
    nan when a side has a single run (scipy's test needs two; one against one could only give p = 1)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(len(a), len(b)) < 2:
        return math.nan
    statistic, alternative = ((_absolute_mean_difference, "greater") if alternative == "two-sided"
                              else (_mean_difference, alternative))
    result = stats.permutation_test((a, b), statistic, permutation_type="independent", alternative=alternative,
                                    n_resamples=EXACT_UP_TO, vectorized=True, rng=np.random.default_rng(seed))
    return float(result.pvalue)


def sign_flip_p_value(differences, seed: int = 0, alternative: str = "two-sided") -> float:
    """Paired test that the mean of per-task differences is 0: the share of the 2^n ways to flip
    their signs whose mean is at least as extreme as the observed one (in absolute value, or in the
    direction of `alternative`; exact up to EXACT_UP_TO)."""
    differences = np.asarray(differences, dtype=float)
    statistic, alternative = ((_absolute_mean, "greater") if alternative == "two-sided" else (_mean, alternative))
    result = stats.permutation_test((differences,), statistic, permutation_type="samples", alternative=alternative,
                                    n_resamples=EXACT_UP_TO, vectorized=True, rng=np.random.default_rng(seed))
    return float(result.pvalue)


def smallest_p_value(runs_a: int, runs_b: int, alternative: str = "two-sided") -> float:
    """The smallest p the exact permutation test can give with these numbers of runs: the observed
    split alone, and for a two-sided test with equal group sizes also its mirror image."""
    return (2 if runs_a == runs_b and alternative == "two-sided" else 1) / math.comb(runs_a + runs_b, runs_a)


def holm(p_values) -> list[float]:
    """Holm's step-down adjustment (controls the family-wise error rate over all the tests); a nan
    p-value (no test) stays nan and does not count as a test."""
    p = np.asarray(p_values, dtype=float)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested])]
    adjusted = np.full_like(p, math.nan)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()
