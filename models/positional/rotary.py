"""rope: rotary position embedding of q and k."""

from __future__ import annotations

import torch

from che.models.positional.base import AttentionPE
from che.registry import register_pe


def rotate_pairs(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate interleaved pairs (2k, 2k+1) of the last dim of x [..., T, d] by p * base^(-2k/d)."""
    d = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = positions.to(torch.float32)[:, None] * inv_freq  # [T, d/2]
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1).flatten(-2)


@register_pe
class RoPE(AttentionPE):
    """Su et al.'s rotary embedding: q and k of every head are rotated pairwise by p * theta_k,
    theta_k = 10000^(-2k/d_head), on interleaved pairs (2k, 2k+1), as the CHE reference. The score
    q_i . k_j then depends on positions only through i - j. q and k share one set of positions."""

    name = "rope"
    family = "rotary"
    citation = "Su et al. 2021, RoFormer: Enhanced Transformer with Rotary Position Embedding"

    def rotate(self, q, k):
        positions = self.positions(q.shape[-2], q.device)
        return rotate_pairs(q, positions), rotate_pairs(k, positions)
