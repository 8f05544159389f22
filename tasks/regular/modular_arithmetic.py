"""modular_arithmetic (regular): evaluate `d op d op ... d` mod 5, with * before + and -."""

import torch

from che.registry import register_task
from che.tasks.base import Task

MODULUS = 5
PLUS, MINUS, TIMES, BLANK = 5, 6, 7, 8   # token ids after the digits 0..4; BLANK is never sampled
OPERATORS = torch.tensor([PLUS, TIMES, MINUS])

# Discrete logarithm base 2 modulo 5 (2 generates the units: 2^0=1, 2^1=2, 2^2=4, 2^3=3), so a
# product of non-zero residues is 2^(sum of logs mod 4). LOG2[0] is unused (zeros are counted).
LOG2 = torch.tensor([0, 0, 1, 3, 2])
POW2 = torch.tensor([1, 2, 4, 3])


def targets_for(tokens: torch.Tensor) -> torch.Tensor:
    """[B, L] tokens (digits at even, operators at odd positions, L odd) -> [B, 1] value mod 5.

    Vectorised evaluation with precedence: `a - b` becomes `a + (-b)`; each maximal run of `*`
    is one term whose product is computed as (any zero factor ? 0 : 2^(sum of discrete logs)); the
    terms are summed. Every step works on residues mod 5, which gives the exact value mod 5
    because reduction mod 5 is a ring homomorphism.
    """
    digits, ops = tokens[:, 0::2], tokens[:, 1::2]
    batch_size, n_digits = digits.shape
    op_before = torch.cat([torch.full((batch_size, 1), PLUS), ops], dim=1)  # first digit: as after '+'
    signed = torch.where(op_before == MINUS, (-digits) % MODULUS, digits)
    starts_term = op_before != TIMES
    term_id = starts_term.cumsum(dim=1) - 1
    zeros_in_term = torch.zeros(batch_size, n_digits, dtype=torch.long).scatter_add_(
        1, term_id, (signed == 0).long())
    log_of_term = torch.zeros(batch_size, n_digits, dtype=torch.long).scatter_add_(
        1, term_id, LOG2[signed])
    term_value = torch.where(zeros_in_term > 0, 0, POW2[log_of_term % 4])
    term_exists = torch.arange(n_digits) <= term_id[:, -1:]
    return (term_value * term_exists).sum(dim=1, keepdim=True) % MODULUS


@register_task
class ModularArithmetic(Task):
    """An expression `d op d op ... op d` with digits 0..4 and operators +, -, *; label: its value mod 5.

    Tokens: digits 0-4, `+` = 5, `-` = 6, `*` = 7, `_` = 8 (a blank that is never sampled).
    The input length is N if N is odd and N - 1 if N is even (the reference does `length -= 1`), so
    there are `L//2 + 1` digits, each U{0..4}, at even positions and operators, each uniform over
    {+, *, -}, at odd positions. N = 1 and N = 2 give a single digit, which is the label.

    Example: `1 - 1 * 2 * 2 + 1` (tokens 1 6 1 7 2 7 2 5 1) = -2 -> 3.

    Notes:
    - Follows RPE, whose operators are uniform over {+, *, -}; CH's generator-exhaustion bug is not
      reproduced.
    - The reference evaluates in int32 without reduction and takes `% 5` at the end; here every step
      is reduced mod 5, which is exact (a ring homomorphism) and differs from the reference only
      where its int32 arithmetic would overflow (runs of ~15+ large factors; negligible).
    """

    name = "modular_arithmetic"
    level, order = "regular", 2
    input_size = MODULUS + 4
    output_size = MODULUS
    input_symbols = ("0", "1", "2", "3", "4", "+", "-", "*", "_")
    output_symbols = ("0", "1", "2", "3", "4")

    def input_length(self, length):
        return length if length % 2 == 1 else length - 1

    def _sample(self, batch_size, length, generator):
        n_tokens = self.input_length(length)
        n_digits = n_tokens // 2 + 1
        digits = torch.randint(0, MODULUS, (batch_size, n_digits), generator=generator)
        ops = OPERATORS[torch.randint(0, 3, (batch_size, n_digits - 1), generator=generator)]
        tokens = torch.empty(batch_size, n_tokens, dtype=torch.long)
        tokens[:, 0::2] = digits
        tokens[:, 1::2] = ops
        return tokens, targets_for(tokens)
