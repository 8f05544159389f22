"""duplicate_string (cs): output the input twice."""

import torch

from che.registry import register_task
from che.tasks.base import Task


def targets_for(bits: torch.Tensor) -> torch.Tensor:
    return torch.cat([bits, bits], dim=1)


@register_task
class DuplicateString(Task):
    """N i.i.d. bits; the output is the input followed by itself (length 2N).

    Example: `1 1 0 -> 1 1 0 1 1 0`.
    """

    name = "duplicate_string"
    level, order = "cs", 9
    input_size = 2
    output_size = 2
    classification = False
    output_length_rule = "2N"
    input_symbols = ("0", "1")
    output_symbols = ("0", "1")

    def output_length(self, length):
        return 2 * length

    def _sample(self, batch_size, length, generator):
        bits = torch.randint(0, 2, (batch_size, length), generator=generator)
        return bits, targets_for(bits)
