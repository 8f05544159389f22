"""bucket_sort (cs): sort symbols from a vocabulary of 5."""

import torch

from che.registry import register_task
from che.tasks.base import Task

VOCABULARY = 5


def targets_for(tokens: torch.Tensor) -> torch.Tensor:
    return tokens.sort(dim=1).values


@register_task
class BucketSort(Task):
    """N i.i.d. tokens U{0..4}; the output is the same tokens in ascending order (length N).

    Example: `2 0 4 0 -> 0 0 2 4`.
    """

    name = "bucket_sort"
    level, order = "cs", 15
    input_size = VOCABULARY
    output_size = VOCABULARY
    classification = False
    output_length_rule = "N"
    input_symbols = ("0", "1", "2", "3", "4")
    output_symbols = ("0", "1", "2", "3", "4")

    def output_length(self, length):
        return length

    def _sample(self, batch_size, length, generator):
        tokens = torch.randint(0, VOCABULARY, (batch_size, length), generator=generator)
        return tokens, targets_for(tokens)
