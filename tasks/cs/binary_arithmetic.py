"""Shared sampling for binary_addition and binary_multiplication."""

from __future__ import annotations

import torch

from che.tasks.cs.binary_numbers import le_rows_to_ints, sample_nonzero_fields

SEPARATOR = 2   # `+` or `*` in the input
TERMINATOR = 2  # end of the result in the output


def sample_operands(batch_size: int, length: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, list[int], list[int]]:
    """For N >= 3: inputs `n 2 m` ([B, N]) and the operands n, m as Python ints.

    len_n ~ U{1..N-2}, len_m = N-1-len_n; n ~ U{1..2^len_n - 1} and m ~ U{1..2^len_m - 1}, each
    written little-endian at its fixed width (so zero padding sits at the right end of each number).
    """
    pos = torch.arange(length)
    len_n = torch.randint(1, length - 1, (batch_size, 1), generator=generator)
    in_n, in_m = pos < len_n, pos > len_n
    bits = sample_nonzero_fields([in_n, in_m], generator)
    inputs = torch.where(pos == len_n, SEPARATOR, bits)
    n_values = le_rows_to_ints(bits * in_n)
    m_shifted = le_rows_to_ints(bits * in_m)  # m sits at offset len_n + 1
    m_values = [m >> (offset + 1) for m, offset in zip(m_shifted, len_n.squeeze(1).tolist())]
    return inputs, n_values, m_values


def sample_degenerate(batch_size: int, length: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, list[int]]:
    """For N <= 2: a number U{0..2^N-2} (the reference's `randint(0, 2^N - 1)` excludes the top)
    written little-endian at N bits, with no separator. N = 1 therefore always gives `[0]`."""
    values = torch.randint(0, 2 ** length - 1, (batch_size, 1), generator=generator)
    bits = (values >> torch.arange(length)) & 1
    return bits, values.squeeze(1).tolist()
