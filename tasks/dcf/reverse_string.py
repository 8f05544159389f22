"""reverse_string (dcf): output the input backwards."""

import torch

from che.registry import register_task
from che.tasks.base import Task


def targets_for(bits: torch.Tensor) -> torch.Tensor:
    return bits.flip(dims=(1,))


@register_task
class ReverseString(Task):
    """N i.i.d. bits; the output is the same bits in reverse order (length N).

    Example: `0 0 0 1 1 -> 1 1 0 0 0`.
    """

    name = "reverse_string"
    level, order = "dcf", 6
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
