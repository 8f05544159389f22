"""Task generators against the reference semantics (the CHE and RPE reference code).

Every sampled (input, target) pair is checked by an independent, deliberately plain Python oracle
written here from the reference semantics: it checks the input's structure and recomputes the
target from the input alone (exact big-int arithmetic, a recursive-descent parser, a list-based
stack). The oracles are themselves checked on worked examples. Statistical checks live in
test_tasks_distribution.py.
"""

from __future__ import annotations

import math
import random
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from che.tasks.base import Task
from che.tasks.cs import bucket_sort, compute_sqrt, duplicate_string, odds_first
from che.tasks.dcf import reverse_string, stack_manipulation
from che.tasks.dcf.solve_equation import hide_one_digit
from che.tasks.regular import cycle_navigation, even_pairs, modular_arithmetic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from che.registry import TASKS

# -- the tasks' summary table ----------------------------------------------------------------------
# name: (level, input_size, output_size, classification, T_out(N), terminator)
SPEC_TABLE = {
    "even_pairs": ("regular", 2, 2, True, lambda n: 1, None),
    "modular_arithmetic": ("regular", 9, 5, True, lambda n: 1, None),
    "parity_check": ("regular", 2, 2, True, lambda n: 1, None),
    "cycle_navigation": ("regular", 3, 5, True, lambda n: 1, None),
    "stack_manipulation": ("dcf", 5, 3, False, lambda n: n + 1, 2),
    "reverse_string": ("dcf", 2, 2, False, lambda n: n, None),
    "modular_arithmetic_brackets": ("dcf", 11, 5, True, lambda n: 1, None),
    "solve_equation": ("dcf", 11, 5, True, lambda n: 1, None),
    "duplicate_string": ("cs", 2, 2, False, lambda n: 2 * n, None),
    "missing_duplicate_string": ("cs", 4, 2, True, lambda n: 1, None),
    "odds_first": ("cs", 2, 2, False, lambda n: n, None),
    "binary_addition": ("cs", 3, 3, False, lambda n: n + 1, 2),
    "binary_multiplication": ("cs", 3, 3, False, lambda n: n, 2),
    "compute_sqrt": ("cs", 2, 2, False, lambda n: math.ceil(n / 2), None),
    "bucket_sort": ("cs", 5, 5, False, lambda n: n, None),
}
TASK_NAMES = list(SPEC_TABLE)


def spec_input_length(name: str, n: int) -> int:
    return n - 1 if name == "modular_arithmetic" and n % 2 == 0 else n


# -- oracles: input ids -> expected target ids (asserting the input's structure) -----------------
def le_value(bits: list[int]) -> int:
    assert set(bits) <= {0, 1}, bits
    return sum(b << i for i, b in enumerate(bits))


def le_digits(value: int) -> list[int]:
    """Little-endian binary without leading zeros; 0 is written as a single 0."""
    return [int(c) for c in reversed(format(value, "b"))]


def pad(seq: list[int], length: int) -> list[int]:
    assert len(seq) <= length, (seq, length)
    return seq + [0] * (length - len(seq))


def oracle_even_pairs(x, n):
    assert set(x) <= {0, 1}
    return [sum(a != b for a, b in zip(x, x[1:])) % 2]


def oracle_parity_check(x, n):
    assert set(x) <= {0, 1}
    return [sum(x) % 2]


def oracle_cycle_navigation(x, n):
    assert set(x) <= {0, 1, 2}
    position = 0
    for token in x:
        position += {0: -1, 1: 0, 2: +1}[token]
    return [position % 5]


def oracle_modular_arithmetic(x, n):
    assert len(x) % 2 == 1
    digits, ops = x[0::2], x[1::2]
    assert set(digits) <= set(range(5)) and set(ops) <= {5, 6, 7}, x
    total, term = 0, digits[0]
    for op, digit in zip(ops, digits[1:]):
        if op == 7:          # '*' binds tighter: extend the current term
            term *= digit
        else:                # '+' or '-': close the term, start a new one
            total += term
            term = digit if op == 5 else -digit
    return [(total + term) % 5]


