"""Additive attention biases B[h, i, j] that depend only on positions."""

from __future__ import annotations

import math

import torch

from che.models.positional.base import BiasPE, signed_offsets
from che.registry import register_pe


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """The official ALiBi slopes: for a power of two n, 2^(-8/n), 2^(-16/n), ...; otherwise the
    slopes of the nearest lower power of two, then every other slope of the next one."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        slopes = power_of_two(n_heads)
    else:
        lower = 2 ** math.floor(math.log2(n_heads))
        slopes = power_of_two(lower) + power_of_two(2 * lower)[0::2][: n_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


@register_pe
class ALiBi(BiasPE):
    """Press et al.'s linear biases, as in the CHE reference:
    B[h, i, j] = m_h * (-|i - j| + 0.5 * [j < i]), slopes m_h from `alibi_slopes` (2^-1..2^-8 for
    8 heads). The +0.5 on keys left of the query breaks the left/right symmetry of |i - j| that a
    non-causal encoder would otherwise have."""

    name = "alibi"
    family = "additive bias"
    citation = "Press et al. 2022, Train Short, Test Long (ALiBi)"
    bidirectional = "symmetric -|i-j|, +0.5 slope for keys left of the query (CHE reference)"

    def __init__(self, config, randomized=False):
        super().__init__(config, randomized)
        self.register_buffer("slopes", alibi_slopes(config.n_heads), persistent=False)

    def bias_from_positions(self, positions):
        offsets = signed_offsets(positions).to(torch.float32)  # j - i
        shape = -offsets.abs() + 0.5 * (offsets < 0)
        return self.slopes[:, None, None] * shape
