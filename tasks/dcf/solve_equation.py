"""solve_equation (dcf): find the digit hidden as `x` in `expression = value` (mod 5)."""

import torch

from che.registry import register_task
from che.tasks.base import Task
from che.tasks.dcf.bracket_expressions import MODULUS, ExpressionTokens, sample_expressions

# A different id table from modular_arithmetic_brackets: no `*`, so `(` and `)` move down.
TOKENS = ExpressionTokens(plus=5, minus=6, open=7, close=8)
UNKNOWN, EQUALS = 9, 10


def hide_one_digit(expressions: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Index of the digit to hide in each row: the first digit at or after `start`, cyclically.

    [B, L] ids and [B] start indices -> [B] indices. Every expression contains a digit.
    """
    length = expressions.shape[1]
    is_digit = (expressions < MODULUS).repeat(1, 2)            # two laps make the search cyclic
    index = torch.arange(2 * length).expand_as(is_digit)
    digit_index = torch.where(is_digit, index, 2 * length)
    next_digit = digit_index.flip(1).cummin(dim=1).values.flip(1)  # nearest digit at or after p
    return next_digit.gather(1, start.unsqueeze(1)).squeeze(1) % length


@register_task
class SolveEquation(Task):
    """`expression = value` with one digit of the expression replaced by x; the label is that digit.

    The expression has length N-2 and comes from the grammar of modular_arithmetic_brackets with
    operators {+, -} only (no `*`), so x has exactly one solution mod 5. Then `=` and the
    expression's value mod 5 follow.

    Tokens: digits 0-4, `+` = 5, `-` = 6, `(` = 7, `)` = 8, `x` = 9, `=` = 10 (different ids from
    modular_arithmetic_brackets).

    Example: `(x+3)=2` (7 9 5 3 8 10 2) -> 4; `((4)+(-x))=2` -> 2.

    Notes (reference quirks kept on purpose):
    - the position of x is not uniform over the digits: a start index U{0..N-3} is drawn and moved
      forward cyclically to the next digit, so digits after long runs of non-digits are favoured;
    - N < 3 is degenerate: the input is all 0s and the label is 0.
    """

    name = "solve_equation"
    level, order = "dcf", 8
    input_size = 11
    output_size = MODULUS
    input_symbols = ("0", "1", "2", "3", "4", "+", "-", "(", ")", "x", "=")
    segment_separators = (10,)  # `=`: BiPE reads the two sides of the equation as segments
    output_symbols = ("0", "1", "2", "3", "4")

    def _sample(self, batch_size, length, generator):
        if length < 3:
            zeros = torch.zeros(batch_size, length, dtype=torch.long)
            return zeros, torch.zeros(batch_size, 1, dtype=torch.long)
        expr_length = length - 2
        rng = self.python_rng(generator)
        expressions, values = sample_expressions(rng, batch_size, expr_length, TOKENS)
        start = torch.randint(0, expr_length, (batch_size,), generator=generator)
        hidden = hide_one_digit(expressions, start).unsqueeze(1)
        labels = expressions.gather(1, hidden)
        expressions.scatter_(1, hidden, UNKNOWN)
        equals = torch.full((batch_size, 1), EQUALS)
        return torch.cat([expressions, equals, values.unsqueeze(1)], dim=1), labels
