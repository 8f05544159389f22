"""Random bracket expressions of an exact length, shared by two dcf tasks.

The grammar is E -> d | -d | (d) | (-d) | (E op E) with digits d in 0..4. For a length L:
L = 1..4 are the four base cases (a digit U{0..4}); for L >= 5 the left operand has length
U{1..L-4}, the right one L-3-left, and the operator is uniform over the allowed ones. The value
is reduced mod 5 at each step.

Generation is iterative (an explicit work stack, not recursion), so lengths of 10,000 or more
do not hit Python's recursion limit; nesting can be about L/4 deep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

MODULUS = 5
ADD, SUBTRACT, MULTIPLY = 0, 1, 2


@dataclass(frozen=True)
class ExpressionTokens:
    """Token ids of the non-digit symbols (digits are ids 0..4). `times` is None without `*`."""

    plus: int
    minus: int
    open: int
    close: int
    times: int | None = None

    @property
    def operators(self) -> tuple[int, ...]:
        """The allowed operators, as ADD / SUBTRACT / MULTIPLY codes."""
        return (ADD, SUBTRACT) if self.times is None else (ADD, SUBTRACT, MULTIPLY)

    def operator_token(self, operator: int) -> int:
        return (self.plus, self.minus, self.times)[operator]


def sample_expressions(rng: random.Random, batch_size: int, length: int,
                       tokens: ExpressionTokens) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random expressions of exactly `length` tokens: ([B, length] ids, [B] values mod 5)."""
    out = bytearray()
    values = [_sample_expression(rng, length, tokens, out) for _ in range(batch_size)]
    ids = torch.frombuffer(out, dtype=torch.uint8).view(batch_size, length).long()
    return ids, torch.tensor(values, dtype=torch.long)


def _sample_expression(rng: random.Random, length: int, tokens: ExpressionTokens,
                       out: bytearray) -> int:
    """Append one expression of `length` ids to `out`; return its value mod 5."""
    randrange = rng.randrange
    n_operators = len(tokens.operators)
    minus, open_, close = tokens.minus, tokens.open, tokens.close
    # Work items popped from `pending`: an int n = "generate a subexpression of length n";
    # ("emit", id) = "write this operator token"; ("close", op) = "write ')' and combine the
    # two values on top of `operands` with op". Pushed in reverse order of execution.
    emit_steps = [("emit", tokens.operator_token(op)) for op in tokens.operators]
    close_steps = [("close", op) for op in tokens.operators]
    pending: list = [length]
    operands: list[int] = []
    while pending:
        item = pending.pop()
        if type(item) is int:
            if item >= 5:
                left = 1 + randrange(item - 4)
                op = randrange(n_operators)
                out.append(open_)
                pending += (close_steps[op], item - 3 - left, emit_steps[op], left)
                continue
            digit = randrange(MODULUS)
            if item == 1:
                out.append(digit)
            elif item == 2:
                out += bytes((minus, digit))
            elif item == 3:
                out += bytes((open_, digit, close))
            else:
                out += bytes((open_, minus, digit, close))
            operands.append(-digit % MODULUS if item % 2 == 0 else digit)
        elif item[0] == "emit":
            out.append(item[1])
        else:
            right = operands.pop()
            left_value = operands.pop()
            op = item[1]
            if op == ADD:
                operands.append((left_value + right) % MODULUS)
            elif op == SUBTRACT:
                operands.append((left_value - right) % MODULUS)
            else:
                operands.append(left_value * right % MODULUS)
            out.append(close)
    return operands[0]
