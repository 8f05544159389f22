"""even_pairs (regular): is the number of unequal adjacent pairs even?"""

import torch

from che.registry import register_task
from che.tasks.base import Task


def targets_for(bits: torch.Tensor) -> torch.Tensor:
    """[B, N] bits -> [B, 1] labels: (number of 01/10 pairs) mod 2, which is x[0] XOR x[N-1]."""
    return (bits[:, :1] ^ bits[:, -1:])


@register_task
class EvenPairs(Task):
    """N i.i.d. bits; the label is the number of adjacent unequal pairs (01 or 10) mod 2.

    Example: `0 0 0 1 -> 1` (one transition), `0 1 1 0 1 0 -> 0` (four).

    Notes: the parity of the transition count telescopes to `x[0] XOR x[N-1]`, which is what is
    computed. N = 1 gives label 0, as the formula does.
    """

    name = "even_pairs"
    level, order = "regular", 1
    input_size = 2
    output_size = 2
    input_symbols = ("0", "1")
    output_symbols = ("0", "1")

    def _sample(self, batch_size, length, generator):
        bits = torch.randint(0, 2, (batch_size, length), generator=generator)
        return bits, targets_for(bits)
