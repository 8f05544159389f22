"""rope: rotary position embedding of q and k."""

from __future__ import annotations

import torch

from che.models.positional.base import AttentionPE
from che.registry import register_pe


def rotate_pairs(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0,
                 rotated_pairs: int | None = None, frequencies: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate interleaved pairs (2k, 2k+1) of the last dim of x [..., T, d] by p * base^(-2k/d);
    `positions` [T] (or [..., T], broadcast against x's leading dims). With `rotated_pairs` m, only
    the first m pairs (the highest frequencies) rotate; the others get angle 0, i.e. stay as they are.
    `frequencies` [d/2], where given, replaces base^(-2k/d) (rescaled RoPE: rope-yarn, rope-ntk)."""
    d = x.shape[-1]
    if frequencies is not None:
        inv_freq = frequencies.to(device=x.device, dtype=torch.float32)
    else:
        inv_freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    if rotated_pairs is not None:
        inv_freq[rotated_pairs:] = 0.0
    angles = positions.to(torch.float32)[..., None] * inv_freq  # [..., T, d/2]
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
    column = 3
    jax_reference = {}
    citation = "Su et al. 2021, RoFormer: Enhanced Transformer with Rotary Position Embedding"

    def rotate(self, q, k):
        positions = self.positions(q.shape[-2], q.device)
        return rotate_pairs(q, positions), rotate_pairs(k, positions)


@register_pe
class PartialRoPE(RoPE):
    """p-RoPE (Barbero et al. 2025, section 6): RoPE on its highest-frequency pairs only. Of the
    d_head / 2 pairs, the first int(p * d_head // 2) rotate with the frequencies they have in full
    RoPE (10000^(-2k/d_head)); the remaining low-frequency pairs are not rotated (angle 0), so they
    carry content only, as NoPE channels. p = `rope_fraction` (default 0.75: the paper's 0.75-RoPE,
    its best in validation perplexity); p = 1 is RoPE, p = 0 NoPE. At d_head 8 and p = 0.75, 3 of
    the 4 pairs rotate. Pairs interleaved (2k, 2k+1) as che's RoPE (the paper's code pairs halves;
    the same function up to a fixed permutation of q's and k's channels)."""

    name = "p-rope"
    column = 4
    jax_reference = None
    settings = ("rope_fraction",)
    citation = ("Barbero et al. 2025, Round and Round We Go! What makes Rotary Positional Encodings useful? "
                "(ICLR 2025, arXiv 2410.06205)")

    def rotate(self, q, k):
        positions = self.positions(q.shape[-2], q.device)
        pairs = int(self.config.rope_fraction * q.shape[-1] // 2)
        return rotate_pairs(q, positions, rotated_pairs=pairs), rotate_pairs(k, positions, rotated_pairs=pairs)
