"""parity_check (regular): is the number of ones odd?"""

import torch

from che.registry import register_task
from che.tasks.base import Task


@register_task
class ParityCheck(Task):
    """N i.i.d. bits; the label is their sum mod 2.  Example: `1 0 0 1 1 -> 1`."""

    name = "parity_check"
    level, order = "regular", 3
    input_size = 2
    output_size = 2
    input_symbols = ("0", "1")
    output_symbols = ("0", "1")

    def _sample(self, batch_size, length, generator):
        bits = torch.randint(0, 2, (batch_size, length), generator=generator)
        return bits, bits.sum(dim=1, keepdim=True) % 2
