"""Statistical checks of the task samplers on >= 10,000 samples with fixed seeds.

Each check is a chi-square goodness-of-fit test against the distribution the reference samples
from, accepted at p > 0.001. The seeds are fixed, so the tests are deterministic; a correct
sampler fails a given check with probability 0.001 over seeds, while the semantic mistakes these
target (a skewed length, a zero operand, a missing operator) give p-values that are
astronomically small at these sample sizes.

scipy is not available, so the chi-square tail probability is computed here from the regularised
upper incomplete gamma function Q(df/2, x/2) (series / continued fraction), itself tested against
known quantiles.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from che.registry import TASKS

SAMPLES = 10_000
P_MIN = 1e-3


# -- chi-square machinery -------------------------------------------------------------------------
def upper_regularized_gamma(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a), for a > 0, x >= 0."""
    if x <= 0:
        return 1.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:   # the series for P(a, x) converges fast here
        term = total = 1.0 / a
        k = 0
        while abs(term) > abs(total) * 1e-16:
            k += 1
            term *= x / (a + k)
            total += term
        return max(0.0, 1.0 - total * math.exp(log_prefactor))
    tiny = 1e-300   # otherwise the continued fraction for Q(a, x) (modified Lentz)
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    return math.exp(log_prefactor) * h


def chi2_p_value(statistic: float, df: int) -> float:
    return upper_regularized_gamma(df / 2, statistic / 2)


def assert_fits(observed, expected_probabilities, what: str) -> None:
    """Chi-square goodness of fit of counts to probabilities (which must sum to 1)."""
    observed = np.asarray(observed, dtype=float).ravel()
    probabilities = np.asarray(expected_probabilities, dtype=float).ravel()
    assert observed.shape == probabilities.shape
    assert abs(probabilities.sum() - 1) < 1e-9
    expected = probabilities * observed.sum()
    assert expected.min() >= 5, f"{what}: too few expected counts for a chi-square test"
    statistic = float(((observed - expected) ** 2 / expected).sum())
    p = chi2_p_value(statistic, observed.size - 1)
    assert p > P_MIN, f"{what}: chi2={statistic:.1f} df={observed.size - 1} p={p:.2e}"


def assert_uniform(observed, what: str) -> None:
    observed = np.asarray(observed, dtype=float).ravel()
    assert_fits(observed, np.full(observed.size, 1 / observed.size), what)


def counts(values, support) -> list[int]:
    tally = Counter(values)
    assert set(tally) <= set(support), f"values outside {support}: {set(tally) - set(support)}"
    return [tally[v] for v in support]


def test_chi2_p_value_matches_known_quantiles():
    assert chi2_p_value(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)
    assert chi2_p_value(10.827566170662733, 1) == pytest.approx(0.001, rel=1e-9)
    assert chi2_p_value(18.307038053275146, 10) == pytest.approx(0.05, rel=1e-9)
    assert chi2_p_value(124.34211340400407, 100) == pytest.approx(0.05, rel=1e-8)
    for x in (0.1, 1.0, 7.5, 40.0):   # df = 2 is exp(-x/2) exactly
        assert chi2_p_value(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-12)
    assert_uniform([1000, 1010, 990], "a fair sample")
    with pytest.raises(AssertionError):
        assert_uniform([1000, 1200, 800], "a skewed sample")


# -- helpers --------------------------------------------------------------------------------------
def sample(name: str, length: int, seed: int, n: int = SAMPLES):
    return TASKS.get(name).sample(n, length, torch.Generator().manual_seed(seed))


def position_symbol_counts(tokens: torch.Tensor, symbols: list[int]) -> np.ndarray:
    """[positions, symbols] table of how often each symbol sits at each position."""
    return np.stack([(tokens == s).sum(dim=0).numpy() for s in symbols], axis=1)


def adjacent_pair_counts(tokens: torch.Tensor, n_symbols: int) -> np.ndarray:
    pairs = tokens[:, :-1] * n_symbols + tokens[:, 1:]
    return torch.bincount(pairs.flatten(), minlength=n_symbols ** 2).numpy()


