"""pope: polar coordinate position embeddings (Gopalakrishnan et al. 2025)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from che.models.positional.base import AttentionPE
from che.registry import register_pe

BASE = 10000.0            # the frequencies' base: RoPE's, as the paper
PHASE_BIAS_MIN = -2 * math.pi  # the phase bias lives in [-2 pi, 0]


def pope_frequencies(d_head: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[d_head] theta_c = BASE^(-(c - 1) / d_head), c = 1..d_head: one frequency per channel (RoPE
    has one per pair, BASE^(-2(c - 1) / d_head), c = 1..d_head / 2: every other one of these)."""
    return BASE ** (-torch.arange(d_head, device=device, dtype=dtype) / d_head)


def polar(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """[..., T, d] -> [..., T, 2d]: the real form of the complex numbers softplus(x_c) e^(i angle_c),
    real parts then imaginary parts."""
    magnitude = F.softplus(x)
    return torch.cat([magnitude * torch.cos(angles).to(x.dtype), magnitude * torch.sin(angles).to(x.dtype)], dim=-1)


@register_pe
class PoPE(AttentionPE):
    """Polar coordinate position embeddings (Gopalakrishnan, Csordás, Schmidhuber and Mozer 2025). Each
    head's query q_t and key k_s (d = d_head real numbers) become d complex numbers, one per real
    channel c (not per pair, as RoPE): magnitude softplus(x_c), phase t theta_c (query) or s theta_c +
    delta_c (key), theta_c = 10000^(-(c-1)/d). The score is the paper's

        a_ts = Re[q~_t^H k~_s] / sqrt(d) = sum_c softplus(q_tc) softplus(k_sc) cos((s - t) theta_c + delta_c) / sqrt(d),

    so content sets only the magnitudes (what) and position only the phases (where). It is defined for
    any s and t: the encoder uses it as it is, a causal model under the mask. Computed in the 2d-wide
    real form q' = (mu cos(t theta), mu sin(t theta)), k' = (mu cos(s theta + delta), mu sin(s theta +
    delta)), a plain dot product, so fused attention (SDPA) still applies. The attention divides by the
    square root of q's width, here 2d, while the paper scales by 1/sqrt(d) (d of the original head):
    q' carries a factor sqrt(2) to restore it.

    delta_c, the paper's optional learned phase bias, is on: one per head, frequency and layer, starting
    at 0 (so training starts from the bias-free form) and kept in [-2 pi, 0]. Two choices are che's:
    the bound is enforced by projection after every optimizer step (as KERPLE's), not by a clamp in
    the forward pass (a clamp stops the gradient of a delta pushed past a bound, and a delta starting
    at its bound 0 would stay stuck there after its first step up); and delta is per head (each head
    has its own q~ and k~), as the public re-implementations have it. Angles are computed in float32
    (float64 in a float64 model). `rand-pope` draws the positions t and s at random, as `rand-rope`."""

    name = "pope"
    family = "rotary"
    column = 4.5
    citation = ("Gopalakrishnan, Csordás, Schmidhuber and Mozer 2025, Decoupling the \"What\" and \"Where\" With "
                "Polar Coordinate Positional Embeddings (arXiv 2509.10534)")
    bidirectional_form = ("native: sum_c softplus(q_tc) softplus(k_sc) cos((s - t) theta_c + delta_c) / sqrt(d_head), "
                          "defined for keys on both sides")
    causal_form = "the same under the causal mask (the paper's, autoregressive)"

    @classmethod
    def flops_per_pair(cls, config) -> float:
        """The dot products run over 2 d_head numbers instead of d_head: d_head more multiply-adds per head."""
        return 2.0 * config.n_heads * config.d_head

    def __init__(self, config, randomized: bool = False):
        super().__init__(config, randomized)
        self.phase_bias = nn.Parameter(torch.zeros(config.n_heads, config.d_head))  # delta [H, d]

    def project_(self) -> None:
        self.phase_bias.clamp_(PHASE_BIAS_MIN, 0.0)

    def rotate(self, q, k):
        """q, k [B, H, T, d] -> q', k' [B, H, T, 2d] with q' . k' / sqrt(2d) = a_ts."""
        d_head = q.shape[-1]
        angle_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        positions = self.positions(q.shape[-2], q.device).to(angle_dtype)
        angles = positions[:, None] * pope_frequencies(d_head, q.device, angle_dtype)  # [T, d]: t theta_c
        key_angles = angles + self.phase_bias.to(angle_dtype)[:, None, :]              # [H, T, d]
        return polar(q, angles) * math.sqrt(2.0), polar(k, key_angles)
