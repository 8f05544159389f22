"""An example task plugin: count the ones of a bit string, modulo 3.

Load it with `--plugin examples/count_ones_mod3.py` (or CHE_PLUGINS, or the entry point declared in
examples/pyproject.toml), then use it like any built-in task:

    che sample --task count_ones_mod3 --length 6 --plugin examples/count_ones_mod3.py
    che run --task count_ones_mod3 --pe alibi --preset smoke --plugin examples/count_ones_mod3.py

A task is a `che.tasks.Task` subclass with a few class attributes and a batched `_sample`,
registered with `@register_task`.
"""

import torch

from che import register_task
from che.tasks import Task


@register_task
class CountOnesMod3(Task):
    """N i.i.d. bits; the label is the number of ones mod 3 (a regular language, like parity)."""

    name = "count_ones_mod3"
    level = "regular"
    input_size = 2       # tokens 0 and 1
    output_size = 3      # labels 0, 1, 2
    input_symbols = ("0", "1")

    def _sample(self, batch_size, length, generator):
        bits = torch.randint(0, 2, (batch_size, length), generator=generator)
        return bits, bits.sum(dim=1, keepdim=True) % 3