def oracle_stack_manipulation(x, n):
    if n == 1:
        assert x in ([0], [1])
        stack = list(x)
    else:
        first_action = next(i for i, t in enumerate(x) if t >= 2)
        assert first_action >= 1, "the initial stack is never empty"
        assert set(x[:first_action]) <= {0, 1} and set(x[first_action:]) <= {2, 3, 4}, x
        stack = list(x[:first_action])            # bottom to top
        for action in x[first_action:]:
            if action == 2:
                if stack:
                    stack.pop()
            else:
                stack.append(action - 3)
    return pad(stack[::-1] + [2], n + 1)


def oracle_reverse_string(x, n):
    assert set(x) <= {0, 1}
    return x[::-1]


def parse_bracket_expression(text: str, x_value: int | None = None) -> int:
    """Exact value of `text` under E -> d | -d | (d) | (-d) | (E op E); AssertionError if not in it.

    `x` counts as a digit with value `x_value` when that is given. Recursive descent.
    """
    digits = {str(d): d for d in range(5)}
    if x_value is not None:
        digits["x"] = x_value
    pos = 0

    def expect(chars: str) -> str:
        nonlocal pos
        assert pos < len(text) and text[pos] in chars, (text, pos, chars)
        pos += 1
        return text[pos - 1]

    def expression() -> tuple[int, bool]:
        """(value, is_signed_digit): `d` or `-d` may be bracketed alone, nothing else may."""
        nonlocal pos
        if text[pos] == "-":
            pos += 1
            return -digits[expect("".join(digits))], True
        if text[pos] != "(":
            return digits[expect("".join(digits))], True
        pos += 1
        left, left_is_signed_digit = expression()
        if text[pos] == ")":
            assert left_is_signed_digit, f"only d or -d may be bracketed alone: {text}"
            pos += 1
            return left, False
        op = expect("+-*")
        right, _ = expression()
        expect(")")
        return {"+": left + right, "-": left - right, "*": left * right}[op], False

    value, _ = expression()
    assert pos == len(text), f"trailing symbols in {text!r}"
    return value


BRACKETS_SYMBOLS = "01234+-*()"      # ids 0..9; 10 (x) and 11 (=) must never occur
EQUATION_SYMBOLS = "01234+-()x="     # ids 0..10


def oracle_modular_arithmetic_brackets(x, n):
    assert all(0 <= t < len(BRACKETS_SYMBOLS) for t in x), x
    return [parse_bracket_expression("".join(BRACKETS_SYMBOLS[t] for t in x)) % 5]


def oracle_solve_equation(x, n):
    if n < 3:
        assert x == [0] * n
        return [0]
    text = "".join(EQUATION_SYMBOLS[t] for t in x)
    expression, equals, value = text[:-2], text[-2], text[-1]
    assert equals == "=" and value in "01234" and "=" not in expression, text
    assert expression.count("x") == 1, text
    solutions = [v for v in range(5) if parse_bracket_expression(expression, v) % 5 == int(value)]
    assert len(solutions) == 1, (text, solutions)
    return solutions


def oracle_duplicate_string(x, n):
    assert set(x) <= {0, 1}
    return x + x


def oracle_missing_duplicate_string(x, n):
    if n == 1:
        assert x == [1]
        return [1]
    body = x[:-1] if n % 2 == 1 else x
    if n % 2 == 1:
        assert x[-1] == 3, x
    assert 3 not in body and body.count(2) == 1, x
    half = n // 2
    hidden = body.index(2)
    partner = body[(hidden + half) % (2 * half)]
    assert partner in (0, 1)
    restored = body[:hidden] + [partner] + body[hidden + 1:]
    assert restored[:half] == restored[half:], x
    return [partner]


def oracle_odds_first(x, n):
    assert set(x) <= {0, 1}
    return x[1::2] + x[0::2]


def binary_operands(x, n) -> tuple[int, int]:
    assert x.count(2) == 1, x
    sep = x.index(2)
    assert 0 < sep < n - 1, x
    a, b = le_value(x[:sep]), le_value(x[sep + 1:])
    assert a > 0 and b > 0, f"zero operand in {x}"
    return a, b


def degenerate_binary_value(x, n) -> int:
    assert 2 not in x
    value = le_value(x)
    assert value <= 2 ** n - 2, x   # the reference's randint excludes 2^N - 1
    return value


