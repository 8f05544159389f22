"""odds_first (cs): the symbols at odd positions, then those at even positions."""

import torch

from che.registry import register_task
from che.tasks.base import Task


def targets_for(bits: torch.Tensor) -> torch.Tensor:
    """x[1::2] ++ x[0::2] with 0-based indices."""
    return torch.cat([bits[:, 1::2], bits[:, 0::2]], dim=1)


@register_task
class OddsFirst(Task):
    """N i.i.d. bits; the output is x[1::2] ++ x[0::2] (0-indexed odd positions first), length N.

    Example: `0 0 1 1 0 1 0 1 -> 0 1 1 1 0 1 0 0`; `0 1 0 0 -> 1 0 0 0`.

    Note: follows the reference CODE, not its docstring. The docstring says s1 s3 s5 ... s2 s4 ...
    (1-based, i.e. 0-based EVEN positions first, `00110101 -> 01000111`); the code, canonical here,
    puts the 0-based ODD positions first.
    """

    name = "odds_first"
    level, order = "cs", 11
    input_size = 2
    output_size = 2
    classification = False
    output_length_rule = "N"
    input_symbols = ("0", "1")
    output_symbols = ("0", "1")

    def output_length(self, length):
        return length

    def _sample(self, batch_size, length, generator):
        bits = torch.randint(0, 2, (batch_size, length), generator=generator)
        return bits, targets_for(bits)