def assert_iid_uniform(tokens: torch.Tensor, symbols: list[int], what: str) -> None:
    """Uniform at every position (a [position x symbol] table) and adjacent pairs independent."""
    assert_uniform(position_symbol_counts(tokens, symbols), f"{what}: symbols per position")
    remapped = torch.searchsorted(torch.tensor(symbols), tokens)
    assert_uniform(adjacent_pair_counts(remapped, len(symbols)), f"{what}: adjacent pairs")


def binary_operator_positions(text: str) -> list[int]:
    """Indices of binary operators: an operator right after a digit, `x` or `)` (else unary minus)."""
    return [i for i, c in enumerate(text) if c in "+-*" and i > 0 and (text[i - 1] in "01234x)")]


def top_level_left_length(text: str) -> int:
    """Length of the left operand of `(left op right)`: the position of the depth-1 binary operator - 1."""
    depth = 0
    binary = set(binary_operator_positions(text))
    for i, c in enumerate(text):
        depth += (c == "(") - (c == ")")
        if depth == 1 and i in binary:
            return i - 1
    raise AssertionError(f"no top-level operator in {text}")


# -- i.i.d. symbol tasks --------------------------------------------------------------------------
IID_TASKS = {   # task: its input symbols (all i.i.d. uniform, as in the reference)
    "even_pairs": [0, 1], "parity_check": [0, 1], "reverse_string": [0, 1],
    "duplicate_string": [0, 1], "odds_first": [0, 1],
    "cycle_navigation": [0, 1, 2], "bucket_sort": [0, 1, 2, 3, 4],
}


@pytest.mark.parametrize("name", IID_TASKS)
def test_iid_tasks_have_uniform_independent_symbols(name):
    assert_iid_uniform(sample(name, 40, seed=11).inputs, IID_TASKS[name], name)


def test_parity_labels_are_balanced():
    assert_uniform(counts(sample("parity_check", 40, 12).targets.flatten().tolist(), [0, 1]), "labels")


# -- regular --------------------------------------------------------------------------------------
def test_modular_arithmetic_digits_and_operators_uniform():
    x = sample("modular_arithmetic", 41, seed=13).inputs
    assert_uniform(position_symbol_counts(x[:, 0::2], [0, 1, 2, 3, 4]), "digits")
    assert_uniform(position_symbol_counts(x[:, 1::2], [5, 6, 7]), "operators (+, -, *)")
    assert not (x == 8).any()   # the blank is never sampled


# -- dcf ------------------------------------------------------------------------------------------
def test_stack_prefix_length_uniform_and_symbols_uniform():
    x = sample("stack_manipulation", 40, seed=14).inputs
    prefix = (x < 2).sum(dim=1)     # the stack bits all come before the first action
    assert_uniform(counts(prefix.tolist(), range(1, 40)), "stack prefix length on 1..N-1")
    assert_uniform(counts(x[x < 2].tolist(), [0, 1]), "stack symbols")
    assert_uniform(counts(x[x >= 2].tolist(), [2, 3, 4]), "actions (POP, PUSH0, PUSH1)")


def decode(x: torch.Tensor, symbols: str) -> list[str]:
    return ["".join(symbols[t] for t in row) for row in x.tolist()]


def test_brackets_operators_split_and_digits_uniform():
    texts = decode(sample("modular_arithmetic_brackets", 40, seed=15).inputs, "01234+-*()x")
    operators = [text[i] for text in texts for i in binary_operator_positions(text)]
    assert_uniform(counts(operators, "+-*"), "binary operators")
    assert_uniform(counts([top_level_left_length(t) for t in texts], range(1, 37)),
                   "top-level left operand length on 1..N-4")
    assert_uniform(counts([c for t in texts for c in t if c in "01234"], "01234"), "digits")


def test_solve_equation_operators_split_labels_and_x_position():
    n = 40
    batch = sample("solve_equation", n, seed=16)
    texts = decode(batch.inputs, "01234+-()x=")
    expressions = [t[:-2] for t in texts]
    operators = [e[i] for e in expressions for i in binary_operator_positions(e)]
    assert_uniform(counts(operators, "+-"), "binary operators (no *)")
    assert_uniform(counts([top_level_left_length(e) for e in expressions], range(1, n - 5)),
                   "top-level left operand length on 1..(N-2)-4")
    assert_uniform(counts(batch.targets.flatten().tolist(), range(5)), "hidden digit")
    for e in expressions:   # x always replaces a digit: never next to another digit or x
        i = e.index("x")
        assert (i == 0 or e[i - 1] in "(+-") and (i == len(e) - 1 or e[i + 1] in ")+-")


