"""Absolute PEs, added to the token embeddings: sin-cos and learned."""

from __future__ import annotations

import torch

from che.models.positional.base import AbsolutePE
from che.registry import register_pe


def sinusoid(positions: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """[*positions.shape, dim] sinusoids in the CHE layout: [sin | cos] halves (not interleaved),
    frequencies base^(-2k/dim) for k = 0 .. dim/2 - 1."""
    inv_freq = base ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim)
    angles = positions.to(torch.float32)[..., None] * inv_freq
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


@register_pe
class SinCos(AbsolutePE):
    """Vaswani et al.'s sinusoids added to the embeddings, [sin | cos] halves, base 10000.

    Positions ascend, 0..T-1, as in the RPE reference (Ruoss et al.), on which the DAPE numbers
    were produced. The CH reference (Delétang et al.) counts down instead (T..1, so the readout
    token always has position 1); that variant is not offered.
    """

    name = "sin-cos"
    family = "absolute"
    citation = "Vaswani et al. 2017, Attention Is All You Need"

    def encode(self, positions):
        return sinusoid(positions, self.config.d_model)