def oracle_binary_addition(x, n):
    if n <= 2:
        total = degenerate_binary_value(x, n)
    else:
        a, b = binary_operands(x, n)
        total = a + b
    return pad(le_digits(total) + [2], n + 1)


def oracle_binary_multiplication(x, n):
    if n <= 2:
        degenerate_binary_value(x, n)
        return [2] if n == 1 else [0, 2]
    a, b = binary_operands(x, n)
    return pad(le_digits(a * b) + [2], n)


def oracle_compute_sqrt(x, n):
    assert set(x) <= {0, 1}
    value = int("".join(map(str, x)), 2)
    assert value >= 1
    width = math.ceil(n / 2)
    return [int(c) for c in format(math.isqrt(value), "b").zfill(width)]


def oracle_bucket_sort(x, n):
    assert set(x) <= set(range(5))
    return sorted(x)


ORACLES = {name: globals()[f"oracle_{name}"] for name in TASK_NAMES}


def expected_mask(name: str, target: list[int]) -> list[bool]:
    terminator = SPEC_TABLE[name][5]
    if terminator is None:
        return [True] * len(target)
    end = target.index(terminator)
    return [i <= end for i in range(len(target))]


@contextmanager
def recursion_limit(limit: int):
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def sample(name: str, batch_size: int, length: int, seed: int = 0):
    return TASKS.get(name).sample(batch_size, length, torch.Generator().manual_seed(seed))


def check_batch(name: str, batch, batch_size: int, length: int) -> None:
    """Shapes, vocabularies, the oracle and the accuracy mask, row by row."""
    task = TASKS.get(name)
    _, input_size, output_size, _, out_len, _ = SPEC_TABLE[name]
    assert batch.inputs.shape == (batch_size, spec_input_length(name, length))
    assert batch.targets.shape == (batch_size, out_len(length))
    assert batch.mask.shape == batch.targets.shape
    assert batch.inputs.dtype == batch.targets.dtype == torch.int64 and batch.mask.dtype == torch.bool
    assert 0 <= batch.inputs.min() and batch.inputs.max() < input_size
    assert 0 <= batch.targets.min() and batch.targets.max() < output_size
    assert task.input_length(length) == batch.inputs.shape[1]
    assert task.output_length(length) == batch.targets.shape[1]
    for x, y, m in zip(batch.inputs.tolist(), batch.targets.tolist(), batch.mask.tolist()):
        expected = ORACLES[name](x, length)
        assert y == expected, f"{name} N={length}: input {x} gave {y}, expected {expected}"
        assert m == expected_mask(name, expected)


# -- the registry and task attributes -------------------------------------------------------------
def test_registry_holds_the_15_tasks_in_reference_order():
    assert TASKS.names()[:15] == TASK_NAMES


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_attributes_match_spec_table(name):
    task = TASKS.get(name)
    level, input_size, output_size, classification, out_len, terminator = SPEC_TABLE[name]
    assert isinstance(task, Task) and task.name == name
    assert (task.level, task.input_size, task.output_size) == (level, input_size, output_size)
    assert task.classification == classification and task.terminator == terminator
    for n in (1, 2, 3, 10, 41, 500):
        assert task.output_length(n) == out_len(n)
        assert task.input_length(n) == spec_input_length(name, n)
    assert len(task.input_symbols) == input_size and len(task.output_symbols) == output_size
    assert len(set(task.input_symbols)) == input_size and len(set(task.output_symbols)) == output_size
    assert task.output_length_rule and (task.output_length_rule == "1") == classification
    chance = 0.5 if terminator is not None else 1 / output_size
    assert task.chance_accuracy == pytest.approx(chance)
    assert task.__doc__ and sys.modules[type(task).__module__].__doc__


# -- the oracles on worked examples ----------------------------------------------------------------
def ids(text: str, symbols: str = "0123456789") -> list[int]:
    return [symbols.index(c) for c in text.replace(" ", "")]


