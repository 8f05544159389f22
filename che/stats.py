"""The statistics of comparisons over runs: bootstrap confidence intervals, an exact permutation
test, and Holm's adjustment for testing many tasks at once.

Runs (seeds, learning rates) are the unit: a cell's score varies from run to run, and the papers'
"max over runs" hides how much. With a handful of runs per PE these tools are honest about it: a
permutation test of 3 runs against 3 cannot give p below 0.1 (2 of the 20 ways to split six
scores), however far apart they are.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 10_000
EXACT_UP_TO = 100_000        # splits enumerated exactly; beyond, a Monte Carlo permutation test
MONTE_CARLO_SAMPLES = 100_000


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def bootstrap_mean_ci(values, confidence: float = CONFIDENCE, samples: int = BOOTSTRAP_SAMPLES,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over runs (resampling runs with replacement).
    One run gives (value, value): there is nothing to resample."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values[0]), float(values[0])
    means = _rng(seed).choice(values, size=(samples, len(values)), replace=True).mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def bootstrap_difference_ci(a, b, confidence: float = CONFIDENCE, samples: int = BOOTSTRAP_SAMPLES,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b), resampling the runs of each side."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = _rng(seed)
    diffs = (rng.choice(a, size=(samples, len(a))).mean(axis=1) - rng.choice(b, size=(samples, len(b))).mean(axis=1))
    tail = (1 - confidence) / 2
    return float(np.quantile(diffs, tail)), float(np.quantile(diffs, 1 - tail))


def permutation_p_value(a, b, seed: int = 0) -> float:
    """Two-sided permutation test of equal means: the share of the ways to split the pooled runs
    into groups of len(a) and len(b) whose |difference of means| is at least the observed one.
    Exact (every split) when there are at most EXACT_UP_TO splits, else Monte Carlo with the
    observed split counted, so p is never 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pooled, n = np.concatenate([a, b]), len(a)
    observed = abs(a.mean() - b.mean())
    total = pooled.sum()
    tolerance = 1e-12 * max(1.0, float(np.abs(pooled).max()))

    def difference(first_sum):
        return abs(first_sum / n - (total - first_sum) / len(b))

    splits = math.comb(len(pooled), n)
    if splits <= EXACT_UP_TO:
        hits = sum(difference(pooled[list(c)].sum()) >= observed - tolerance
                   for c in itertools.combinations(range(len(pooled)), n))
        return hits / splits
    rng = _rng(seed)
    hits = sum(difference(rng.permutation(pooled)[:n].sum()) >= observed - tolerance
               for _ in range(MONTE_CARLO_SAMPLES))
    return (hits + 1) / (MONTE_CARLO_SAMPLES + 1)


def smallest_p_value(runs_a: int, runs_b: int) -> float:
    """The smallest two-sided p the exact permutation test can give with these numbers of runs: the
    observed split alone, and with equal group sizes also its mirror image."""
    return (2 if runs_a == runs_b else 1) / math.comb(runs_a + runs_b, runs_a)


def holm(p_values) -> list[float]:
    """Holm's step-down adjustment (controls the family-wise error rate over all the tests)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()
