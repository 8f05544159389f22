"""binary_addition (cs): add two little-endian binary numbers."""


from che.registry import register_task
from che.tasks.base import Task
from che.tasks.cs.binary_arithmetic import TERMINATOR, sample_degenerate, sample_operands
from che.tasks.cs.binary_numbers import result_then_terminator


@register_task
class BinaryAddition(Task):
    """Input `n + m` in little-endian binary; output n + m little-endian, a terminator, then 0s.

    Input ids: 0, 1, and 2 = the `+` separator. For N >= 3: len_n ~ U{1..N-2}, len_m = N-1-len_n,
    n ~ U{1..2^len_n - 1}, m ~ U{1..2^len_m - 1} (both non-zero), each written LSB first at its
    fixed width. Output: the sum LSB first without leading zeros, the terminator 2, then 0s up to
    N+1 tokens; accuracy counts positions up to and including the terminator.

    Example (N = 5): `1 + 0 1 0` is 1 + 2 = 3 = LE `1 1`, so the output is
    `1 1 2 0 0 0`. The reference docstring's `001+01101 -> 010112000` is one pad short; the code,
    and this task, give `0 1 0 1 1 2 0 0 0 0`.

    Degenerate N <= 2: the input is a number U{0..2^N-2} written LE at N bits
    with no separator, and the "sum" is that number (N = 1: input `[0]`, output `[0, 2]`).
    """

    name = "binary_addition"
    level, order = "cs", 12
    input_size = 3
    output_size = 3
    classification = False
    output_length_rule = "N+1"
    terminator = TERMINATOR
    input_symbols = ("0", "1", "+")
    segment_separators = (2,)  # the operator: BiPE reads the operands as two segments
    output_symbols = ("0", "1", "$")

    def output_length(self, length):
        return length + 1


    def _sample(self, batch_size, length, generator):
        if length <= 2:
            inputs, sums = sample_degenerate(batch_size, length, generator)
        else:
            inputs, n_values, m_values = sample_operands(batch_size, length, generator)
            sums = [n + m for n, m in zip(n_values, m_values)]
        return inputs, result_then_terminator(sums, length + 1, TERMINATOR)