SPEC_EXAMPLES = [  # (task, input ids, target ids): worked examples
    ("even_pairs", ids("0001"), [1]),
    ("even_pairs", ids("011010"), [0]),
    ("modular_arithmetic", [1, 6, 1, 7, 2, 7, 2, 5, 1], [3]),
    ("parity_check", ids("10011"), [1]),
    ("cycle_navigation", ids("10101"), [3]),
    ("cycle_navigation", ids("0"), [4]),
    ("stack_manipulation", [0, 1, 4, 2, 2], ids("020000")),
    ("stack_manipulation", [0, 1, 1, 0, 4, 2, 2], ids("11020000")),
    ("reverse_string", ids("00011"), ids("11000")),
    ("modular_arithmetic_brackets", [8, 8, 3, 9, 7, 8, 6, 1, 7, 0, 9, 9], [0]),
    ("modular_arithmetic_brackets", ids("(0+-3)", BRACKETS_SYMBOLS), [2]),
    ("solve_equation", [7, 9, 5, 3, 8, 10, 2], [4]),
    ("solve_equation", ids("((4)+(-x))=2", EQUATION_SYMBOLS), [2]),
    ("duplicate_string", ids("110"), ids("110110")),
    ("missing_duplicate_string", ids("1102103"), [1]),
    ("odds_first", ids("00110101"), ids("01110100")),
    ("odds_first", ids("0100"), ids("1000")),
    ("binary_addition", [1, 2, 0, 1, 0], ids("112000")),
    ("binary_addition", ids("001 2 01101"), ids("0101120000")),   # docstring example, code's padding
    ("binary_multiplication", [1, 0, 1, 2, 1, 1], ids("111120")),
    ("binary_multiplication", ids("001 2 01101"), ids("000110120")),      # 4 * 22 = 88
    ("binary_multiplication", ids("1001 2 000001"), ids("00000100120")),  # 9 * 32 = 288
    ("compute_sqrt", ids("1101"), ids("11")),
    ("compute_sqrt", ids("0111"), ids("10")),
    ("bucket_sort", ids("2040"), ids("0024")),
]

# The tasks' own vectorised target functions, where the target is a function of the input.
TARGET_FUNCTIONS = {
    "even_pairs": even_pairs.targets_for,
    "modular_arithmetic": modular_arithmetic.targets_for,
    "cycle_navigation": cycle_navigation.targets_for,
    "stack_manipulation": stack_manipulation.targets_for,
    "reverse_string": reverse_string.targets_for,
    "duplicate_string": duplicate_string.targets_for,
    "odds_first": odds_first.targets_for,
    "compute_sqrt": compute_sqrt.targets_for,
    "bucket_sort": bucket_sort.targets_for,
}


@pytest.mark.parametrize("name, x, y", SPEC_EXAMPLES)
def test_oracle_reproduces_spec_example(name, x, y):
    with recursion_limit(10_000):
        assert ORACLES[name](x, len(x)) == y


@pytest.mark.parametrize("name, x, y", [e for e in SPEC_EXAMPLES if e[0] in TARGET_FUNCTIONS])
def test_task_target_function_reproduces_spec_example(name, x, y):
    assert TARGET_FUNCTIONS[name](torch.tensor([x])).tolist() == [y]


def test_oracles_reject_the_documented_wrong_readings():
    # odds_first: the docstring's reading (even positions first) is NOT the reference behaviour.
    assert oracle_odds_first(ids("00110101"), 8) != ids("01000111")
    # bracket grammar: a bracketed sub-expression may not be bracketed again; `*` is not in equations.
    with pytest.raises(AssertionError):
        parse_bracket_expression("((3))")
    with pytest.raises(AssertionError):
        oracle_binary_addition([0, 0, 2, 1, 0], 5)     # zero operand
    with pytest.raises(AssertionError):
        oracle_solve_equation(ids("(x+x)=2", EQUATION_SYMBOLS), 7)   # two unknowns


# -- shapes, vocabularies and oracles on sampled batches ------------------------------------------
LENGTHS = list(range(1, 13)) + [13, 16, 39, 40, 41, 64, 101, 256]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_sampled_batches_match_oracle(name):
    for length in LENGTHS:
        check_batch(name, sample(name, 16, length, seed=length), 16, length)


