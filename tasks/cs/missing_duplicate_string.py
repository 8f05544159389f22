"""missing_duplicate_string (cs): recover the one hidden symbol of `s s`."""

import torch

from che.registry import register_task
from che.tasks.base import Task

MISSING, PAD = 2, 3


@register_task
class MissingDuplicateString(Task):
    """`s ++ s` for N//2 i.i.d. bits s, with one symbol replaced by 2; the label is that symbol.

    Input ids: 0, 1, 2 = the missing-symbol placeholder, 3 = pad. The hidden index is
    U{0..2*(N//2)-1}. For odd N one pad 3 is appended, so the input has exactly N tokens.

    Example (N = 7, s = 110): `1 1 0 2 1 0 3 -> 1`.

    Degenerate N = 1: the input is `[1]` and the label 1.
    """

    name = "missing_duplicate_string"
    level, order = "cs", 10
    input_size = 4
    output_size = 2
    input_symbols = ("0", "1", "?", "#")
    output_symbols = ("0", "1")

    def _sample(self, batch_size, length, generator):
        if length == 1:
            ones = torch.ones(batch_size, 1, dtype=torch.long)
            return ones, ones.clone()
        half = length // 2
        s = torch.randint(0, 2, (batch_size, half), generator=generator)
        doubled = torch.cat([s, s], dim=1)
        hidden = torch.randint(0, 2 * half, (batch_size, 1), generator=generator)
        labels = doubled.gather(1, hidden)
        doubled.scatter_(1, hidden, MISSING)
        if length % 2 == 1:
            doubled = torch.cat([doubled, torch.full((batch_size, 1), PAD)], dim=1)
        return doubled, labels
