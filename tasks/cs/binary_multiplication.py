"""binary_multiplication (cs): multiply two little-endian binary numbers."""

import torch

from che.registry import register_task
from che.tasks.base import Task
from che.tasks.cs.binary_arithmetic import TERMINATOR, sample_degenerate, sample_operands
from che.tasks.cs.binary_numbers import result_then_terminator


@register_task
class BinaryMultiplication(Task):
    """Input `n * m` in little-endian binary; output n * m little-endian, a terminator, then 0s.

    Input format and operand sampling as binary_addition (2 is now the `*` separator; operands
    non-zero, LSB first at fixed widths). Output: the product LSB first without leading zeros, the
    terminator 2, then 0s up to N tokens; the product has at most N-1 bits, so this always fits.
    Accuracy counts positions up to and including the terminator.

    Example (N = 6): `1 0 1 * 1 1` is 5 * 3 = 15 = LE `1 1 1 1`, so the output is
    `1 1 1 1 2 0`.

    Degenerate N <= 2: the input is sampled as for binary_addition (a number U{0..2^N-2}, LE, no
    separator) and the output is fixed: `[2]` for N = 1 and `[0, 2]` for N = 2.
    """

    name = "binary_multiplication"
    level, order = "cs", 13
    input_size = 3
    output_size = 3
    classification = False
    output_length_rule = "N"
    terminator = TERMINATOR
    input_symbols = ("0", "1", "*")
    segment_separators = (2,)  # the operator: BiPE reads the operands as two segments
    output_symbols = ("0", "1", "$")

    def output_length(self, length):
        return length


    def _sample(self, batch_size, length, generator):
        if length <= 2:
            inputs, _ = sample_degenerate(batch_size, length, generator)
            fixed = [TERMINATOR] if length == 1 else [0, TERMINATOR]
            return inputs, torch.tensor([fixed] * batch_size)
        inputs, n_values, m_values = sample_operands(batch_size, length, generator)
        products = [n * m for n, m in zip(n_values, m_values)]
        return inputs, result_then_terminator(products, length, TERMINATOR)