@pytest.mark.parametrize("name", TASK_NAMES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(length=st.integers(1, 600), batch_size=st.integers(1, 6), seed=st.integers(0, 2**63 - 1))
def test_property_batches_match_oracle(name, length, batch_size, seed):
    check_batch(name, sample(name, batch_size, length, seed), batch_size, length)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_very_long_inputs(name):
    """Lengths up to 10,000 work: no recursion-limit errors, exact big-int results."""
    length = 10_000
    batch = sample(name, 2, length, seed=3)   # sampled under the default recursion limit
    with recursion_limit(20_000):             # the oracle's parser recurses per nesting level
        check_batch(name, batch, 2, length)


# -- direct checks of the vectorised target functions on adversarial inputs ----------------------
@settings(max_examples=150, deadline=None)
@given(digits=st.lists(st.integers(0, 4), min_size=1, max_size=60),
       ops=st.lists(st.sampled_from([5, 6, 7, 7, 7]), min_size=60, max_size=60))
def test_modular_arithmetic_evaluator_is_exact(digits, ops):
    """Long product runs, zeros and minus signs, against Python's exact big-int arithmetic."""
    tokens = [digits[0]]
    for op, digit in zip(ops, digits[1:]):
        tokens += [op, digit]
    assert modular_arithmetic.targets_for(torch.tensor([tokens])).tolist() == \
        [oracle_modular_arithmetic(tokens, len(tokens))]


@settings(max_examples=150, deadline=None)
@given(stack=st.lists(st.integers(0, 1), min_size=1, max_size=20),
       actions=st.lists(st.sampled_from([2, 2, 2, 3, 4]), min_size=1, max_size=40))
def test_stack_evaluator_matches_simulation(stack, actions):
    """Pop-heavy action sequences (popping the empty stack, refilling it) against a list stack."""
    tokens = stack + actions
    assert stack_manipulation.targets_for(torch.tensor([tokens])).tolist() == \
        [oracle_stack_manipulation(tokens, len(tokens))]


def test_hidden_digit_moves_forward_cyclically_to_a_digit():
    expression = torch.tensor([ids("(1+(-2))", EQUATION_SYMBOLS)] * 8)
    start = torch.arange(8)
    # positions 1 and 5 hold digits: 0,1 -> 1; 2..5 -> 5; 6, 7 wrap around to 1
    assert hide_one_digit(expression, start).tolist() == [1, 1, 5, 5, 5, 5, 1, 1]


# -- degenerate small lengths ---------------------------------------------------------------------
B = 64


def test_even_pairs_length_one_is_zero():
    assert sample("even_pairs", B, 1).targets.eq(0).all()


def test_modular_arithmetic_even_length_drops_one_token():
    batch = sample("modular_arithmetic", B, 2)
    assert batch.inputs.shape == (B, 1) and torch.equal(batch.targets, batch.inputs)
    assert sample("modular_arithmetic", B, 40).inputs.shape == (B, 39)


def test_stack_length_one_is_bit_then_terminator():
    batch = sample("stack_manipulation", B, 1)
    assert set(batch.inputs.flatten().tolist()) == {0, 1}
    assert torch.equal(batch.targets, torch.cat([batch.inputs, torch.full((B, 1), 2)], dim=1))
    assert batch.mask.all()


def test_brackets_base_cases():
    forms = {1: "d", 2: "-d", 3: "(d)", 4: "(-d)"}
    for length, form in forms.items():
        batch = sample("modular_arithmetic_brackets", B, length)
        for x, (label,) in zip(batch.inputs.tolist(), batch.targets.tolist()):
            text = "".join(BRACKETS_SYMBOLS[t] for t in x)
            digit = int(text.strip("(-)"))
            assert text == form.replace("d", str(digit))
            assert label == (-digit % 5 if "-" in form else digit)


def test_solve_equation_short_lengths_are_all_zero():
    for length in (1, 2):
        batch = sample("solve_equation", B, length)
        assert batch.inputs.eq(0).all() and batch.inputs.shape == (B, length)
        assert batch.targets.eq(0).all()
    x = sample("solve_equation", B, 3).inputs   # expression `d` -> always `x = d`
    assert x[:, :2].tolist() == [[9, 10]] * B


def test_missing_duplicate_length_one():
    batch = sample("missing_duplicate_string", B, 1)
    assert batch.inputs.tolist() == [[1]] * B and batch.targets.tolist() == [[1]] * B


def test_binary_addition_degenerate():
    batch = sample("binary_addition", B, 1)
    assert batch.inputs.tolist() == [[0]] * B and batch.targets.tolist() == [[0, 2]] * B
    assert batch.mask.all()
    batch = sample("binary_addition", 256, 2)
    expected = {(0, 0): [0, 2, 0], (1, 0): [1, 2, 0], (0, 1): [0, 1, 2]}   # 0, 1, 2 little-endian
    seen = set()
    for x, y in zip(batch.inputs.tolist(), batch.targets.tolist()):
        assert y == expected[tuple(x)]
        seen.add(tuple(x))
    assert seen == set(expected)   # [1, 1] (= 3) never occurs


def test_binary_multiplication_degenerate():
    batch = sample("binary_multiplication", B, 1)
    assert batch.inputs.tolist() == [[0]] * B and batch.targets.tolist() == [[2]] * B
    assert batch.mask.all()
    batch = sample("binary_multiplication", 256, 2)
    assert batch.targets.tolist() == [[0, 2]] * 256 and batch.mask.all()
    assert {tuple(x) for x in batch.inputs.tolist()} == {(0, 0), (1, 0), (0, 1)}


def test_binary_length_three_is_one_plus_one():
    for name, expected in (("binary_addition", [0, 1, 2, 0]), ("binary_multiplication", [1, 2, 0])):
        batch = sample(name, B, 3)
        assert batch.inputs.tolist() == [[1, 2, 1]] * B
        assert batch.targets.tolist() == [expected] * B


def test_compute_sqrt_length_one():
    batch = sample("compute_sqrt", B, 1)
    assert batch.inputs.tolist() == [[1]] * B and batch.targets.tolist() == [[1]] * B


# -- the accuracy mask ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["stack_manipulation", "binary_addition", "binary_multiplication"])
def test_mask_stops_after_first_terminator(name):
    batch = sample(name, 256, 20)
    first_terminator = (batch.targets == 2).int().argmax(dim=1, keepdim=True)
    assert (batch.targets == 2).sum(dim=1).eq(1).all()    # exactly one terminator
    assert torch.equal(batch.mask, torch.arange(batch.targets.shape[1]) <= first_terminator)
    assert not batch.mask.all()   # some padding is masked out
    assert (batch.targets * ~batch.mask).eq(0).all()      # the padding is zeros


@pytest.mark.parametrize("name", [n for n in TASK_NAMES if SPEC_TABLE[n][5] is None])
def test_mask_is_all_true_without_terminator(name):
    assert sample(name, 8, 17).mask.all()


# -- determinism and RNG hygiene ------------------------------------------------------------------
@pytest.mark.parametrize("name", TASK_NAMES)
def test_same_seed_same_batch_other_seed_other_batch(name):
    for length in (7, 40):
        a, b, c = sample(name, 32, length, 5), sample(name, 32, length, 5), sample(name, 32, length, 6)
        assert all(torch.equal(u, v) for u, v in zip(a, b))
        assert not torch.equal(a.inputs, c.inputs)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_sampling_uses_only_the_given_generator(name):
    """No global RNG (torch, random, numpy) is read or advanced, and the generator is advanced."""
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    generator = torch.Generator().manual_seed(1)
    before = generator.get_state()
    TASKS.get(name).sample(8, 40, generator)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert random.getstate() == states[1]
    assert np.array_equal(np.random.get_state()[1], states[2])
    assert not torch.equal(generator.get_state(), before)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_consecutive_batches_differ(name):
    generator = torch.Generator().manual_seed(2)
    task = TASKS.get(name)
    assert not torch.equal(task.sample(32, 40, generator).inputs, task.sample(32, 40, generator).inputs)


def test_tasks_declare_their_separators():
    from che.config import make_config
    from che.registry import TASKS

    model_config = make_config("binary_addition", "bipe-alibi", "cpu").model_for(TASKS.get("binary_addition"))
    assert model_config.segment_separators == (2,)
    assert TASKS.get("reverse_string").segment_separators == ()
