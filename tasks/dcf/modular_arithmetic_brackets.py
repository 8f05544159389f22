"""modular_arithmetic_brackets (dcf): evaluate a fully bracketed expression mod 5."""

from che.registry import register_task
from che.tasks.base import Task
from che.tasks.dcf.bracket_expressions import MODULUS, ExpressionTokens, sample_expressions

# Ids after the digits 0..4 (reference `alphabet_to_int`): x = 10 and = = 11 are never used.
TOKENS = ExpressionTokens(plus=5, minus=6, times=7, open=8, close=9)


@register_task
class ModularArithmeticBrackets(Task):
    """A random expression of exactly N tokens; the label is its value mod 5.

    Grammar E -> d | -d | (d) | (-d) | (E op E), op uniform over {+, -, *} (the registry builds the
    task with `mult=True`). Lengths 1..4 are the base cases; for N >= 5 the left operand has length
    U{1..N-4} and the right one N-3-left (see `bracket_expressions`). Unary minus therefore only
    appears in the base cases, e.g. `(0+-3)`.

    Tokens: digits 0-4, `+` = 5, `-` = 6, `*` = 7, `(` = 8, `)` = 9. `input_size` is 11 as in the
    reference (modulus + 6): id 10 (`x`) is in the one-hot but never occurs; id 11 (`=`) would fall
    outside it and never occurs either.

    Examples: `((3)*(-1*0))` (8 8 3 9 7 8 6 1 7 0 9 9) -> 0; `(0+-3)` -> 2.

    Note: generation is iterative, so any length works (the reference recursion would not).
    """

    name = "modular_arithmetic_brackets"
    level, order = "dcf", 7
    input_size = MODULUS + 6
    output_size = MODULUS
    input_symbols = ("0", "1", "2", "3", "4", "+", "-", "*", "(", ")", "x")
    output_symbols = ("0", "1", "2", "3", "4")

    def _sample(self, batch_size, length, generator):
        rng = self.python_rng(generator)
        expressions, values = sample_expressions(rng, batch_size, length, TOKENS)
        return expressions, values.unsqueeze(1)
