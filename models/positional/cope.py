"""cope: contextual position encoding (Golovneva et al. 2024)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from che.models.positional.base import AttentionPE
from che.registry import register_pe


@register_pe
class CoPE(AttentionPE):
    """Contextual Position Encoding (Golovneva et al. 2024, §3 and the authors' code in
    facebookresearch/RAM `projects/cope`):

        g_ij = sigmoid(q_i . k_j / sqrt(d_head))          gates (from the scaled scores S)
        p_ij = sum_{k = j..i} g_ik                         contextual position of key j for query i
        z_i[n] = q_i . e[n]                                for the integer positions n = 0..npos-1
        A_ij = S_ij + ((1 - w) z_i[floor p_ij] + w z_i[ceil p_ij]) / sqrt(d_head),  w = p_ij - floor p_ij

    Scaling as the authors' code by default: the gates see the scaled scores, and the position logit
    is added before the 1/sqrt(d_head) scaling, i.e. divided by sqrt(d_head) here. p is clamped to
    npos - 1 (npos = 64), so every key further than ~63 counted tokens shares the last embedding (the
    code's `npos` defaults to the training context + 1; 64 is a fixed, length-independent choice).
    e is per layer, shared by the heads ([npos, d_head]) and initialised to zeros, as the code.

    Bidirectional form: for a key right of the query the gates are summed from the query to the key,
    p_ij = sum_{k = i..j} g_ik (the mirror image), and looked up in a second table e_right; keys at
    or left of the query use e_left (the causal CoPE). So both directions count what they pass over,
    and the tables tell left from right.

    CoPE has no token positions, so `rand-cope` is rejected; it needs the scores, so it overrides
    `logits` (no fused attention). Memory: a few [B, H, T, T] tensors, no [.., T, T, d] tensor.
    """

    name = "cope"
    family = "contextual"
    citation = "Golovneva et al. 2024, Contextual Position Encoding: Learning to Count What's Important"
    bidirectional_form = "keys right of the query: gates summed from i to j, separate embedding table"
    causal_form = "the paper's CoPE: gates summed from the key to the query, one table"
    column = 15
    position_based = False
    npos: ClassVar[int] = 64

    def __init__(self, config, randomized=False):
        super().__init__(config, randomized)
        self.d_head = config.d_head
        self.left = nn.Parameter(torch.zeros(self.npos, config.d_head))   # keys j <= i
        self.right = nn.Parameter(torch.zeros(self.npos, config.d_head))  # keys j > i

    def contextual_positions(self, gates: torch.Tensor) -> torch.Tensor:
        """p_ij from the gates [..., T, T]: sum of g_ik for k between j and i, both included."""
        length = gates.shape[-1]
        # One cumulative sum C_ij = sum_{k <= j} g_ik gives both sides; a cumsum of non-negative
        # numbers is monotone in floating point too, so p >= 0.
        total = gates.cumsum(-1)
        at_query = total.diagonal(dim1=-2, dim2=-1)[..., None]                    # C_ii
        gate_query = gates.diagonal(dim1=-2, dim2=-1)[..., None]                  # g_ii
        left = at_query - total + gates          # j <= i: C_ii - C_i(j-1)
        right = total - at_query + gate_query    # j >= i: C_ij - C_i(i-1)
        i = torch.arange(length, device=gates.device)
        return torch.where(i[None, :] <= i[:, None], left, right)

    def logits(self, scores, q, k):
        length = scores.shape[-1]
        positions = self.contextual_positions(torch.sigmoid(scores)).clamp(max=self.npos - 1)
        floor = positions.detach().floor()
        weight = positions - floor                       # differentiable: the gates learn through it
        i = torch.arange(length, device=q.device)
        side = (i[None, :] > i[:, None]).long() * self.npos   # right-of-query keys use the second table
        lower = floor.long() + side
        upper = positions.detach().ceil().long() + side
        table = torch.cat([self.left, self.right]).to(q.dtype)             # [2 npos, d_head]
        z = q @ table.T                                                      # [B, H, T, 2 npos]
        position_logits = (1 - weight) * z.gather(-1, lower) + weight * z.gather(-1, upper)
        return scores + position_logits * (1.0 / math.sqrt(self.d_head))
