"""compute_sqrt (cs): the integer square root of a big-endian binary number."""

import math

import torch

from che.registry import register_task
from che.tasks.base import Task
from che.tasks.cs.binary_numbers import ints_to_le_rows, le_rows_to_ints, sample_nonzero_fields


def targets_for(bits: torch.Tensor) -> torch.Tensor:
    """[B, N] big-endian bits -> [B, ceil(N/2)] big-endian isqrt, zero-padded on the left."""
    values = le_rows_to_ints(bits.flip(1))
    roots = [math.isqrt(v) for v in values]
    return ints_to_le_rows(roots, (bits.shape[1] + 1) // 2).flip(1)


@register_task
class ComputeSqrt(Task):
    """Input v ~ U{1..2^N-1} in big-endian binary at exactly N bits; output floor(sqrt(v)).

    Leading zeros are allowed in the input; the output is big-endian, zero-padded to ceil(N/2) bits
    (sqrt(v) < 2^(N/2), so it always fits).

    Example: `1 1 0 1` (13) -> `1 1` (3); `0 1 1 1` (7) -> `1 0` (2).

    Note: v is drawn as N uniform bits with the all-zero row rejected, which is uniform over the
    exact range 1..2^N-1 for any N (the reference uses Python's `random.randint` on big ints).
    """

    name = "compute_sqrt"
    level, order = "cs", 14
    input_size = 2
    output_size = 2
    classification = False
    output_length_rule = "ceil(N/2)"
    input_symbols = ("0", "1")
    output_symbols = ("0", "1")

    def output_length(self, length):
        return (length + 1) // 2

    def _sample(self, batch_size, length, generator):
        whole_row = torch.ones(batch_size, length, dtype=torch.bool)
        bits = sample_nonzero_fields([whole_row], generator)
        return bits, targets_for(bits)