def test_solve_equation_x_position_follows_the_reference_quirk():
    """N = 7: the expression is `(a op b)`, digits at 1 and 3. A start U{0..4} moves forward
    cyclically to a digit: starts 0, 1, 4 (wrapping via 0) hit 1, starts 2, 3 hit 3 -> 3/5 vs 2/5."""
    x = sample("solve_equation", 7, seed=17).inputs
    positions = (x == 9).int().argmax(dim=1).tolist()
    assert_fits(counts(positions, [1, 3]), [3 / 5, 2 / 5], "x position at N=7")


# -- cs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [40, 41])
def test_missing_duplicate_index_and_symbols_uniform(length):
    batch = sample("missing_duplicate_string", length, seed=18)
    x = batch.inputs
    hidden = (x == 2).int().argmax(dim=1).tolist()
    assert_uniform(counts(hidden, range(2 * (length // 2))), "hidden index on 0..2*(N//2)-1")
    assert_uniform(counts(batch.targets.flatten().tolist(), [0, 1]), "labels")
    s = x[:, : length // 2]
    assert_uniform(counts(s[s < 2].tolist(), [0, 1]), "string bits")


@pytest.mark.parametrize("name", ["binary_addition", "binary_multiplication"])
def test_binary_first_operand_length_uniform(name):
    x = sample(name, 40, seed=19).inputs
    separator = (x == 2).int().argmax(dim=1)
    assert_uniform(counts(separator.tolist(), range(1, 39)), "len_n on 1..N-2")


def le(bits: list[int]) -> int:
    return sum(b << i for i, b in enumerate(bits))


@pytest.mark.parametrize("name", ["binary_addition", "binary_multiplication"])
def test_binary_operands_uniform_over_nonzero_values(name):
    """N = 5: len_n ~ U{1,2,3} and, given its width w, an operand ~ U{1..2^w - 1} (never 0)."""
    n_joint, m_joint = Counter(), Counter()
    for row in sample(name, 5, seed=20).inputs.tolist():
        sep = row.index(2)
        n_joint[sep, le(row[:sep])] += 1
        m_joint[4 - sep, le(row[sep + 1:])] += 1
    support = [(w, v) for w in (1, 2, 3) for v in range(2 ** w)]   # includes v = 0 ...
    probabilities = [0 if v == 0 else 1 / 3 / (2 ** w - 1) for w, v in support]
    for joint, what in ((n_joint, "n"), (m_joint, "m")):
        assert all(joint[w, 0] == 0 for w in (1, 2, 3)), f"zero operand {what}"  # ... which never occurs
        kept = [(k, p) for k, p in zip(support, probabilities) if p > 0]
        assert_fits([joint[k] for k, _ in kept], [p for _, p in kept], f"(width, value) of {what}")


@pytest.mark.parametrize("name", ["binary_addition", "binary_multiplication"])
def test_binary_degenerate_input_uniform_on_0_to_2(name):
    values = [le(row) for row in sample(name, 2, seed=21).inputs.tolist()]
    assert_uniform(counts(values, [0, 1, 2]), "degenerate N=2 input value on 0..2^N-2")


def test_sqrt_values_uniform():
    x = sample("compute_sqrt", 4, seed=22).inputs
    values = [int("".join(map(str, row)), 2) for row in x.tolist()]
    assert_uniform(counts(values, range(1, 16)), "values on 1..2^N-1 at N=4")
    x = sample("compute_sqrt", 40, seed=23).inputs
    p_top = 2 ** 39 / (2 ** 40 - 1)
    assert_fits(counts(x[:, 0].tolist(), [0, 1]), [1 - p_top, p_top], "top bit at N=40")
    assert_uniform(position_symbol_counts(x, [0, 1]), "bits per position at N=40")
